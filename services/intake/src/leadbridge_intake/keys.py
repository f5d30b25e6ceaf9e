"""API keys per source: created (only the hash is stored), looked up, revoked. Used by the admin API and CLI."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .signatures import hash_api_key, new_api_key
from .tables import api_keys

SCOPES = ("leads:write", "leads:read", "followups:write")


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
    chosen = list(scopes or SCOPES)
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


async def list_keys(session: AsyncSession) -> list[ApiKey]:
    rows = (await session.execute(select(api_keys).order_by(api_keys.c.created_at))).all()
    return [_row(r) for r in rows]
