"""`make run`: Kafka, PostgreSQL and every LeadBridge service as separate processes; Ctrl-C stops all.

The services get the demo configuration in deploy/demo/demo.env (roster, SLA policies, the development
token secret and webhook secrets) for every variable the user has not set. A local OpenID Connect provider
signs managers in to the insights page, and a demo access token (every scope) is printed. Where everything is, and the settings
`make demo` needs, are printed and written to .devstack/demo-run.json while the system runs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import time
from pathlib import Path

from . import cli, demo_signin
from .paths import repo_root, state_dir
from .ports import free_port, port_open
from .system import SERVICES, start_system

DEMO_ENV_FILE = Path("deploy") / "demo" / "demo.env"
RUN_INFO_FILE = "demo-run.json"


def _runnable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None and importlib.util.find_spec(f"{module}.__main__") is not None


def read_env_file(path: Path, root: Path) -> dict[str, str]:
    """KEY=VALUE lines (no quoting; # comments); relative *_FILE paths resolved against ``root``."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        if key.endswith("_FILE") and value and not Path(value).is_absolute():
            value = str(root / value)
        values[key] = value
    return values


def demo_env(environ: dict[str, str]) -> dict[str, str]:
    """The demo settings the user has not set (their own environment always wins)."""
    root = repo_root()
    path = root / DEMO_ENV_FILE
    values = read_env_file(path, root) if path.exists() else {}
    # where `make demo` serves a fake Meta Graph API (a port that is free now)
    values["INTAKE_META_GRAPH_BASE_URL"] = f"http://127.0.0.1:{free_port()}/v21.0"
    # where `make demo` serves a fake HubSpot API that crm-sync delivers to (deploy/demo/crm-sync.yaml)
    values["CRM_SYNC_DEMO_HUBSPOT_URL"] = f"http://127.0.0.1:{free_port()}"
    return {k: v for k, v in values.items() if k not in environ}


def _interrupt_once(*_: object) -> None:
    """SIGTERM acts like Ctrl-C, once: the signals that follow (uv forwards them too) are ignored."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def main() -> int:
    infrastructure = cli.up()  # what `make run` started itself, it stops on Ctrl-C; a `make up` stack stays
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or cli.broker().bootstrap_servers,
        "DATABASE_URL": os.environ.get("DATABASE_URL") or cli.postgres().url,
    }
    demo = demo_env(dict(os.environ))
    env.update(demo)
    names = []
    for spec in SERVICES:
        if not _runnable(spec.module):
            print(f"{spec.name}: not built yet, skipped")
        elif port_open(spec.default_port):
            print(f"error: port {spec.default_port} for {spec.name} is taken; stop whatever listens there",
                  file=sys.stderr)
            for component in reversed(infrastructure):
                component.stop()
            return 1
        else:
            names.append(spec.name)
    log_dir = state_dir() / "logs"
    provider = None
    if demo:
        print(f"demo settings from {DEMO_ENV_FILE}: {', '.join(sorted(demo))}")
    print(f"starting {', '.join(names)} (logs in {log_dir}) ...")
    # a SIGTERM (e.g. `kill` of `make run`) stops the services as cleanly as Ctrl-C
    signal.signal(signal.SIGTERM, _interrupt_once)
    info_path = state_dir() / RUN_INFO_FILE
    system = None
    try:
        if "insights" in names and not os.environ.get("INSIGHTS_OIDC_ISSUER"):
            provider = demo_signin.start_provider(log_dir)
            env["INSIGHTS_OIDC_ISSUER"] = provider.url
            infrastructure.append(provider)
        system = start_system(env, only=tuple(names), log_dir=log_dir)
        effective = {**os.environ, **env}
        token = demo_signin.demo_token(effective["AUTH_DEV_SECRET"]) if effective.get("AUTH_DEV_SECRET") else None
        info = {
            "demo_token": token,
            "services": {name: svc.url for name, svc in system.services.items()},
            "kafka_bootstrap_servers": env["KAFKA_BOOTSTRAP_SERVERS"],
            **{key.lower(): effective.get(key) for key in (
                "INTAKE_GOOGLE_KEYS", "INTAKE_META_APP_SECRET",
                "INTAKE_META_GRAPH_BASE_URL", "INTAKE_META_VERIFY_TOKEN",
                "CRM_SYNC_DEMO_HUBSPOT_URL")},
        }
        info_path.write_text(json.dumps(info, indent=2))
        print()
        for svc in system.services.values():
            print(f"  {svc.spec.name:<12} {svc.url}   (/docs, /healthz, /readyz, /metrics)")
        if "insights" in system.services:
            print(f"\n  insights page (funnel, SLA compliance, lead timelines): {system.url('insights')}/")
            if provider is not None:
                print(f"    demo login: the page sends you to a demo sign-in provider ({provider.url}); type any "
                      "user name (e.g. manager) and press Authorize")
        print(f"\n  kafka        {env['KAFKA_BOOTSTRAP_SERVERS']}\n  postgres     {env['DATABASE_URL']}")
        if token:
            print(f"\n  demo access token (every scope, 12 h; development secret AUTH_DEV_SECRET):\n    {token}")
            if "intake" in system.services:
                print(f"  create an API key:  curl -X POST {system.url('intake')}/v1/admin/keys "
                      f"-H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' "
                      """-d '{"source": "website"}'""")
            if "router" in system.services:
                print(f"  read the roster:    curl {system.url('router')}/roster -H 'Authorization: Bearer {token}'")
        if token and "crm-sync" in system.services:
            print(f"  subscribe a URL to crm-sync's signed webhooks:  curl -X POST {system.url('crm-sync')}/v1/subscriptions "
                  f"-H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' "
                  """-d '{"url": "https://example.com/hook", "event_types": ["lead-routed"]}'""")
        for key in ("ROUTER_ROSTER_FILE", "SLA_POLICIES_FILE", "CRM_SYNC_CONFIG_FILE"):
            if effective.get(key):
                print(f"  {key}={effective[key]}")
        print("\nLeadBridge is running. In another terminal: `make demo`. Ctrl-C stops everything "
              "(Kafka and PostgreSQL too, unless `make up` started them).\n")
        while system.alive():
            time.sleep(0.5)
        time.sleep(1.0)  # a Ctrl-C reaches the services and this process at about the same time
        dead = {n: s.process.poll() for n, s in system.services.items() if s.process.poll() is not None}
        if all(code in (0, -signal.SIGINT, -signal.SIGTERM) for code in dead.values()):
            print(f"\n{', '.join(dead)} stopped; stopping the rest...")
            return 0
        print(f"error: {', '.join(f'{n} (exit {c})' for n, c in dead.items())} exited (see {log_dir}); "
              "stopping the rest", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("\nstopping...")
        return 0
    finally:
        # a second Ctrl-C or SIGTERM (uv forwards signals too) must not cut the clean-up short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        info_path.unlink(missing_ok=True)
        if system is not None:
            system.stop()
        for component in reversed(infrastructure):
            component.stop()
            print(f"stopped {type(component).__name__}")


if __name__ == "__main__":
    raise SystemExit(main())
