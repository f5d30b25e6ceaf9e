"""The type checker's escape hatch is used the one way the house allows: ``# type: ignore[code]  # reason``.

mypy itself insists on the code (``ignore-without-code``) and on the ignore being needed (``warn_unused_ignores``,
part of ``strict``); the reason is for the next reader, and this test insists on it in every file mypy checks.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IGNORE = re.compile(r"#\s*type:\s*ignore\b(?P<rest>.*)$")
WITH_CODE_AND_REASON = re.compile(r"^\[[a-z-]+(,\s*[a-z-]+)*\]\s+#\s*\S")


def checked_files() -> list[Path]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    out: list[Path] = []
    for entry in config["files"]:
        path = ROOT / entry
        out += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return out


def test_mypy_checks_the_libraries_and_files_that_exist():
    files = checked_files()
    assert all(f.exists() for f in files), [str(f) for f in files if not f.exists()]
    assert any("leadbridge_contracts" in str(f) for f in files) and any("services" in str(f) for f in files)


def test_every_type_ignore_in_the_checked_files_has_a_code_and_a_reason():
    bad = []
    for path in checked_files():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            found = IGNORE.search(line)
            if found and not WITH_CODE_AND_REASON.match(found["rest"]):
                bad.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not bad, "write `# type: ignore[code]  # reason`:\n" + "\n".join(bad)
