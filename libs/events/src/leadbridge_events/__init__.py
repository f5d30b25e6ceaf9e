"""The Kafka/PostgreSQL plumbing every LeadBridge service shares (the contracts are in ``leadbridge_contracts``).

The names a service author needs are importable from here (``from leadbridge_events import Service, ...``);
each is loaded from its module on first use, so importing one piece does not import all of them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Service": ".bootstrap", "Wiring": ".bootstrap",
    "ServiceSettings": ".settings", "BackboneSettings": ".settings",
    "ServiceRuntime": ".runtime",
    "HandlerContext": ".transaction", "PoisonEvent": ".consumer",
    "EventHandlers": ".registry", "on": ".registry",
    "add_backbone_tables": ".db",
    "Clock": ".clock", "utcnow": ".clock",
    "Envelope": "leadbridge_contracts.envelope",
}

__all__ = [  # noqa: RUF022 -- grouped as _EXPORTS
    "Service", "Wiring", "ServiceSettings", "BackboneSettings", "ServiceRuntime", "HandlerContext", "PoisonEvent",
    "EventHandlers", "on", "add_backbone_tables", "Clock", "utcnow", "Envelope",
]

if TYPE_CHECKING:
    from leadbridge_contracts.envelope import Envelope

    from .bootstrap import Service, Wiring
    from .clock import Clock, utcnow
    from .consumer import PoisonEvent
    from .db import add_backbone_tables
    from .registry import EventHandlers, on
    from .runtime import ServiceRuntime
    from .settings import BackboneSettings, ServiceSettings
    from .transaction import HandlerContext


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'leadbridge_events' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
