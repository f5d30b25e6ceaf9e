"""The model file: the default loads; a bad file names the key and the line."""

from __future__ import annotations

from pathlib import Path

import pytest
from leadbridge_scoring.__main__ import main
from leadbridge_scoring.model_file import ModelError, default_model_path, load_model, parse_model

GOOD = """\
version: 1
mql_threshold: 50
fit:
  - id: senior
    field: job_title
    contains: [vp]
    points: 10
engagement:
  - id: download
    kind: [download]
    points: 5
grades:
  bands:
    - {grade: A, min: 50}
    - {grade: B}
"""


def problems(text: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(ModelError) as info:
        parse_model(text, "m.yaml")
    return info.value.problems


def test_default_model_loads_and_has_every_rule_kind() -> None:
    model = load_model(default_model_path())
    assert model.version
    assert model.fit and model.engagement and model.intent and model.negative
    assert model.decay.half_life_days and model.caps.engagement
    assert Path(default_model_path()).parent.name == "models"


def test_good_model_parses_and_version_becomes_text() -> None:
    model = parse_model(GOOD)
    assert model.version == "1"
    assert model.fit[0].contains == ["vp"]


def test_wrong_type_names_key_and_line() -> None:
    [(line, key, msg)] = problems(GOOD.replace("points: 5", "points: lots"))
    assert (line, key) == (11, "engagement[0].points")
    assert "number" in msg


def test_unknown_key_is_an_error_with_its_line() -> None:
    [(line, key, msg)] = problems(GOOD.replace("    points: 10\n", "    points: 10\n    pionts: 3\n"))
    assert (line, key) == (8, "fit[0].pionts")
    assert "Extra inputs" in msg


def test_missing_key_points_at_the_enclosing_mapping() -> None:
    [(line, key, msg)] = problems(GOOD.replace("mql_threshold: 50\n", ""))
    assert key == "mql_threshold" and "required" in msg.lower() and line == 1


def test_rule_needs_exactly_one_matcher() -> None:
    [(line, key, msg)] = problems(GOOD.replace("    contains: [vp]\n", "    contains: [vp]\n    equals: [ceo]\n"))
    assert (line, key) == (4, "fit[0]") and "exactly one" in msg


def test_negative_rule_must_subtract() -> None:
    text = GOOD + "negative:\n  - id: student\n    field: job_title\n    contains: [student]\n    points: 5\n"
    [(line, key, msg)] = problems(text)
    assert (line, key) == (20, "negative[0].points") and "below 0" in msg


def test_duplicate_rule_id_points_at_the_second_one() -> None:
    text = GOOD.replace("  - id: download", "  - id: senior")
    [(line, _, msg)] = problems(text)
    assert line == 9 and "'senior'" in msg


def test_unknown_after_reference() -> None:
    [(line, _, msg)] = problems(GOOD.replace("    points: 5\n", "    points: 5\n    after: [nope]\n"))
    assert line == 9 and "nope" in msg


def test_grade_bands_must_descend_and_end_with_catch_all() -> None:
    [(_, key, msg)] = problems(GOOD.replace("{grade: B}", "{grade: B, min: 70}"))
    assert key == "grades.bands" and "catch-all" in msg


def test_duplicate_key_and_yaml_syntax_error() -> None:
    [(line, key, msg)] = problems(GOOD.replace("mql_threshold: 50\n", "mql_threshold: 50\nmql_threshold: 60\n"))
    assert (line, key, msg) == (3, "mql_threshold", "duplicate key")
    [(line, _, msg)] = problems(GOOD.replace("contains: [vp]", "contains: [vp"))
    assert line is not None and msg.startswith("YAML syntax")


def test_not_a_mapping_and_missing_file(tmp_path: Path) -> None:
    assert problems("- just\n- a list\n")[0][2].startswith("the model must be")
    with pytest.raises(ModelError, match="cannot read"):
        load_model(tmp_path / "nope.yaml")


def test_check_model_command_reports_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("mql_threshold: 50", "mql_threshold: high"))
    assert main(["check-model", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2: mql_threshold:" in err
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    assert main(["check-model", str(good)]) == 0
