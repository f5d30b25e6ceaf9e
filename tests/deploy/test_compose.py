"""docker-compose.yml, its Prometheus config and the Grafana dashboard hang together (no Docker needed)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from leadbridge_devstack.system import SERVICES

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = {spec.name: spec.default_port for spec in SERVICES}
INFRA = ("kafka", "postgres", "prometheus", "alertmanager", "grafana")
# the edges (forms and ad-platform webhooks; the CRMs' signed webhooks) and the managers' page; nothing else
PUBLISHED = {"intake", "insights", "crm-sync"}
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "handoff-health.json"

PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "by", "without", "rate", "irate", "increase", "histogram_quantile",
    "clamp_min", "clamp_max", "topk", "bottomk", "abs", "time", "vector", "on", "ignoring", "group_left",
    "group_right", "and", "or", "unless", "offset", "delta", "deriv", "avg_over_time", "max_over_time",
    "min_over_time", "sum_over_time", "absent", "label_replace", "scalar", "sort", "sort_desc", "bool",
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def host_mounts(service: dict) -> list[tuple[str, str]]:
    out = []
    for volume in service.get("volumes", []):
        source, target = (volume["source"], volume["target"]) if isinstance(volume, dict) else volume.split(":")[:2]
        out.append((source, target))
    return out


def test_every_service_is_there(compose):
    assert set(compose["services"]) >= set(APP_SERVICES) | set(INFRA)


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_app_service_builds_listens_and_waits_for_the_backbone(compose, name):
    service = compose["services"][name]
    build = service["build"]
    assert (ROOT / build.get("context", ".") / build["dockerfile"]).is_file(), f"{name}: Dockerfile missing"
    port = APP_SERVICES[name]
    if name in PUBLISHED:
        published = {str(p) for p in service["ports"]}
        assert f"{port}:{port}" in published, f"{name} should publish its default port {port}, has {published}"
    depends = service["depends_on"]
    for infra in ("kafka", "postgres"):
        assert depends[infra]["condition"] == "service_healthy", f"{name} must wait for a healthy {infra}"
    assert service["environment"]["KAFKA_BOOTSTRAP_SERVERS"].startswith("kafka:")
    assert "@postgres:" in service["environment"]["DATABASE_URL"]


def test_backbone_services_have_healthchecks(compose):
    for name in ("kafka", "postgres"):
        assert compose["services"][name]["healthcheck"]["test"], name


def test_every_mounted_host_path_exists(compose):
    for name, service in compose["services"].items():
        for source, _ in host_mounts(service):
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repo"


def test_compose_prometheus_scrapes_every_app_service_and_loads_existing_rules(compose):
    mounts = host_mounts(compose["services"]["prometheus"])
    config_path = next(source for source, target in mounts if target.endswith("prometheus.yml"))
    config = yaml.safe_load((ROOT / config_path).read_text())
    targets = {t for job in config["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]}
    for name, port in APP_SERVICES.items():
        assert f"{name}:{port}" in targets, f"compose Prometheus does not scrape {name}:{port}"
    assert config["rule_files"]
    for rule_file in config["rule_files"]:  # container path -> the host folder mounted there
        host = next((ROOT / source / Path(rule_file).relative_to(target)) for source, target in mounts
                    if Path(rule_file).is_relative_to(target))
        assert host.is_file(), f"rule file {rule_file} ({host}) does not exist"
    assert any(t.startswith("alertmanager:") for a in config["alerting"]["alertmanagers"]
               for sc in a["static_configs"] for t in sc["targets"])


def known_metric_names() -> set[str]:
    names: set[str] = set()
    files = [*ROOT.glob("libs/*/src/*/metrics.py"), *ROOT.glob("services/*/src/*/metrics.py")]
    assert files
    for path in files:
        names |= set(re.findall(r'(?:Counter|Gauge|Histogram|Summary)\(\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"',
                                path.read_text()))
    series = set(names)
    for name in names:  # prometheus_client exposes histogram series and _total for counters
        series |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        if not name.endswith("_total"):
            series.add(f"{name}_total")
    return series


def metric_names_in(expr: str) -> set[str]:
    expr = re.sub(r'"[^"]*"', "", expr)            # label values
    expr = re.sub(r"\{[^}]*\}", "", expr)          # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)         # range selectors
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    tokens = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    return {t for t in tokens if t not in PROMQL_WORDS and not re.fullmatch(r"\d+[smhdwy]?", t)}


def test_dashboard_is_valid_and_uses_only_real_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    known = known_metric_names()
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 12
    used = set().union(*(metric_names_in(e) for e in exprs))
    assert used, "no metric found in the dashboard's queries"
    unknown = used - known
    assert not unknown, f"dashboard queries metrics no metrics.py defines: {sorted(unknown)}"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_dashboard_provisioning_points_at_the_mounted_folder(compose):
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/leadbridge.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    mounts = dict((target, source) for source, target in host_mounts(compose["services"]["grafana"]))
    assert (ROOT / mounts[path] / DASHBOARD.name).is_file()


def test_metric_name_extraction():
    assert metric_names_in('histogram_quantile(0.9, sum by (le, team) (rate(x_seconds_bucket{a="b"}[1h])))') \
        == {"x_seconds_bucket"}


def test_demo_help_runs():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "demo.py"), "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "make demo" in result.stdout and "--timeout" in result.stdout


def test_only_intake_and_the_page_are_published_to_the_host(compose):
    published = {name for name, service in compose["services"].items() if service.get("ports")}
    assert published == PUBLISHED, f"published to the host: {sorted(published)}; only {sorted(PUBLISHED)} may be"
    for name in PUBLISHED:
        assert len(compose["services"][name]["ports"]) == 1, name


def test_kafka_listens_only_on_the_compose_network(compose):
    kafka = compose["services"]["kafka"]
    assert not kafka.get("ports") and not kafka.get("network_mode")
    env = kafka["environment"]
    advertised = env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert all(listener.split("://")[1].startswith("kafka:") for listener in advertised), advertised
    assert "localhost" not in env["KAFKA_LISTENERS"] + env["KAFKA_ADVERTISED_LISTENERS"]


def test_postgres_needs_a_password(compose):
    postgres = compose["services"]["postgres"]
    env = postgres["environment"]
    assert env.get("POSTGRES_PASSWORD"), "PostgreSQL without a password"
    assert env.get("POSTGRES_HOST_AUTH_METHOD", "scram-sha-256") not in ("trust", "password")
    assert not postgres.get("ports")
    for name in APP_SERVICES:
        url = compose["services"][name]["environment"]["DATABASE_URL"]
        assert re.match(r"postgresql\+asyncpg://leadbridge:[^@]+@postgres:5432/", url), f"{name}: {url}"


def test_every_service_is_configured_to_verify_tokens(compose):
    from leadbridge_devstack.run_all import read_env_file

    for name in APP_SERVICES:
        service = compose["services"][name]
        env = dict(service.get("environment") or {})
        for env_file in service.get("env_file", []):
            env.update(read_env_file(ROOT / env_file, ROOT))
        assert env.get("AUTH_ISSUER") or env.get("AUTH_DEV_SECRET"), f"{name} cannot verify access tokens"


def test_local_dashboards_bind_to_loopback_only():
    override = yaml.safe_load((ROOT / "deploy/compose/local-dashboards.yml").read_text())
    for name, service in override["services"].items():
        assert all(str(p).startswith("127.0.0.1:") for p in service["ports"]), name


# --- docker-compose.yml and the Helm chart (deploy/helm/leadbridge) stay in step -------------------------

CHART = ROOT / "deploy" / "helm" / "leadbridge"
# settings the chart provides itself rather than through values: the backbone's and the mounted files'
CHART_OWN_SETTINGS = {"KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "ROUTER_ROSTER_FILE", "SLA_POLICIES_FILE",
                      "CRM_SYNC_CONFIG_FILE"}


@pytest.fixture(scope="module")
def chart_values() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def compose_settings(compose: dict, name: str) -> set[str]:
    """The variables compose gives a service: its environment and its env_files' keys."""
    from leadbridge_devstack.run_all import read_env_file

    service = compose["services"][name]
    keys = set(service.get("environment") or {})
    for env_file in service.get("env_file", []):
        keys |= set(read_env_file(ROOT / env_file, ROOT))
    return keys


def test_compose_and_the_chart_run_the_same_services_on_the_same_ports(compose, chart_values):
    assert set(chart_values["services"]) == set(APP_SERVICES)
    for name, port in APP_SERVICES.items():
        assert chart_values["services"][name]["port"] == port, name


def test_compose_and_the_chart_use_the_same_images(compose, chart_values):
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    tag = chart_values["image"]["tag"] or chart["appVersion"]
    for name in APP_SERVICES:
        assert compose["services"][name]["image"] == f"{chart_values['image']['repository']}/{name}:{tag}", name


def test_every_setting_compose_passes_has_its_place_in_the_chart(compose, chart_values):
    chart_settings = (CHART_OWN_SETTINGS | set(chart_values["secrets"]["values"]) | set(chart_values["env"])
                      | {key for svc in chart_values["services"].values() for key in svc["env"]})
    for name in APP_SERVICES:
        missing = compose_settings(compose, name) - chart_settings
        assert not missing, f"{name}: compose sets {sorted(missing)}, which the chart's values cannot set"
