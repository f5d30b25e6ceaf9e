"""leadbridge-contracts needs pydantic alone: importing it (and exporting its JSON Schemas) loads no plumbing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import leadbridge_contracts

PLUMBING = ("aiokafka", "sqlalchemy", "asyncpg", "fastapi", "alembic", "yaml", "prometheus_client", "leadbridge_events")


def test_the_contracts_package_imports_no_plumbing() -> None:
    code = ("import sys, leadbridge_contracts, leadbridge_contracts.json_schema as js; js.render_json_schemas(); "
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({PLUMBING!r})))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert json.loads(out.strip().replace("'", '"')) == []


def test_the_package_declares_pydantic_as_its_only_dependency() -> None:
    import tomllib

    pyproject = Path(leadbridge_contracts.__file__).resolve().parents[2] / "pyproject.toml"
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    assert [d.split(">")[0].split("=")[0].strip() for d in deps] == ["pydantic"]
