"""``python -m leadbridge_intake`` runs the service; ``python -m leadbridge_intake keys create|revoke|list``
manages API keys."""

from __future__ import annotations

import argparse
import asyncio
import sys

from leadbridge_events.db import make_engine, session_factory
from leadbridge_events.migrations import migrate

from .keys import SCOPES, create_key, list_keys, revoke_key
from .settings import IntakeSettings
from .tables import MIGRATIONS


async def _keys(args: argparse.Namespace) -> int:
    settings = IntakeSettings()
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        await migrate(engine, MIGRATIONS.metadata, MIGRATIONS.versions)
        async with session_factory(engine)() as session, session.begin():
            if args.action == "create":
                secret, key = await create_key(session, args.source, args.scope or None, args.description)
                print(f"key_id={key.id} source={key.source} scopes={','.join(sorted(key.scopes))}")
                print(f"api_key={secret}  (shown once; only its hash is stored)")
            elif args.action == "revoke":
                if not await revoke_key(session, args.key_id):
                    print(f"no active key with id {args.key_id}", file=sys.stderr)
                    return 1
                print(f"revoked {args.key_id}")
            else:
                for k in await list_keys(session):
                    print(f"{k.id}\t{k.source}\t{','.join(sorted(k.scopes))}\t{'revoked' if k.revoked_at else 'active'}")
        return 0
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leadbridge_intake", description="LeadBridge intake")
    sub = parser.add_subparsers(dest="command")
    keys = sub.add_parser("keys", help="manage API keys")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a key for a source")
    create.add_argument("--source", required=True, help="e.g. web_form, website, hubspot")
    create.add_argument("--scope", action="append", choices=SCOPES, help="repeatable; default: leads:write only")
    create.add_argument("--description")
    revoke = actions.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    actions.add_parser("list", help="list keys (never their secrets)")
    args = parser.parse_args(argv)
    if args.command == "keys":
        return asyncio.run(_keys(args))
    from .app import SERVICE

    return SERVICE.main()


if __name__ == "__main__":
    raise SystemExit(main())
