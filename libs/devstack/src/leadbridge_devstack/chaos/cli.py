"""`make chaos` / `python -m leadbridge_devstack.chaos`: steady load on a system of its own while each part
crashes in turn, then an audit of every accepted lead. Ends with one line and exits 1 unless lost,
duplicate_routes, unexpected_dead_letters and stuck are all 0 (2 when the run could not be set up)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from ..progress import Log
from .audit import Findings, audit
from .faults import ALL_FAULTS, FaultWindow, run_faults
from .load import LoadResult, create_api_key, post_leads
from .observe import committed_offsets, lead_views, processed_events, read_topics, wait_for_quiet
from .stack import ChaosStack, UnsupportedBrokerCount, admin_token


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=3000, help="leads to post (default 3000)")
    parser.add_argument("--rate", type=float, default=40.0, help="leads per second (default 40)")
    parser.add_argument("--brokers", type=int, default=1,
                        help="Kafka brokers (default 1); 3: a cluster, and the broker fault is a failover")
    parser.add_argument("--faults", default=",".join(ALL_FAULTS),
                        help=f"comma-separated, in order (default: {','.join(ALL_FAULTS)})")
    parser.add_argument("--down", type=float, default=5.0, help="seconds a crashed part stays down (default 5)")
    parser.add_argument("--gap", type=float, default=None,
                        help="seconds of load between faults (default: the faults spread over the load)")
    parser.add_argument("--settle", type=float, default=30.0,
                        help="between faults, wait at most this long for the backlog to drain (default 30 s)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before the first fault")
    parser.add_argument("--stall", type=float, default=90.0,
                        help="after the load: give up waiting for quiet when nothing moved for this long (default 90 s)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the data and logs folder afterwards")
    args = parser.parse_args(argv)
    unknown = [f for f in args.faults.split(",") if f.strip() and f.strip() not in ALL_FAULTS]
    if unknown:
        parser.error(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(ALL_FAULTS)}")
    if args.leads < 1 or args.rate <= 0 or args.brokers < 1:
        parser.error("--leads, --rate and --brokers must be positive")
    return args


def say(text: str = "") -> None:
    print(text, flush=True)


def clock(t0: float) -> Log:
    return lambda text: say(f"[{time.time() - t0:6.1f}s] {text}")


def default_gap(args: argparse.Namespace, faults: list[str]) -> float:
    """Spread the faults over the posting time (a restart takes a few seconds more than --down)."""
    posting: float = args.leads / args.rate
    busy: float = args.warmup + len(faults) * (args.down + 4.0)
    return max(2.0, (posting - busy) / max(len(faults), 1))


async def exercise(stack: ChaosStack, args: argparse.Namespace, log: Log
                   ) -> tuple[str, LoadResult, list[FaultWindow], bool]:
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    gap = args.gap if args.gap is not None else default_gap(args, faults)
    key = await create_api_key(stack.url("intake"), admin_token())
    log(f"posting {args.leads} leads at {args.rate:g}/s; faults {', '.join(faults)} ({args.down:g} s down, "
        f"{gap:.1f} s apart)")
    step = max(args.leads // 10, 1)
    faults_task = asyncio.create_task(run_faults(stack, faults, warmup=args.warmup, down=args.down, gap=gap,
                                                 settle_threshold=max(30, int(args.rate * 5)),
                                                 settle_timeout=args.settle, log=log))
    load = await post_leads(stack.url("intake"), key, leads=args.leads, rate=args.rate,
                            more=lambda: not faults_task.done(),
                            progress=lambda i: log(f"posted {i + 1}") if (i + 1) % step == 0 else None)
    windows: list[FaultWindow] = await faults_task
    kinds = Counter(e.kind for e in load.errors)
    log(f"load done: {load.posted} posted, {len(load.accepted)} accepted, {len(load.errors)} client errors retried "
        f"({', '.join(f'{k}: {n}' for k, n in kinds.most_common()) or 'none'}), {len(load.rejected)} rejected, "
        f"{load.gave_up} given up")
    log("waiting for the system to go quiet ...")
    quiet, waited = await wait_for_quiet(stack.brokers.bootstrap_servers, stack.env["DATABASE_URL"],
                                         stall=args.stall, log=log)
    log(f"{'quiet' if quiet else 'NOT quiet'} after {waited:.1f} s; reading the topics and the services' APIs")
    return key, load, windows, quiet


async def examine(stack: ChaosStack, key: str, load: LoadResult, windows: list[FaultWindow]) -> Findings:
    from .faults import input_topics

    bootstrap = stack.brokers.bootstrap_servers
    names = input_topics()
    topics = await read_topics(bootstrap, names + [f"{t}.dlq" for t in names])
    committed = await committed_offsets(bootstrap)
    processed = await processed_events(stack.env["DATABASE_URL"])
    urls = {name: stack.url(name) for name in ("intake", "router", "insights")}
    views = await lead_views(urls, key, list(load.accepted), admin_token())
    return audit(load, windows, topics, committed, processed, views)


def report(f: Findings, load: LoadResult, args: argparse.Namespace) -> None:
    say(f"\n{'fault':<36} {'down s':>7} {'catch-up s':>10} {'accepted meanwhile':>18}  client errors (retried)")
    for row in f.faults:
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(row.client_errors.items())) or "none"
        catch = "-" if row.catch_up is None else f"{row.catch_up:.1f}"
        say(f"{row.label:<36} {row.downtime:>7.1f} {catch:>10} {row.accepted_meanwhile:>18}  {errors}"
            + (f"  [{row.error}]" if row.error else ""))
    say(f"\nposted {load.posted} at {args.rate:g}/s in {load.finished - load.started:.0f} s; "
        f"accept->final p50 {f.latency['p50']:.2f} s, p99 {f.latency['p99']:.2f} s, max {f.latency['max']:.1f} s")
    say(f"poison dead letters {f.poison_dead_letters}; records published twice (same event id) "
        f"{f.redelivered_records}; rejected {len(load.rejected)}; given up {load.gave_up}")
    for title, counter in (("lost", f.lost_why), ("stuck", f.stuck_why), ("dead letters", f.dead_letters)):
        for why, n in counter.most_common():
            say(f"  {title}: {n} x {why}")
    if not f.quiet:
        say("  NOT quiet: the system still had work in flight; what it had not done yet counts as lost or stuck")
    for example in f.examples[:15]:
        say(f"  e.g. {example}")
    for line in load.rejected[:5]:
        say(f"  rejected: {line}")


def write_json(path: Path, f: Findings, load: LoadResult, args: argparse.Namespace) -> None:
    data = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "line": f.line(), "ok": f.ok, "cores": os.cpu_count(),
            "faults": [asdict(row) for row in f.faults], "latency": f.latency,
            "client_errors": len(load.errors), "lost_why": dict(f.lost_why), "stuck_why": dict(f.stuck_why),
            "dead_letters": {" / ".join(map(str, k)): v for k, v in f.dead_letters.items()}}
    path.write_text(json.dumps(data, indent=2))


def run(args: argparse.Namespace) -> tuple[Findings, LoadResult]:
    """One whole chaos run: start the system, load it through the faults, audit, stop. Prints as it goes."""
    log = clock(time.time())
    stack = ChaosStack.start(brokers=args.brokers, log=log)
    log(f"system up (data and logs in {stack.root})")
    ok = False
    try:
        key, load, windows, quiet = asyncio.run(exercise(stack, args, log))
        findings = asyncio.run(examine(stack, key, load, windows))
        findings.quiet = quiet
        report(findings, load, args)
        if args.json:
            write_json(args.json, findings, load, args)
        ok = findings.ok
        say(findings.line())
        return findings, load
    finally:
        keep = args.keep or not ok
        stack.stop(remove=not keep)
        if keep:
            say(f"data and service logs kept in {stack.root}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        findings, _ = run(args)
    except UnsupportedBrokerCount as exc:
        say(f"error: {exc}")
        return 2
    except KeyboardInterrupt:
        return 130
    return 0 if findings.ok else 1


if __name__ == "__main__":
    sys.exit(main())
