"""API keys per source: created (only the hash is stored), looked up, revoked. Used by the admin API and CLI."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from .signatures import hash_api_key, new_api_key
from .tables import api_keys

SCOPES = ("leads:write", "leads:read", "followups:write")
DEFAULT_SCOPES = ("leads:write",)  # a form or site backend only posts leads; more scopes are asked for


@dataclass(frozen=True)
class ApiKey:
    id: str
    source: str
    scopes: frozenset[str]
    revoked_at: datetime | None


def _row(r) -> ApiKey:  # type: ignore[no-untyped-def]
    return ApiKey(r.id, r.source, frozenset(s for s in r.scopes.split(",") if s), r.revoked_at)


async def create_key(session: AsyncSession, source: str, scopes: list[str] | None = None,
                     description: str | None = None) -> tuple[str, ApiKey]:
    """A new key for ``source``; the secret is returned once and never stored."""
    unknown = set(scopes or []) - set(SCOPES)
    if unknown:
        raise ValueError(f"unknown scope(s): {', '.join(sorted(unknown))}; known: {', '.join(SCOPES)}")
    secret, key_id = new_api_key()
    chosen = list(scopes or DEFAULT_SCOPES)
    await session.execute(api_keys.insert().values(id=key_id, key_hash=hash_api_key(secret), source=source,
                                                   scopes=",".join(chosen), description=description))
    return secret, ApiKey(key_id, source, frozenset(chosen), None)


async def revoke_key(session: AsyncSession, key_id: str) -> bool:
    result = await session.execute(update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                                   .values(revoked_at=datetime.now().astimezone()))
    return result.rowcount > 0


async def find_key(session: AsyncSession, secret: str) -> ApiKey | None:
    row = (await session.execute(select(api_keys).where(api_keys.c.key_hash == hash_api_key(secret)))).first()
    return _row(row) if row else None


class KeyCache:
    """Known keys by secret hash for ``ttl`` seconds, so a request does not read ``api_keys`` each time.

    Known keys are kept for ``ttl``; an unknown key is remembered as unknown for ``unknown_ttl`` (so a flood
    of made-up keys does not reach the database), and a key created through this process clears that
    memory, so a new key works at once (one created elsewhere works within ``unknown_ttl``); a revocation through this process drops its entry at once, one made elsewhere (the CLI, another
    worker or replica) takes effect within ``ttl``. ``ttl`` 0 disables the cache. Pure: the clock is passed in.
    """

    def __init__(self, ttl: float, *, unknown_ttl: float = 0, max_keys: int = 10_000) -> None:
        self.ttl = ttl
        self.unknown_ttl = unknown_ttl
        self._entries: dict[str, tuple[float, ApiKey]] = {}
        self._unknown: dict[str, float] = {}
        self._max_keys = max_keys
        self.pending: dict[str, asyncio.Future[ApiKey | None]] = {}  # look-ups in flight, by secret hash

    def known_unknown(self, key_hash: str, now: float) -> bool:
        until = self._unknown.get(key_hash)
        return until is not None and now < until

    def put_unknown(self, key_hash: str, now: float) -> None:
        if self.unknown_ttl <= 0:
            return
        if len(self._unknown) >= self._max_keys:
            self._unknown.clear()
        self._unknown[key_hash] = now + self.unknown_ttl

    def forget_unknown(self) -> None:
        self._unknown.clear()

    def get(self, key_hash: str, now: float) -> ApiKey | None:
        entry = self._entries.get(key_hash)
        if entry is None or now >= entry[0]:
            return None
        return entry[1]

    def put(self, key_hash: str, key: ApiKey, now: float) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= self._max_keys:
            self._entries.clear()
        self._entries[key_hash] = (now + self.ttl, key)

    def forget(self, key_id: str) -> None:
        for key_hash, (_, key) in list(self._entries.items()):
            if key.id == key_id:
                del self._entries[key_hash]


async def find_key_cached(session_factory, cache: KeyCache, secret: str,  # type: ignore[no-untyped-def]
                          now: float) -> ApiKey | None:
    """``find_key`` through ``cache``: a database session is opened only on a miss, and once for all the
    concurrent misses of one key (when a busy key's entry expires, every request in flight misses at once:
    without this, each opened a session of its own, past the pool's size)."""
    key_hash = hash_api_key(secret)
    if cache.known_unknown(key_hash, now):
        return None
    key = cache.get(key_hash, now)
    if key is not None:
        return key
    lookup = cache.pending.get(key_hash)
    if lookup is None:
        lookup = cache.pending[key_hash] = asyncio.ensure_future(_look_up(session_factory, key_hash))
        lookup.add_done_callback(lambda _: cache.pending.pop(key_hash, None))
    key = await asyncio.shield(lookup)  # one caller gone away does not cancel the others' look-up
    if key is not None:
        cache.put(key_hash, key, now)
    else:
        cache.put_unknown(key_hash, now)
    return key


async def _look_up(session_factory, key_hash: str) -> ApiKey | None:  # type: ignore[no-untyped-def]
    for attempt in (1, 2):  # a read: retried once on a new connection if a pooled one was found dead
        try:
            async with session_factory() as session:
                row = (await session.execute(select(api_keys).where(api_keys.c.key_hash == key_hash))).first()
            return _row(row) if row else None
        except DBAPIError as exc:
            if attempt == 2 or not exc.connection_invalidated:
                raise
    raise AssertionError("unreachable")


async def list_keys(session: AsyncSession) -> list[ApiKey]:
    rows = (await session.execute(select(api_keys).order_by(api_keys.c.created_at))).all()
    return [_row(r) for r in rows]
