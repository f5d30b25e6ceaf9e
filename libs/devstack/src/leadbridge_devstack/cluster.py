"""A local multi-broker Apache Kafka cluster (KRaft) from the same pinned jars as the single broker.

Every node is broker and controller at once (combined mode), and the nodes form one controller quorum:
with three, any one of them may die and the cluster keeps a metadata leader and an in-sync majority.
Brokers of three or more get ``default.replication.factor=3`` and ``min.insync.replicas=2`` (and so do the
offsets and transaction topics), so an ``acks=all`` write survives the loss of any one broker.

The API, used by the test fixtures, ``make up BROKERS=3`` and ``make chaos --brokers 3``::

    cluster = KafkaCluster.throwaway(brokers=3)     # or KafkaCluster(data_dir, brokers=3).start()
    cluster.bootstrap_servers                       # "127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3"
    cluster.kill(1)                                 # SIGKILL broker 1 (0-based), its data kept: a crash
    cluster.restart(1)                              # start it again on the same ports and data
    cluster.stop(); cluster.remove()                # clean stop of all / stop and delete the data

``brokers=1`` is exactly the single ``KafkaBroker`` of before (replication factor 1).
"""

from __future__ import annotations

import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .kafka import KafkaBroker, new_cluster_id, replication_for
from .ports import free_port
from .progress import Log


@dataclass
class KafkaCluster:
    data_dir: Path
    brokers: int = 3
    ports: list[int] | None = None  # client port of each broker; None: free ports
    controller_ports: list[int] | None = None
    nodes: list[KafkaBroker] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if self.brokers < 1:
            raise ValueError("a Kafka cluster needs at least one broker")
        ports = self.ports or [free_port() for _ in range(self.brokers)]
        controllers = self.controller_ports or [free_port() for _ in range(self.brokers)]
        if len(ports) != self.brokers or len(controllers) != self.brokers:
            raise ValueError(f"need {self.brokers} client and controller ports")
        voters = ",".join(f"{i + 1}@127.0.0.1:{port}" for i, port in enumerate(controllers))
        cluster_id = self._stored_cluster_id() or new_cluster_id()
        heap = "768m" if self.brokers == 1 else "512m"
        self.nodes = [
            KafkaBroker(self.data_dir / f"broker-{i + 1}" if self.brokers > 1 else self.data_dir, ports[i],
                        controllers[i], node_id=i + 1, voters=voters, cluster_size=self.brokers,
                        cluster_id=cluster_id, heap=heap)
            for i in range(self.brokers)
        ]

    def _stored_cluster_id(self) -> str | None:
        """The id the nodes' storage was formatted with, so a restarted `make up` cluster keeps its data."""
        for meta in sorted(self.data_dir.glob("**/logs/meta.properties")):
            for line in meta.read_text().splitlines():
                if line.startswith("cluster.id="):
                    return line.split("=", 1)[1].strip()
        return None

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.bootstrap_servers for node in self.nodes)

    @property
    def replication_factor(self) -> int:
        return replication_for(self.brokers)[0]

    @property
    def min_insync_replicas(self) -> int:
        return replication_for(self.brokers)[1]

    def start(self, log: Log = print, timeout: float = 120.0) -> KafkaCluster:
        """Start every node (all launched first: none finishes starting without a quorum) and wait for all."""
        try:
            for node in self.nodes:
                node.launch(log)
            for node in self.nodes:
                node.await_started(log, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def kill(self, index: int) -> None:
        """SIGKILL broker ``index`` (0-based), keeping its data, as a crash or a pulled plug would."""
        self.nodes[index].kill()

    def restart(self, index: int, log: Log = lambda *_: None, timeout: float = 120.0) -> None:
        """Start broker ``index`` again on its ports and data (after ``kill`` or ``stop_broker``)."""
        node = self.nodes[index]
        node.stop()  # no-op after kill(); a clean stop if it still runs
        node.launch(log)
        node.await_started(log, timeout)

    def stop_broker(self, index: int, timeout: float = 30.0) -> None:
        """Stop broker ``index`` cleanly (SIGTERM: it hands its partition leadership over first)."""
        self.nodes[index].stop(timeout)

    def running(self) -> list[int]:
        return [i for i, node in enumerate(self.nodes) if node.pid is not None]

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every node cleanly, all at once (one by one, the last ones would wait for a lost quorum)."""
        with ThreadPoolExecutor(max_workers=len(self.nodes)) as pool:
            list(pool.map(lambda node: node.stop(timeout), self.nodes))

    def remove(self) -> None:
        """Kill every node and delete the cluster's data (nothing to shut down cleanly for)."""
        for node in self.nodes:
            node.kill()
            node.stop()  # clears the pid file, and any node that was started from another process
        shutil.rmtree(self.data_dir, ignore_errors=True)

    @classmethod
    def throwaway(cls, brokers: int = 3) -> KafkaCluster:
        """A cluster with its data in a new temporary folder, on free ports, started."""
        data = Path(tempfile.mkdtemp(prefix=f"leadbridge-kafka{brokers}-"))
        return cls(data, brokers).start(log=lambda *_: None)
