"""``leadbridge-dlq``: the on-call tool for dead letters and parked outbox rows (docs/runbook-dead-letters.md).

    leadbridge-dlq list [TOPIC ...] [--handled]      dead letters per topic: reason, source, age, event id/type
    leadbridge-dlq show TOPIC OFFSET [--payload]     one dead letter's headers (its payload only if asked)
    leadbridge-dlq replay TOPIC (--offset N ... | --all)            back to the source topic, same event id
    leadbridge-dlq discard TOPIC (--offset N ... | --all) --reason WHY
    leadbridge-dlq parked [SCHEMA ...]               outbox rows parked by the relay, with their reason
    leadbridge-dlq republish-parked SCHEMA (--id N ... | --all)

TOPIC is the source topic (``lead-captured``) or its DLQ (``lead-captured.dlq``). Reads
``KAFKA_BOOTSTRAP_SERVERS`` and ``DATABASE_URL`` (default: the ``make up`` stack). Nothing prints personal
data: ``list`` shows no payloads and ``show`` prints the payload (the lead's contact details) only with
``--payload``. Every replay, discard and republish is recorded in ``backbone.dlq_actions``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from datetime import UTC, datetime

from leadbridge_contracts.topics import ALL_TOPICS

from .db import make_engine
from .dlq import (
    DeadLetter,
    dlq_name,
    ensure_actions_table,
    handled_offsets,
    outbox_schemas,
    parked_rows,
    read_dead_letters,
    record_action,
    replay,
    republish_parked,
)
from .producer import EventProducer
from .settings import BackboneSettings

Output = Callable[[str], object]  # where the tool's lines go: print, or a test's list.append


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _error_kind(letter: DeadLetter) -> str:
    """The error's type only (``show`` prints the whole text): old dead letters may quote values."""
    return letter.header("dlq_error").split(":", 1)[0].split(" ", 1)[0][:60]


