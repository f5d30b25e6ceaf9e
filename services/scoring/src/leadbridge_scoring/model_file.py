"""Reading a scoring model from YAML, with errors that name the key and the line.

YAML is composed into nodes (which keep their line numbers), turned into plain data while remembering the
line of every key path, then validated by ``ScoringModel``. Any problem raises ``ModelError`` whose message
reads like ``default.yaml:42: engagement[3].points: Input should be greater than or equal to 0``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .model import ScoringModel

Loc = tuple[str | int, ...]


class ModelError(ValueError):
    """A scoring model that cannot be used; ``problems`` lists (line, key, message) for each problem."""

    def __init__(self, source: str, problems: list[tuple[int | None, str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"{source}:{line or '?'}: {key}: {msg}" if key else f"{source}:{line or '?'}: {msg}"
                 for line, key, msg in problems]
        super().__init__("invalid scoring model\n" + "\n".join(lines))


def _to_data(node: yaml.Node, loc: Loc, lines: dict[Loc, int], source: str, loader: yaml.SafeLoader) -> Any:
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise ModelError(source, [(line, _dotted(loc), "keys must be plain words")])
            key = str(key_node.value)
            if key in out:
                raise ModelError(source, [(line, _dotted(loc + (key,)), "duplicate key")])
            lines[loc + (key,)] = line
            out[key] = _to_data(value_node, loc + (key,), lines, source, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_data(item, loc + (i,), lines, source, loader) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)  # a scalar: int, float, bool, null or str


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_for(loc: Loc, lines: dict[Loc, int]) -> int | None:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def parse_model(text: str, source: str = "<model>") -> ScoringModel:
    """Validate a model given as YAML text; raises ModelError naming the key and line of each problem."""
    loader = yaml.SafeLoader(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            raise ModelError(source, [(mark.line + 1 if mark else None, "", f"YAML syntax: {exc.problem}")]) from None
        if root is None or not isinstance(root, yaml.MappingNode):
            raise ModelError(source, [(1, "", "the model must be a YAML mapping (version, mql_threshold, grades, ...)")])
        lines: dict[Loc, int] = {}
        data = _to_data(root, (), lines, source, loader)
    finally:
        loader.dispose()
    try:
        return ScoringModel.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))  # drop union tags
            msg = err["msg"].removeprefix("Value error, ")
            line = _line_for(loc, lines)
            if not loc:  # a cross-rule check: point at the rule it names, if any
                named = re.search(r"rule(?: id)? '([^']+)'", msg)
                if named:
                    hits = [ln for key, ln in lines.items() if len(key) == 3 and key[2] == "id"
                            and _value_at(data, key) == named.group(1)]
                    line = max(hits) if hits else line
            problems.append((line, _dotted(loc), msg))
        raise ModelError(source, problems) from None


def _value_at(data: Any, loc: Loc) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def load_model(path: str | Path) -> ScoringModel:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelError(str(path), [(None, "", f"cannot read the model file: {exc.strerror or exc}")]) from exc
    return parse_model(text, source=str(path))


def default_model_path() -> Path:
    """The shipped default model: inside the installed package, or in the service folder when editable."""
    packaged = Path(__file__).parent / "models" / "default.yaml"
    if packaged.exists():
        return packaged
    return Path(__file__).resolve().parents[2] / "models" / "default.yaml"
