"""Where the project lives and where downloads are cached (outside git)."""

from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    env = os.environ.get("LEADBRIDGE_ROOT")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "deploy" / "kafka" / "jars.lock").exists():
            return parent
    raise RuntimeError("cannot find the LeadBridge checkout; set LEADBRIDGE_ROOT")


def cache_dir() -> Path:
    base = os.environ.get("LEADBRIDGE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "leadbridge"
    )
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def state_dir() -> Path:
    """The git-ignored folder of `make up`'s long-lived stack."""
    path = repo_root() / ".devstack"
    path.mkdir(parents=True, exist_ok=True)
    return path
