"""Structured JSON logs. Log lead and event ids; never personal data (emails, phones, names)."""

from __future__ import annotations

import logging
import os
import re
import sys

from pythonjsonlogger.json import JsonFormatter

from .tracing import TraceIdsInLogs, configure_tracing

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_PHONE = re.compile(r"\+\d[\d ()./-]{6,}\d|\(?\b\d{3}\)?[ .-]\d{3}[ .-]\d{4}\b")  # international, or US-style


def redact(text: str) -> str:
    """``text`` with anything that looks like an email or a phone number replaced (for error texts that
    leave the process: dead-letter headers, logs of exceptions)."""
    return _PHONE.sub("<phone>", _EMAIL.sub("<email>", text))


def configure_logging(service: str, level: str | None = None) -> None:
    """JSON lines on stderr (with ``trace_id``/``span_id`` inside a span), and tracing if OTEL_* turn it on."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(TraceIdsInLogs())
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "ts", "levelname": "level", "name": "logger"},
            static_fields={"service": service},
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level or os.environ.get("LOG_LEVEL", "INFO"))
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    # httpx and httpcore log every request URL at INFO: URLs can carry tokens and identifiers
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    configure_tracing(service)  # off unless the OTEL_* variables say otherwise (tracing.py)
