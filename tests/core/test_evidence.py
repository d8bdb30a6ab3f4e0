"""The typed evidence: legacy evidence still reads, a renamed field fails loudly, the dashboard's names exist.

``data/legacy_evidence.json`` is evidence exactly as the judges wrote it before the model existed (no
``version``), one decision per judge and outcome, so stores written by older rollwise stay readable.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from rollwise.analysis.explain import explain
from rollwise.core.evidence import (
    EVIDENCE_VERSION,
    Evidence,
    EvidenceError,
    JudgeDetails,
    MetricEvidence,
    decision_of,
    dump_evidence,
    evidence_schema,
    parse_evidence,
)
from rollwise.core.model import Action, Verdict
from support.common import REPO

LEGACY = json.loads((Path(__file__).parent / "data" / "legacy_evidence.json").read_text())
APP_JS = REPO / "src" / "rollwise" / "api" / "static" / "app.js"


def _nulls_for_infinities(value: Any) -> Any:
    """What the SQL store keeps: JSON has no Infinity, so it is written as null."""
    if isinstance(value, float) and math.isinf(value):
        return None
    if isinstance(value, dict):
        return {k: _nulls_for_infinities(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nulls_for_infinities(v) for v in value]
    return value


@pytest.mark.parametrize("name", sorted(LEGACY))
def test_legacy_evidence_parses_and_dumps_back_to_the_same_keys(name: str) -> None:
    stored = LEGACY[name]["evidence"]
    assert "version" not in stored
    evidence = parse_evidence(stored)
    assert evidence.version == EVIDENCE_VERSION
    again = dump_evidence(evidence)
    expected = {**stored, "version": EVIDENCE_VERSION} if stored else {
        "version": EVIDENCE_VERSION, "rule": None, "culprit": None, "metrics": []}
    assert json.dumps(again, sort_keys=True) == json.dumps(expected, sort_keys=True)
    assert parse_evidence(_nulls_for_infinities(stored)).rule == evidence.rule
    jsonschema.Draft202012Validator(evidence_schema()).validate(_nulls_for_infinities(again))


def test_legacy_decision_events_read_typed() -> None:
    stored = LEGACY["sequential-rollback"]["evidence"]
    data = {"index": 4, "action": "rollback", "rule": stored["rule"], "culprit": stored["culprit"], "stage": 1,
            "weight": 10.0, "evidence": stored}
    decision = decision_of(data)
    assert decision.index == 4 and decision.weight == 10.0
    culprit = decision.evidence.culprit_metric()
    assert culprit is not None and culprit.metric == "errors" and culprit.params.slo is not None
    assert culprit.params.slo.breached and culprit.params.slo.trials > 0


def test_a_renamed_or_unknown_field_is_refused_not_ignored() -> None:
    stored = dict(LEGACY["sequential-expand"]["evidence"])
    stored["canaryRequest"] = stored.pop("canaryRequests")  # a writer renamed a field
    with pytest.raises(ValidationError, match="canaryRequest"):
        parse_evidence(stored)
    metric = dict(stored["metrics"][0], params={**stored["metrics"][0]["params"], "eValues": 3.0})
    with pytest.raises(ValidationError, match="eValues"):
        MetricEvidence.model_validate(metric)
    with pytest.raises(ValidationError):
        JudgeDetails(canaryRequest=5)  # type: ignore[call-arg]
    with pytest.raises(KeyError):
        Verdict(Action.HOLD, "x", rule="no-data").evidence["canaryRequest"]


def test_newer_evidence_is_refused_with_a_clear_message() -> None:
    with pytest.raises(EvidenceError, match="newer"):
        parse_evidence({"version": EVIDENCE_VERSION + 1, "rule": "x"})
    with pytest.raises(EvidenceError):
        parse_evidence(["not", "evidence"])  # type: ignore[arg-type]


def test_a_verdict_stores_exactly_what_the_judge_set() -> None:
    verdict = Verdict(Action.HOLD, "no data", rule="no-data", details=JudgeDetails(compared=0, mismatches=0))
    assert verdict.to_evidence() == {"version": EVIDENCE_VERSION, "rule": "no-data", "culprit": None,
                                     "metrics": [], "compared": 0, "mismatches": 0}
    assert verdict.evidence["compared"] == 0 and verdict.evidence.carry is None
    assert "no-data" in explain(verdict.to_evidence()) == explain(verdict.evidence)


def _schema_fields(schema: dict[str, Any], definition: str | None) -> set[str]:
    node = schema if definition is None else schema["$defs"][definition]
    return set(node["properties"])


#: How app.js names what it reads: variable -> the schema definition it holds.
DASHBOARD_NAMES = {"evidence": None, "metric": "MetricEvidence", "params": "MetricParams", "counts": "SideCounts",
                   "gate": "SloVerdict", "burn": "BurnProjection"}


def test_every_evidence_field_the_dashboard_reads_is_in_the_schema() -> None:
    """The dashboard reads evidence through variables named after the schema's definitions; each name it
    reads must exist there, so renaming a field in the model fails here instead of blanking the page."""
    schema = evidence_schema()
    source = APP_JS.read_text()
    read: dict[str, set[str]] = {}
    for variable, definition in DASHBOARD_NAMES.items():
        names = set(re.findall(rf"\b{variable}\??\.(\w+)", source))
        read[variable] = names
        missing = names - _schema_fields(schema, definition)
        assert not missing, f"app.js reads {variable}.{sorted(missing)}, not in the evidence schema"
    assert {"culprit", "metrics", "canaryRequests"} <= read["evidence"], read
    assert {"canary", "baseline", "params", "effect", "interval"} <= read["metric"], read


def test_the_schema_is_what_the_api_and_cli_serve() -> None:
    schema = evidence_schema()
    assert schema["properties"]["version"]["default"] == EVIDENCE_VERSION
    assert set(Evidence.model_fields) == set(schema["properties"])
    jsonschema.Draft202012Validator.check_schema(schema)
    printed = subprocess.run([sys.executable, "-m", "rollwise", "schema", "evidence"], capture_output=True,
                             text=True, timeout=60, check=True)
    assert json.loads(printed.stdout) == schema
