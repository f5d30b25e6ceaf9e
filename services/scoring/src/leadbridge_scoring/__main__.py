"""``python -m leadbridge_scoring``: run the service; ``what-if`` and ``check-model`` for model changes."""

from __future__ import annotations

import argparse
import asyncio
import sys

from .model_file import ModelError, load_model
from .settings import ScoringSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leadbridge_scoring", description="LeadBridge scoring service")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the service (the default; leadbridge_events.bootstrap)")
    check = sub.add_parser("check-model", help="validate a scoring model file")
    check.add_argument("path")
    whatif = sub.add_parser("what-if", help="compare a proposed model with the current one over stored leads")
    whatif.add_argument("--model", required=True, help="the proposed model (YAML)")
    whatif.add_argument("--baseline", help="the model to compare with (default: the service's SCORING_MODEL_PATH)")
    whatif.add_argument("--as-of", help="score as of this ISO time (default: now)")
    whatif.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)

    try:
        if args.command == "check-model":
            model = load_model(args.path)
            print(f"ok: {args.path} (version {model.version})")
            return 0
        if args.command == "what-if":
            from .whatif_cli import run_what_if

            return asyncio.run(run_what_if(ScoringSettings(), args.model, baseline=args.baseline, as_of=args.as_of,
                                           as_json=args.json))
        from .app import SERVICE

        return SERVICE.main()
    except ModelError as exc:
        print(exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
