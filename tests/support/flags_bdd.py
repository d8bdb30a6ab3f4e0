"""Value conversions shared by the flagd-testbed gherkin step definitions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

TESTBED = Path(__file__).resolve().parents[1] / "flags" / "testbed"


def convert(text: str, kind: str) -> Any:
    """A gherkin table cell as the typed value it stands for (cells are not unescaped, except `\\"`)."""
    if kind == "Boolean":
        return text == "true"
    if kind == "Integer":
        return int(text)
    if kind == "Float":
        return float(text)
    if kind == "Object":
        return json.loads(text.replace('\\"', '"'))
    return text


def fractional_version(request: pytest.FixtureRequest) -> int:
    """The bucketing version a scenario was written for, from its @fractional-vN tag (v3 by default)."""
    for version in (1, 2, 3):
        if request.node.get_closest_marker(f"fractional-v{version}") is not None:
            return version
    return 3


def assert_value(actual: Any, expected_text: str, kind: str) -> None:
    expected = convert(expected_text, kind)
    assert actual == expected, f"value {actual!r} != expected {expected!r}"
    if kind == "Float":
        assert isinstance(actual, float)
    elif kind == "Integer":
        assert isinstance(actual, int) and not isinstance(actual, bool)


def assert_metadata(metadata: Any, datatable: list[list[str]]) -> None:
    header, *rows = datatable
    cols = {name: i for i, name in enumerate(header)}
    for row in rows:
        key, kind, text = row[cols["key"]], row[cols["metadata_type"]], row[cols["value"]]
        assert key in metadata, f"metadata lacks {key!r}: {dict(metadata)}"
        assert_value(metadata[key], text, kind)
