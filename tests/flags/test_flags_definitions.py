"""Flag file validation: every problem reported, naming flag and field; invalid files rejected whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rollwise.flags import FlagSet, FlagValidationError

GOOD = {
    "metadata": {"team": "checkout", "fractionalVersion": 2},
    "$evaluators": {"internal": {"ends_with": [{"var": "email"}, "@corp.example"]}},
    "flags": {
        "beta": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
            "targeting": {"if": [{"$ref": "internal"}, "on", "off"]},
            "metadata": {"owner": "ana", "experiment": False},
        }
    },
}


def test_valid_json_and_yaml_load_the_same_flags(tmp_path: Path) -> None:
    import yaml

    (tmp_path / "f.json").write_text(json.dumps(GOOD))
    (tmp_path / "f.yaml").write_text(yaml.safe_dump(GOOD))
    for name in ("f.json", "f.yaml"):
        fs = FlagSet.load(tmp_path / name)
        assert fs.fractional_version == 2  # selected by flag-set metadata
        r = fs.resolve("beta", {"email": "bo@corp.example"}, None)
        assert (r.value, r.variant, r.reason) == (True, "on", "TARGETING_MATCH")
        assert dict(r.metadata) == {"team": "checkout", "fractionalVersion": 2, "owner": "ana", "experiment": False}


def test_load_option_overrides_flag_set_fractional_version(tmp_path: Path) -> None:
    (tmp_path / "f.json").write_text(json.dumps(GOOD))
    assert FlagSet.load(tmp_path / "f.json", fractional_version=1).fractional_version == 1
    with pytest.raises(ValueError, match="fractional_version"):
        FlagSet.load(tmp_path / "f.json", fractional_version=4)


def test_every_problem_is_reported_with_flag_and_field() -> None:
    bad = {
        "flags": {
            "a": {"state": "ON", "variants": {"x": 1, "y": "s"}, "defaultVariant": "z"},
            "b": {"state": "ENABLED", "variants": {}},
            "c": {"state": "ENABLED", "variants": {"on": True}, "defaultVariant": "on", "metdata": {}},
            "ok": {"state": "ENABLED", "variants": {"on": True}, "defaultVariant": "on"},
        },
        "flagz": {},
    }
    with pytest.raises(FlagValidationError) as info:
        FlagSet.from_dict(bad, source="flags.json")
    problems = info.value.problems
    text = "\n".join(problems)
    assert "flags.json: flags.a.state: " in text
    assert "flags.a.variants: all variants must have one type" in text
    assert "flags.a.defaultVariant: 'z' is not one of the variants" in text
    assert "flags.b.variants: " in text
    assert "flags.c.metdata: " in text  # typo caught
    assert "flags.json: flagz: unknown top-level field" in text
    assert not any("'ok'" in p for p in problems)


def test_syntax_errors_name_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "flags": {\n    "a": {"state": "ENABLED",,}\n  }\n}\n')
    with pytest.raises(FlagValidationError, match=r"broken\.json:3:\d+: invalid JSON"):
        FlagSet.load(path)
    ypath = tmp_path / "broken.yaml"
    ypath.write_text("flags:\n  a: [unclosed\n")
    with pytest.raises(FlagValidationError, match=r"broken\.yaml:\d+:\d+: invalid YAML"):
        FlagSet.load(ypath)


def test_rules_that_fail_only_when_reached_load_but_are_reported() -> None:
    fs = FlagSet.from_dict(
        {
            "flags": {
                "f": {
                    "state": "ENABLED",
                    "variants": {"a": "a", "b": "b"},
                    "defaultVariant": "a",
                    "targeting": {"if": [{"var": "x"}, {"nope": [1]}, {"$ref": "missing"}]},
                }
            }
        }
    )
    assert fs.problems() == ["flag 'f': unknown operator 'nope'", "flag 'f': unknown evaluator $ref 'missing'"]
    assert fs.resolve("f", {"x": True}, "d").error_code == "PARSE_ERROR"
    assert fs.resolve("f", {}, "d").error_code == "PARSE_ERROR"


def test_schedule_for_unknown_flag_rejects_the_file() -> None:
    doc = {
        "flags": {"a": {"state": "ENABLED", "variants": {"on": True}, "defaultVariant": "on"}},
        "$rollwise": {"schedules": [{"id": "1", "flag": "ghost", "at": "2030-01-01T00:00:00Z", "action": "enable"}]},
    }
    with pytest.raises(FlagValidationError, match="flag 'ghost' is not defined"):
        FlagSet.from_dict(doc)