class Tool:
    def __init__(self, settings: BackboneSettings, out: Output = print) -> None:
        self.bootstrap = settings.kafka_bootstrap_servers
        self.engine = make_engine(settings.database_url, pool_size=1)
        self.out = out

    async def close(self) -> None:
        await self.engine.dispose()

    async def open_letters(self, topic: str, *, handled: bool = False) -> list[tuple[DeadLetter, str]]:
        done = await handled_offsets(self.engine, topic)
        letters = await read_dead_letters(self.bootstrap, topic)
        rows = [(d, done.get((d.record.partition, d.offset), "")) for d in letters]
        return rows if handled else [(d, status) for d, status in rows if not status]

    async def list_letters(self, topics: list[str], handled: bool) -> int:
        now = datetime.now(UTC)
        total = 0
        for topic in topics or [t.name for t in ALL_TOPICS]:
            rows = await self.open_letters(topic, handled=handled)
            total += len(rows)
            self.out(f"{dlq_name(topic)}: {len(rows)} {'dead letters' if handled else 'open'}")
            for d, status in rows:
                self.out(f"  offset={d.offset} age={_age(d.age_seconds(now))} reason={d.header('dlq_reason')} "
                         f"error={_error_kind(d)} source={d.source_topic}/{d.header('dlq_source_partition')}"
                         f"@{d.header('dlq_source_offset')} group={d.header('dlq_consumer_group')} "
                         f"event={d.header('ce_id')} type={d.event_type} attempts={d.header('dlq_attempts')}"
                         + (f" [{status}]" if status else ""))
        return total

    async def show(self, topic: str, offset: int, payload: bool) -> int:
        letter = await self._one(topic, offset)
        if letter is None:
            self.out(f"no dead letter at {dlq_name(topic)}@{offset}")
            return 1
        for k, v in letter.record.headers or ():
            self.out(f"{k}: {v.decode(errors='replace')}")
        status = (await handled_offsets(self.engine, topic)).get((letter.record.partition, offset), "open")
        self.out(f"status: {status}")
        if payload:
            self.out("payload (personal data -- do not paste into tickets):")
            self.out((letter.record.value or b"").decode(errors="replace"))
        return 0

    async def _one(self, topic: str, offset: int) -> DeadLetter | None:
        return next((d for d in await read_dead_letters(self.bootstrap, topic) if d.offset == offset), None)

    async def _select(self, topic: str, offsets: list[int] | None) -> list[DeadLetter]:
        open_ = [d for d, _ in await self.open_letters(topic)]
        if offsets is None:
            return open_
        chosen = [d for d in open_ if d.offset in set(offsets)]
        missing = set(offsets) - {d.offset for d in chosen}
        if missing:
            raise SystemExit(f"not open dead letters on {dlq_name(topic)}: {sorted(missing)} (see `list --handled`)")
        return chosen

    async def replay(self, topic: str, offsets: list[int] | None) -> int:
        letters = await self._select(topic, offsets)
        async with EventProducer(self.bootstrap, client_id="leadbridge-dlq") as producer:
            landed = await replay(self.engine, producer, letters)
        for d, (partition, offset) in zip(letters, landed, strict=False):
            self.out(f"replayed {dlq_name(topic)}@{d.offset} event={d.header('ce_id')} -> "
                     f"{d.source_topic}/{partition}@{offset}")
        self.out(f"{len(letters)} replayed")
        return 0

    async def discard(self, topic: str, offsets: list[int] | None, reason: str) -> int:
        letters = await self._select(topic, offsets)
        for d in letters:
            await record_action(self.engine, "discarded", d, reason=reason)
            self.out(f"discarded {dlq_name(topic)}@{d.offset} event={d.header('ce_id')}")
        self.out(f"{len(letters)} discarded")
        return 0

    async def parked(self, schemas: list[str]) -> int:
        now = datetime.now(UTC)
        total = 0
        for schema in schemas or await outbox_schemas(self.engine):
            rows = await parked_rows(self.engine, schema)
            total += len(rows)
            self.out(f"{schema}.outbox: {len(rows)} parked")
            for r in rows:
                self.out(f"  id={r.id} event={r.event_id} topic={r.topic} attempts={r.attempts} "
                         f"age={_age((now - r.parked_at).total_seconds())} reason={r.park_reason}")
        return total

    async def republish(self, schema: str, ids: list[int] | None) -> int:
        done = await republish_parked(self.engine, schema, ids)
        self.out(f"{len(done)} parked rows of {schema}.outbox handed back to its relay: {done}")
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="leadbridge-dlq", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="dead letters not yet replayed or discarded")
    ls.add_argument("topics", nargs="*")
    ls.add_argument("--handled", action="store_true", help="also those replayed or discarded")
    show = sub.add_parser("show", help="one dead letter")
    show.add_argument("topic")
    show.add_argument("offset", type=int)
    show.add_argument("--payload", action="store_true", help="print the record's value (personal data)")
    for name in ("replay", "discard"):
        cmd = sub.add_parser(name)
        cmd.add_argument("topic")
        which = cmd.add_mutually_exclusive_group(required=True)
        which.add_argument("--offset", type=int, nargs="+", dest="offsets")
        which.add_argument("--all", action="store_true")
        if name == "discard":
            cmd.add_argument("--reason", required=True, help="why (recorded in backbone.dlq_actions)")
    parked = sub.add_parser("parked", help="outbox rows parked by the relay")
    parked.add_argument("schemas", nargs="*")
    rep = sub.add_parser("republish-parked", help="hand parked outbox rows back to the relay")
    rep.add_argument("schema")
    which = rep.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", type=int, nargs="+", dest="ids")
    which.add_argument("--all", action="store_true")
    return parser


async def run(argv: list[str] | None = None, *, settings: BackboneSettings | None = None,
              out: Output = print) -> int:
    args = _parser().parse_args(argv)
    tool = Tool(settings or BackboneSettings(), out)
    try:
        await ensure_actions_table(tool.engine)
        if args.command == "list":
            await tool.list_letters(args.topics, args.handled)
            return 0
        if args.command == "show":
            return await tool.show(args.topic, args.offset, args.payload)
        if args.command == "replay":
            return await tool.replay(args.topic, None if args.all else args.offsets)
        if args.command == "discard":
            return await tool.discard(args.topic, None if args.all else args.offsets, args.reason)
        if args.command == "parked":
            await tool.parked(args.schemas)
            return 0
        return await tool.republish(args.schema, None if args.all else args.ids)
    finally:
        await tool.close()


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(run(argv))


if __name__ == "__main__":
    sys.exit(main())
