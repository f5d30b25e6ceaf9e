"""Dead letters: what the consumer runner writes to ``<topic>.dlq`` and how the DLQ tool reads it back.

A dead letter is the original record (key, value and headers byte for byte, so its CloudEvents id is kept)
plus ``dlq_*`` headers saying why and where from. The error text is ``failures.describe``'d: exception type,
SQLSTATE and constraint names, never values -- dead letters carry no personal data beyond the record itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

from aiokafka.structs import ConsumerRecord

DLQ_HEADER_PREFIX = "dlq_"


def dead_letter_headers(record: ConsumerRecord, *, reason: str, error: str, group: str, attempts: int,
                        now: datetime | None = None) -> list[tuple[str, bytes]]:
    """The record's own headers (minus any earlier ``dlq_*``) and the ``dlq_*`` headers of this failure."""
    failed_at = (now or datetime.now(timezone.utc)).isoformat()
    return without_dlq_headers(record.headers or ()) + [
        ("dlq_reason", reason.encode()),
        ("dlq_error", error[:4000].encode()),
        ("dlq_source_topic", record.topic.encode()),
        ("dlq_source_partition", str(record.partition).encode()),
        ("dlq_source_offset", str(record.offset).encode()),
        ("dlq_consumer_group", group.encode()),
        ("dlq_attempts", str(attempts).encode()),
        ("dlq_failed_at", failed_at.encode()),
    ]


def without_dlq_headers(headers: Sequence[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The headers a replayed record goes back with: everything but the ``dlq_*`` ones."""
    return [(k, v) for k, v in headers if not k.startswith(DLQ_HEADER_PREFIX)]
