"""Same seeds, same verdicts: the judge's per-window verdict sequences against a recorded fixture.

Speed work on the sequential judge (memoised folds, closed-form bounds, vectorised sequences) must
not change a single decision. This replays seeded rollouts (the whole engine on a simulated hour,
and the judge driven window by window through four stages with a metrics outage) and compares
every verdict with the sequences recorded in ``data/verdict_sequences.json``. A deliberate change
of the statistics re-records them with ``ROLLWISE_RECORD_VERDICTS=1 pytest this_file`` and says so
in its commit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from rollwise.analysis.sequential import SequentialJudge
from rollwise.core.model import Action, RouteState, Window, WindowQuery
from rollwise.simulate import Behaviour, simulate
from rollwise.spec import load_spec_text
from support.analysis import analysis, context, world

FIXTURE = Path(__file__).parent / "data" / "verdict_sequences.json"

HOUR = """
name: hour
service: hour
versions:
  stable: {name: v1, address: 127.0.0.1:9001}
  canary: {name: v2, address: 127.0.0.1:9002}
strategy:
  canary:
    analysis:
      judge: sequential
      interval: 10s
      adaptive: false
      maxStageTime: 20m
      metrics:
        - {name: error-rate, type: errorRate, slo: "< 5%"}
        - {name: latency-p99, type: latency, slo: "< 500ms"}
    steps:
      - setWeight: 5
      - pause: {duration: 15m}
      - setWeight: 25
      - pause: {duration: 15m}
      - setWeight: 100
"""

CANARIES = {
    "ok": Behaviour(),
    "errors": Behaviour(error_rate=0.01),
    "slow": Behaviour(latency_p99_ms=140.0),
    "conversion": Behaviour(conversion=0.04),
}
SPECS: dict[str, list[dict[str, Any]]] = {
    "compare": [{"name": "errors", "type": "errorRate"}, {"name": "latency", "type": "latency"}],
    "minEffect": [{"name": "errors", "type": "errorRate", "minEffect": 0.01},
                  {"name": "latency", "type": "latency", "minEffect": 0.02}],
    "slo": [{"name": "errors", "type": "errorRate", "slo": "< 1%"},
            {"name": "latency", "type": "latency", "slo": "< 150ms"}],
    "kpi": [{"name": "errors", "type": "errorRate"},
            {"name": "conversion", "type": "kpi", "numerator": "checkout", "denominator": "visit"}],
}


def _staged(metrics: list[dict[str, Any]], canary: Behaviour, seed: int) -> list[str]:
    """Verdicts (action and rule) window by window through four stages, with a 30-s outage."""
    spec = analysis(metrics=metrics)
    sim = world(canary, seed=seed, outages=[(30.0, 60.0)])
    judge = SequentialJudge(spec)
    carry: dict[str, Any] = {}
    verdicts: list[str] = []
    t = 0
    for stage, weight in enumerate((5, 10, 25, 50)):
        sim.apply("t", RouteState(stable="v1", canary="v2", canary_weight=weight))
        windows: list[Window] = []
        start, stage_carry = t, dict(carry)
        for _ in range(240):
            windows.append(sim.collect(WindowQuery("t", "svc", "v1", "v2", t, t + 1)))
            t += 1
            verdict = judge.evaluate(context(spec, windows, stage_carry, stage=stage, weight=weight, start=start))
            verdicts.append(f"{verdict.action}:{verdict.rule}")
            if verdict.action == Action.ROLLBACK:
                return verdicts
            if verdict.action == Action.EXPAND and t - start >= spec.minStageTime:
                carry.update(verdict.evidence["carry"])
                break
    return verdicts


def _compress(verdicts: list[str]) -> list[list[Any]]:
    """Run-length encoding, so the fixture stays small and its diffs readable."""
    runs: list[list[Any]] = []
    for verdict in verdicts:
        if runs and runs[-1][0] == verdict:
            runs[-1][1] += 1
        else:
            runs.append([verdict, 1])
    return runs


def _replay() -> dict[str, Any]:
    out: dict[str, Any] = {}
    hour = load_spec_text(HOUR)
    for name in ("ok", "errors", "slow"):
        canary = Behaviour(error_rate=0.08) if name == "errors" else CANARIES[name]
        if name == "slow":
            canary = Behaviour(latency_p99_ms=900.0)
        result = simulate(hour, Behaviour(), canary, seed=1)
        out[f"hour/{name}"] = [result.phase, [[d["action"], d["evidence"].get("rule"), d["at_s"], d["reason"]]
                                              for d in result.decisions]]
    for spec_name, metrics in SPECS.items():
        for canary_name, canary in CANARIES.items():
            for seed in range(2):
                out[f"{spec_name}/{canary_name}/{seed}"] = _compress(_staged(metrics, canary, seed))
    return out


@pytest.mark.timeout(120)
def test_verdict_sequences_are_unchanged() -> None:
    replayed = json.loads(json.dumps(_replay()))
    if os.environ.get("ROLLWISE_RECORD_VERDICTS"):
        FIXTURE.write_text(json.dumps(replayed, indent=1, sort_keys=True) + "\n")
    recorded = json.loads(FIXTURE.read_text())
    changed = sorted(key for key in recorded if recorded[key] != replayed.get(key))
    assert not changed, f"verdicts changed for {changed}"
    assert set(recorded) == set(replayed)
