"""The Helm chart renders, for its defaults and the example production values, into manifests that are valid
against the Kubernetes schemas (kubernetes-validate, offline) and, for the custom resources (ServiceMonitor,
PrometheusRule, Strimzi, CloudNativePG), against their CRDs' published schemas (stored in crd_schemas/).

Rendering needs `helm`: `make test` (and CI's .ci/run) build it once with Go if it is not on PATH; without
it this test fails and says how to get it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from leadbridge_contracts.topics import ALL_TOPICS
from leadbridge_devstack.helm import HELM_VERSION, helm_binary
from leadbridge_devstack.system import SERVICES

ROOT = Path(__file__).resolve().parents[2]
HELM_DIR = ROOT / "deploy" / "helm"
CHART = HELM_DIR / "leadbridge"
EXAMPLES = HELM_DIR / "examples"
PRODUCTION = EXAMPLES / "values-production.yaml"
KUBERNETES = "1.33.0"
CRD_SCHEMAS = {
    (doc["apiVersion"], doc["kind"]): doc["schema"]
    for doc in (json.loads(p.read_text()) for p in (Path(__file__).parent / "crd_schemas").glob("*.json"))
}


def helm() -> str:
    binary = helm_binary()
    if binary is None:
        pytest.fail(f"helm is not installed, so the chart cannot be rendered: run `make helm` (builds helm "
                    f"{HELM_VERSION} once with Go into ~/.cache/leadbridge/helm) or put helm 3 on PATH. "
                    "CI's .ci/run does this.")
    return binary


def render(*values: Path) -> list[dict]:
    args = [helm(), "template", "lb", str(CHART), "--namespace", "leadbridge", "--kube-version", KUBERNETES]
    for path in values:
        args += ["-f", str(path)]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module", params=["default", "production"])
def manifests(request) -> list[dict]:
    return render() if request.param == "default" else render(PRODUCTION)


@pytest.fixture(scope="module")
def default_manifests() -> list[dict]:
    return render()


def validate(doc: dict) -> None:
    crd = CRD_SCHEMAS.get((doc["apiVersion"], doc["kind"]))
    if crd is not None:
        jsonschema.Draft7Validator(crd).validate(doc)
    else:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_every_manifest_is_valid(manifests):
    kinds = {d["kind"] for d in manifests}
    assert {"Deployment", "Service", "PodDisruptionBudget", "ConfigMap", "ServiceMonitor", "PrometheusRule"} <= kinds
    for doc in manifests:
        validate(doc)


def test_a_schema_violation_is_caught():
    with pytest.raises(kubernetes_validate.ValidationError):
        validate({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
                  "spec": {"replicas": "two", "selector": {}, "template": {}}})
    with pytest.raises(jsonschema.ValidationError):
        validate({"apiVersion": "kafka.strimzi.io/v1", "kind": "KafkaTopic", "metadata": {"name": "x"},
                  "spec": {"partitions": "six"}})


def test_every_service_runs_replicated_probed_and_budgeted(manifests):
    deployments, services = by_kind(manifests, "Deployment"), by_kind(manifests, "Service")
    budgets = by_kind(manifests, "PodDisruptionBudget")
    assert len(deployments) == len(SERVICES)
    for spec in SERVICES:
        name = f"lb-leadbridge-{spec.name}"
        deployment = deployments[name]
        assert deployment["spec"]["replicas"] >= 2, name
        pod = deployment["spec"]["template"]
        [container] = pod["spec"]["containers"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
        assert container["ports"][0]["containerPort"] == spec.default_port
        env = {e["name"]: e for e in container["env"]}
        assert env[spec.port_variable]["value"] == str(spec.default_port)
        assert "secretKeyRef" in env["DATABASE_URL"]["valueFrom"], "the database URL comes from a Secret"
        labels = pod["metadata"]["labels"]
        assert budgets[name]["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert budgets[name]["spec"]["maxUnavailable"] == 1
        assert services[name]["spec"]["selector"].items() <= labels.items()
        assert services[name]["spec"]["ports"][0]["name"] == "http"
    [monitor] = by_kind(manifests, "ServiceMonitor").values()
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    for service in services.values():
        assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()


def test_topics_are_replicated_three_ways(manifests):
    [config] = [c for c in by_kind(manifests, "ConfigMap").values() if "KAFKA_BOOTSTRAP_SERVERS" in c["data"]]
    assert config["data"]["KAFKA_REPLICATION_FACTOR"] == "3"
    assert config["data"]["KAFKA_MIN_INSYNC_REPLICAS"] == "2"


def test_the_prometheus_rule_is_the_tested_alerts_file(manifests):
    [rule] = by_kind(manifests, "PrometheusRule").values()
    assert rule["spec"] == yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())


def test_kafka_topics_are_the_registry_s_topics():
    topics = by_kind(render(PRODUCTION), "KafkaTopic")
    rendered = {t["spec"]["topicName"]: t["spec"] for t in topics.values()}
    expected = {t.name: t.partitions for t in ALL_TOPICS} | {t.dlq: 1 for t in ALL_TOPICS}
    assert {name: spec["partitions"] for name, spec in rendered.items()} == expected
    assert all(s["replicas"] == 3 and s["config"]["min.insync.replicas"] == 2 for s in rendered.values())
    assert {name for name, s in rendered.items() if s["config"].get("retention.ms") == -1} == \
        {t.dlq for t in ALL_TOPICS}, "dead letters are kept until handled, as ensure_topics creates them"
    assert {t["metadata"]["labels"]["strimzi.io/cluster"] for t in topics.values()} == {"leadbridge"}


def test_the_defaults_create_no_kafka_topics_and_a_secret_of_the_chart(default_manifests):
    assert not by_kind(default_manifests, "KafkaTopic")
    assert "lb-leadbridge" in by_kind(default_manifests, "Secret")


def test_the_strimzi_and_cloudnativepg_examples_are_valid_and_match_the_values():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    kafka = [d for d in yaml.safe_load_all((EXAMPLES / "strimzi-kafka.yaml").read_text()) if d]
    postgres = [d for d in yaml.safe_load_all((EXAMPLES / "cnpg-cluster.yaml").read_text()) if d]
    for doc in kafka + postgres:
        assert (doc["apiVersion"], doc["kind"]) in CRD_SCHEMAS, doc["kind"]
        validate(doc)
    [cluster] = by_kind(kafka, "Kafka").values()
    name = cluster["metadata"]["name"]
    host, port = values["kafka"]["bootstrapServers"].split(":")
    assert host == f"{name}-kafka-bootstrap" and values["kafka"]["topics"]["cluster"] == name
    assert int(port) in {listener["port"] for listener in cluster["spec"]["kafka"]["listeners"]}
    assert cluster["spec"]["kafka"]["config"]["min.insync.replicas"] == 2
    [pool] = by_kind(kafka, "KafkaNodePool").values()
    assert pool["spec"]["replicas"] == 3 and pool["metadata"]["labels"]["strimzi.io/cluster"] == name
    [pg] = by_kind(postgres, "Cluster").values()
    assert values["database"]["secretName"] == f"{pg['metadata']['name']}-app"


def test_the_production_roster_and_sla_policies_load():
    from leadbridge_router.roster import Roster
    from leadbridge_sla_watcher.policies import SlaConfig

    config = yaml.safe_load(PRODUCTION.read_text())["config"]
    roster = Roster.model_validate(yaml.safe_load(config["roster"]))
    policies = SlaConfig.model_validate(yaml.safe_load(config["slaPolicies"]))
    assert {team.sla_policy for team in roster.teams} <= set(policies.policies)


def test_bad_values_fail_at_render_time_with_what_is_wrong(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("services:\n  router: {port: 8003, replicas: two, resources: {requests: {cpu: 1, memory: 1Gi}}}\n")
    result = subprocess.run([helm(), "template", "lb", str(CHART), "-f", str(bad), "--kube-version", KUBERNETES],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "replicas" in result.stderr, result.stderr
