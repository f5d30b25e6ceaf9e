"""Re-fetch the vendored uPlot from the npm registry at a pinned version and check its integrity.

    uv run python services/insights/scripts/vendor_uplot.py          # or: make vendor-uplot

`npm pack` downloads the tarball; its SHA-512 must equal the registry's published integrity pinned below,
then the two files the page uses (and the licence) are written to ``static/vendor/``. Users never run
this: the files are committed, so the page needs no CDN and no build step.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "uplot"
VERSION = "1.6.32"
INTEGRITY = "sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw=="
FILES = {"package/dist/uPlot.iife.min.js": "uPlot.iife.min.js", "package/dist/uPlot.min.css": "uPlot.min.css",
         "package/LICENSE": "uPlot.LICENSE"}
VENDOR = Path(__file__).resolve().parents[1] / "src" / "leadbridge_insights" / "static" / "vendor"


def integrity_of(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="vendor-uplot-") as tmp:
        subprocess.run(["npm", "pack", f"{PACKAGE}@{VERSION}", "--silent"], cwd=tmp, check=True,
                       stdout=subprocess.DEVNULL)
        tarball = Path(tmp) / f"{PACKAGE}-{VERSION}.tgz"
        actual = integrity_of(tarball.read_bytes())
        if actual != INTEGRITY:
            print(f"integrity mismatch for {PACKAGE}@{VERSION}: {actual} != {INTEGRITY}", file=sys.stderr)
            return 1
        VENDOR.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarball) as tar:
            for member, name in FILES.items():
                extracted = tar.extractfile(member)
                assert extracted is not None, member
                (VENDOR / name).write_bytes(extracted.read())
    (VENDOR / "VERSION").write_text(f"{PACKAGE} {VERSION} {INTEGRITY}\n")
    print(f"vendored {PACKAGE}@{VERSION} into {VENDOR} (integrity {INTEGRITY[:20]}... verified)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
