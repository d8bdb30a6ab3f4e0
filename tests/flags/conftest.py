"""Shared fixtures for the feature-flag tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from support.flags_bdd import TESTBED

# Gherkin tags of the flagd testbed become pytest marks; registering them keeps `--strict-markers` usable.
_TESTBED_TAGS = [
    "fractional",
    "fractional-v1",
    "fractional-v2",
    "fractional-v3",
    "fractional-nested",
    "fractional-single-entry",
    "operator-errors",
    "semver",
    "semver-edge-cases",
    "semver-v-prefix",
    "semver-partial-version",
    "semver-numeric-context",
    "semver-build-metadata",
    "string",
    "targeting",
    "evaluator-refs",
    "evaluator-refs-whitespace",
    "non-existent-evaluator-ref",
    "metadata",
    "metadata-provider",
    "no-default",
    "no-default-variant",
    "deprecated",
    "disabled",
    "rpc",
    "in-process",
    "file",
]


def pytest_configure(config: pytest.Config) -> None:
    for tag in _TESTBED_TAGS:
        config.addinivalue_line("markers", f"{tag}: flagd testbed gherkin tag")


def merged_testbed_flags() -> dict[str, Any]:
    """The testbed's `allFlags.json`: every `flags/*.json` except the `selector-*` ones, merged."""
    merged: dict[str, Any] = {"flags": {}, "$evaluators": {}}
    for path in sorted((TESTBED / "flags").glob("*.json")):
        if path.name.startswith("selector"):
            continue
        doc = json.loads(path.read_text())
        merged["flags"].update(doc.get("flags", {}))
        merged["$evaluators"].update(doc.get("$evaluators", {}))
    return merged


@pytest.fixture
def all_flags_file(tmp_path: Path) -> Path:
    path = tmp_path / "allFlags.json"
    path.write_text(json.dumps(merged_testbed_flags(), indent=2))
    return path
