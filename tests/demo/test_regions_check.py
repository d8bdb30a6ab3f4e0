"""The regions demo's own checks: a wrong outcome is a problem, and a problem fails the scenario (exit 1)."""

from __future__ import annotations

from typing import Any

import pytest

from rollwise.core.model import Event, Phase, RolloutRecord, RouteState
from rollwise.demo.load import LoadSummary, Sample
from rollwise.demo.regions import check, node_ids, spec_text
from rollwise.demo.scenarios import ScenarioResult
from rollwise.spec import load_spec_text

TARGETS = {"http://a": "a", "http://b": "b", "http://c": "c"}


def record(phase: Phase = Phase.ROLLED_BACK) -> RolloutRecord:
    return RolloutRecord(name="demo-regions", spec=load_spec_text(spec_text()), phase=phase, created_at=0.0,
                         updated_at=0.0, route=RouteState(stable="v1", canary="v2", revision=7))


def wave(name: str, action: str, **evidence: Any) -> Event:
    return Event(rollout="demo-regions", at=1.0, type="wave", message=f"wave {name} {action}",
                 data={"wave": name, "action": action, "evidence": {"wave": {"wave": name, **evidence}}})


STORY = [wave("a", "start"), wave("a", "promoted"), wave("b", "start"),
         wave("b", "rolled-back", regions=["b"], rolledBack=["a", "b"])]
CLIENTS = [Sample(1.0, 5.0, 200, "v2", "/item/1", target="http://a"),
           Sample(1.0, 5.0, 500, "v2", "/item/1", target="http://b"),
           Sample(1.0, 5.0, 200, "v1", "/item/1", target="http://c")]


def outcome(**change: Any) -> list[str]:
    given: dict[str, Any] = {"record": record(), "events": STORY, "samples": CLIENTS, "region_of": TARGETS,
                             "served": {node: {"v1": 40} for node in node_ids()},
                             "confirmed": dict.fromkeys(node_ids(), 7)}
    return check(**{**given, **change})


def test_the_story_as_told_has_no_problem() -> None:
    assert outcome() == []


@pytest.mark.parametrize(("change", "says"), [
    ({"record": record(Phase.SUCCEEDED)}, "not RolledBack"),
    ({"events": STORY[2:]}, "wave a was not promoted"),
    ({"events": STORY[:3]}, "wave b did not fail"),
    ({"events": [*STORY[:3], wave("b", "rolled-back", regions=["a", "b"], rolledBack=["a", "b"])]},
     "not on its own region"),
    ({"events": [*STORY[:3], wave("b", "rolled-back", regions=["b"], rolledBack=["b"])]}, "not regions a and b"),
    ({"events": [*STORY, wave("c", "start")]}, "wave c started"),
    ({"samples": CLIENTS[:1]}, "no client saw v2 fail in region b"),
    ({"samples": [*CLIENTS, Sample(1.0, 5.0, 503, "v2", "/cart", target="http://c")]}, "v2 failed outside region b"),
    ({"confirmed": {**dict.fromkeys(node_ids(), 7), "demo-c2": 6}}, "demo-c2"),
    ({"served": {**{node: {"v1": 40} for node in node_ids()}, "demo-a1": {"v1": 30, "v2": 10}}},
     "Envoy demo-a1 (a) serves"),
])
def test_each_wrong_outcome_is_a_problem(change: dict[str, Any], says: str) -> None:
    problems = outcome(**change)
    assert any(says in p for p in problems), problems


def test_a_problem_fails_the_scenario_even_when_the_phase_is_right() -> None:
    load = LoadSummary(sent=0, by_version={}, by_status={}, failures=0, transport_errors=0, dropped=0)
    result = ScenarioResult(scenario="regions", phase=Phase.ROLLED_BACK, reason="", seconds=1.0, load=load)
    assert result.as_expected
    result.problems.append("Envoy demo-a1 (a) serves {'v2': 40} after the rollback, not v1 only")
    assert not result.as_expected


def test_without_a_sql_store_the_scenario_is_one_line_and_exit_2(tmp_path: Any) -> None:
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "rollwise", "demo", "--scenario", "regions", "--store", "memory://"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={**os.environ, "HOME": str(tmp_path)})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: --scenario regions needs a SQL --store (sqlite:///… or postgresql+psycopg://…)"]
