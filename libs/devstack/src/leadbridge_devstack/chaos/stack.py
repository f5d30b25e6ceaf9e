"""The chaos run's own system: a durable PostgreSQL, Kafka and the five services, on free ports in one folder.

Everything it starts can be crashed and started again on the same data and ports: a service (`kill -9`, then
the same command line), the broker (SIGKILL, then the same server.properties and log dirs) and PostgreSQL
(``pg_ctl stop -m immediate``, then crash recovery).
"""

from __future__ import annotations

import secrets
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..kafka import KafkaBroker
from ..ports import free_port
from ..postgres import PostgresCluster
from ..progress import Log
from ..system import SERVICES, System, start_system

if TYPE_CHECKING:
    from ..cluster import KafkaCluster

HERE = Path(__file__).parent
DEV_SECRET = secrets.token_urlsafe(32)  # this run's development token secret (AUTH_DEV_SECRET)


def admin_token() -> str:
    """A development token that may create intake API keys and read the router's and insights' views of a lead,
    signed with this run's secret."""
    from leadbridge_events.auth import AuthSettings, mint_dev_token
    from pydantic import SecretStr

    return mint_dev_token(AuthSettings(dev_secret=SecretStr(DEV_SECRET)), ("keys:admin", "roster:read", "insights:read"),
                          subject="chaos")


class UnsupportedBrokerCount(RuntimeError):
    pass


def service_env(bootstrap: str, database_url: str) -> dict[str, str]:
    """The services' settings: a roster with no caps, SLA escalation off (routing is deterministic)."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "DATABASE_URL": database_url,
        "AUTH_DEV_SECRET": DEV_SECRET,
        "INTAKE_RATE_LIMIT_PER_MINUTE": "10000000", "INTAKE_RATE_LIMIT_BURST": "1000000",
        "ROUTER_ROSTER_FILE": str(HERE / "roster.yaml"),
        "SLA_POLICIES_FILE": str(HERE / "sla-policies.yaml"),
        "LOG_LEVEL": "WARNING",
    }


@dataclass
class Brokers:
    """The run's Kafka brokers: the devstack's multi-broker cluster where this checkout has one, else one broker."""

    nodes: list[KafkaBroker]
    cluster: KafkaCluster | None = None

    @staticmethod
    def cluster_class() -> type[KafkaCluster] | None:
        try:
            from ..cluster import KafkaCluster
        except ImportError:
            return None
        return KafkaCluster

    @classmethod
    def check(cls, count: int) -> None:
        if count != 1 and cls.cluster_class() is None:
            raise UnsupportedBrokerCount(
                f"--brokers {count}: this checkout's devstack runs a single Kafka broker (libs/devstack/kafka.py "
                "has no multi-broker cluster yet); run with --brokers 1")

    @classmethod
    def start(cls, count: int, root: Path, log: Log = print) -> Brokers:
        cls.check(count)
        cluster_class = cls.cluster_class()
        if cluster_class is not None:
            cluster = cluster_class(root / "kafka", brokers=count).start(log=log)
            return cls(list(cluster.nodes), cluster)
        return cls([KafkaBroker(root / "kafka", free_port(), free_port()).start(log=log)])

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(b.bootstrap_servers for b in self.nodes)

    def kill(self, index: int = 0) -> None:
        self.nodes[index].kill()

    def restart(self, index: int = 0, log: Log = print) -> None:
        if self.cluster is not None:
            self.cluster.restart(index, log=log)
        else:
            self.nodes[index].start(log=log)

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
        else:
            self.nodes[0].stop()


@dataclass
class ChaosStack:
    root: Path
    postgres: PostgresCluster
    brokers: Brokers
    env: dict[str, str]
    ports: dict[str, int]
    log_dir: Path
    system: System = field(default_factory=System)

    @classmethod
    def start(cls, *, brokers: int = 1, root: Path | None = None, log: Log = print) -> ChaosStack:
        Brokers.check(brokers)
        root = root or Path(tempfile.mkdtemp(prefix="leadbridge-chaos-"))
        root.chmod(0o755)  # the unprivileged postgres user must reach it when we run as root
        pg = PostgresCluster(root / "postgres", free_port(), durable=True)
        started: list[PostgresCluster | Brokers] = []
        try:
            pg.start(log=log)
            started.append(pg)
            kafka = Brokers.start(brokers, root, log=log)
            started.append(kafka)
            stack = cls(root, pg, kafka, service_env(kafka.bootstrap_servers, pg.url),
                        {s.name: free_port() for s in SERVICES}, root / "logs")
            stack.system = start_system(stack.env, stack.ports, log_dir=stack.log_dir, ready_timeout=180)
        except BaseException:
            for component in reversed(started):
                component.stop()
            shutil.rmtree(root, ignore_errors=True)
            raise
        return stack

    def url(self, name: str) -> str:
        return self.system.url(name)

    # -- faults ------------------------------------------------------------------------------------

    def kill_service(self, name: str) -> None:
        proc = self.system.services[name].process
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def restart_service(self, name: str, ready_timeout: float = 120.0) -> None:
        """Start the service again with the same settings and port; returns once it answers /readyz."""
        restarted = start_system(self.env, self.ports, only=(name,), log_dir=self.log_dir,
                                 ready_timeout=ready_timeout)
        self.system.services[name] = restarted.services[name]

    def kill_postgres(self) -> None:
        self.postgres.stop("immediate")

    def restart_postgres(self) -> None:
        self.postgres.start(log=lambda *_: None)

    def wait_services_ready(self, timeout: float = 120.0) -> None:
        from ..system import wait_ready

        deadline = time.monotonic() + timeout
        for svc in self.system.services.values():
            wait_ready(svc.url, svc.process, max(deadline - time.monotonic(), 1.0))

    # -- the end -----------------------------------------------------------------------------------

    def stop(self, remove: bool = True) -> None:
        self.system.stop()
        self.brokers.stop()
        self.postgres.stop()
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)
