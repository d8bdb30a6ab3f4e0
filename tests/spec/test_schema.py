"""`rollwise schema rollout` publishes what users write (issue 11, item 10): every shipped example validates
against it with `jsonschema`, and text the parsers refuse is refused by the schema too."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from typing import Any

import jsonschema
import pytest
import yaml

from rollwise.spec.loader import SpecError, load_spec_text
from support.common import EXAMPLES

EXAMPLE_SPECS = sorted(EXAMPLES.glob("*.yaml"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    out = subprocess.run([sys.executable, "-m", "rollwise", "schema", "rollout"], capture_output=True, text=True,
                         check=True, timeout=120)
    schema = json.loads(out.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_every_shipped_example_validates(validator: jsonschema.Draft202012Validator) -> None:
    assert len(EXAMPLE_SPECS) >= 5
    for path in EXAMPLE_SPECS:
        errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(
            yaml.safe_load(path.read_text()))]
        assert errors == [], (path.name, errors[:5])


def _canary() -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / "canary.yaml").read_text())  # type: ignore[no-any-return]


def _set(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    node: Any = out
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return out


ANALYSIS = ("strategy", "canary", "analysis")
BAD_INPUT = [
    ((*ANALYSIS, "interval"), "2 minutes"),
    ((*ANALYSIS, "interval"), "-5s"),
    ((*ANALYSIS, "metrics", 0, "slo"), "about 1%"),
    ((*ANALYSIS, "metrics", 0, "maxIncrease"), "a little"),
    ((*ANALYSIS, "maxStageTime"), "15 mins"),
]


@pytest.mark.parametrize(("path", "value"), BAD_INPUT)
def test_text_the_parser_refuses_is_refused_by_the_schema(
    validator: jsonschema.Draft202012Validator, path: tuple[Any, ...], value: Any
) -> None:
    doc = _set(_canary(), path, value)
    assert not validator.is_valid(doc)
    with pytest.raises(SpecError):
        load_spec_text(yaml.safe_dump(doc))


GOOD_INPUT = [
    ((*ANALYSIS, "interval"), "1h30m"),
    ((*ANALYSIS, "interval"), 45),
    ((*ANALYSIS, "interval"), "250ms"),
    ((*ANALYSIS, "metrics", 0, "slo"), "errorRate < 0.1%"),
    ((*ANALYSIS, "metrics", 1, "slo"), "<= 1.5s"),
    ((*ANALYSIS, "metrics", 0, "maxIncrease"), 0.002),
]


@pytest.mark.parametrize(("path", "value"), GOOD_INPUT)
def test_text_the_parser_accepts_is_accepted_by_the_schema(
    validator: jsonschema.Draft202012Validator, path: tuple[Any, ...], value: Any
) -> None:
    doc = _set(_canary(), path, value)
    load_spec_text(yaml.safe_dump(doc))
    assert validator.is_valid(doc), [e.message for e in validator.iter_errors(doc)]
