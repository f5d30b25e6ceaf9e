"""The local Kafka cluster's layout and broker settings (no JVM started)."""

from __future__ import annotations

from leadbridge_devstack import cli
from leadbridge_devstack.cluster import KafkaCluster


def props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def test_three_nodes_form_one_quorum_and_replicate_three_ways(tmp_path):
    cluster = KafkaCluster(tmp_path, brokers=3, ports=[1001, 1003, 1005], controller_ports=[1002, 1004, 1006])
    assert cluster.bootstrap_servers == "127.0.0.1:1001,127.0.0.1:1003,127.0.0.1:1005"
    configs = [props(node._properties()) for node in cluster.nodes]
    assert [c["node.id"] for c in configs] == ["1", "2", "3"]
    assert {c["controller.quorum.voters"] for c in configs} == {"1@127.0.0.1:1002,2@127.0.0.1:1004,3@127.0.0.1:1006"}
    for c in configs:
        assert c["default.replication.factor"] == c["offsets.topic.replication.factor"] == "3"
        assert c["min.insync.replicas"] == c["transaction.state.log.min.isr"] == "2"
    assert len({node.data_dir for node in cluster.nodes}) == 3
    assert len({node.cluster_id for node in cluster.nodes}) == 1, "one cluster id for every node's storage"


def test_one_broker_is_the_single_broker_of_before(tmp_path):
    [node] = KafkaCluster(tmp_path, brokers=1, ports=[1001], controller_ports=[1002]).nodes
    config = props(node._properties())
    assert node.data_dir == tmp_path
    assert config["controller.quorum.voters"] == "1@127.0.0.1:1002"
    assert config["default.replication.factor"] == "1" and config["min.insync.replicas"] == "1"


def test_a_restarted_cluster_keeps_its_cluster_id(tmp_path):
    meta = tmp_path / "broker-2" / "logs" / "meta.properties"
    meta.parent.mkdir(parents=True)
    meta.write_text("version=1\ncluster.id=KeepThisClusterId12345\nnode.id=2\n")
    assert {n.cluster_id for n in KafkaCluster(tmp_path, brokers=3).nodes} == {"KeepThisClusterId12345"}


def test_make_up_brokers_3_uses_fixed_ports_and_remembers_the_count(tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "state_dir", lambda: tmp_path)
    monkeypatch.delenv("LEADBRIDGE_KAFKA_BROKERS", raising=False)
    assert cli.broker_count() == 1 and cli.broker().nodes[0].data_dir == tmp_path / "kafka"
    cluster = cli.broker(3)
    assert [n.port for n in cluster.nodes] == [cli.KAFKA_PORT, cli.KAFKA_PORT + 2, cli.KAFKA_PORT + 4]
    assert cluster.data_dir == tmp_path / "kafka-3brokers"
    (tmp_path / "kafka-brokers").write_text("3")
    assert cli.broker_count() == 3 and cli.env_lines().count(",") == 2
    monkeypatch.setenv("LEADBRIDGE_KAFKA_BROKERS", "1")
    assert cli.broker_count() == 1


def test_the_local_broker_runs_the_client_compiler_only(tmp_path):
    """A fresh broker's optimising JIT cost more CPU than its request handling for its first minutes."""
    [node] = KafkaCluster(tmp_path, brokers=1, ports=[1001], controller_ports=[1002]).nodes
    options = node.jvm_options()
    assert "-XX:TieredStopAtLevel=1" in options
    assert f"-Xmx{node.heap}" in options and "-XX:+UseG1GC" in options
