"""Where the `helm` binary for the chart test is: $HELM, the PATH, or the pinned build in the cache.

`make helm` (deploy/helm/install-helm.sh, run by `make test` and CI) builds ``HELM_VERSION`` with Go into
``~/.cache/leadbridge/helm/<version>/helm`` when there is no helm on PATH.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .paths import cache_dir

HELM_VERSION = "v3.19.5"  # keep in step with deploy/helm/install-helm.sh


def helm_binary() -> str | None:
    for candidate in (os.environ.get("HELM"), shutil.which("helm"), cache_dir() / "helm" / HELM_VERSION / "helm"):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    return None
