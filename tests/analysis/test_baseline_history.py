"""The stable version's history as a prior: faster on a real regression, never less valid."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy.stats import binom

from rollwise.adapters.stores.memory import MemoryStore
from rollwise.analysis.attribution import AttributionState, SequentialErrorTest, WindowCounts
from rollwise.analysis.explain import explain_decision
from rollwise.analysis.sequential import PRIOR_CAP, SequentialJudge
from rollwise.core.clock import VirtualClock
from rollwise.core.engine import RolloutEngine
from rollwise.core.model import RouteState, VersionStats, Window, WindowQuery
from rollwise.simulate import Behaviour, SimulatedWorld, TrafficProfile
from rollwise.spec import load_spec_text
from support.analysis import BASE, analysis, collect, context, world
from support.specs import SHOP

RUNS = 300


def _history_carry(sim: SimulatedWorld, seconds: float = 600.0) -> dict[str, Any]:
    stats = sim.baseline_history(WindowQuery("t", "svc", "v1", "v2", -seconds, 0.0))
    assert stats is not None
    return {"history": {"start": -seconds, "end": 0.0, "baseline": stats.to_dict()}}


@pytest.mark.parametrize("prior_rate", [0.0002, 0.004, 0.05])
def test_any_prior_even_a_wrong_one_keeps_false_rejections_below_alpha(prior_rate: float) -> None:
    """The prior only moves the SPRT's alternative; under "no change" it stays a supermartingale."""
    alpha = 0.05
    test = SequentialErrorTest(alpha=alpha, min_effect=0.01)
    rng = np.random.default_rng(17)
    rejected = 0
    for _ in range(RUNS):
        state = AttributionState(test.grid.size).with_prior(120_000, 120_000 * prior_rate, PRIOR_CAP)
        for _ in range(400):
            nc = rng.binomial(200, 0.05)
            counts = WindowCounts(nc, 200 - nc, rng.binomial(nc, 0.004), rng.binomial(200 - nc, 0.004))
            state = test.update(state, counts)
            if test.e_value(state) >= 1 / alpha:
                rejected += 1
                break
    assert rejected <= binom.ppf(0.999, RUNS, alpha), rejected


def _bad_until_rejected(test: SequentialErrorTest, prior: tuple[float, float] | None, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    served = []
    for _ in range(200):
        state = AttributionState(test.grid.size)
        if prior is not None:
            state = state.with_prior(*prior, PRIOR_CAP)
        for _ in range(300):
            nc = rng.binomial(200, 0.05)
            counts = WindowCounts(nc, 200 - nc, rng.binomial(nc, 0.02), rng.binomial(200 - nc, 0.001))
            state = test.update(state, counts)
            if test.outcome(state).rejected:
                break
        served.append(state.canary_bad)
    return served


def test_the_stable_versions_history_finds_errors_0_1_to_2_percent_with_fewer_bad_requests() -> None:
    test = SequentialErrorTest(alpha=0.01, min_effect=0.019)
    without = _bad_until_rejected(test, None, seed=4)
    with_history = _bad_until_rejected(test, (120_000, 120), seed=4)
    assert np.mean(with_history) < np.mean(without) - 0.2
    # Wald's bound for this test is 2.03 bad requests; 1.5x of it is 3.
    assert np.median(with_history) <= 3


def test_the_prior_is_capped_so_the_baseline_now_soon_outweighs_an_old_rate() -> None:
    state = AttributionState(10).with_prior(1_000_000, 10_000, cap=30_000)
    assert state.prior_trials == 30_000 and state.prior_bad == pytest.approx(300)
    assert SequentialErrorTest.baseline_rate(state) == pytest.approx(300.5 / 30_050)
    again = AttributionState.from_dict(state.to_dict(), 10)
    assert (again.prior_trials, again.prior_bad) == (state.prior_trials, state.prior_bad)


def test_the_judge_freezes_the_latency_bar_on_history_and_tests_from_the_first_window() -> None:
    spec = analysis()
    sim = world(Behaviour(latency_p99_ms=160.0), seed=2)
    carry = _history_carry(sim)
    windows = collect(sim, 5.0, 0.0, 1)
    verdict = SequentialJudge(spec).evaluate(context(spec, windows, carry))
    latency = next(m for m in verdict.metrics if m.metric == "latency")
    assert latency.params.thresholdMs == 100.0 and latency.params.frozenInStage is False
    assert latency.canary.trials == windows[0].canary.requests  # the first window is already tested
    errors = next(m for m in verdict.metrics if m.metric == "errors")
    history = VersionStats.from_dict(carry["history"]["baseline"])
    assert errors.baseline.priorTrials == min(PRIOR_CAP, history.requests)
    # Without history the first windows only choose the bar.
    bare = SequentialJudge(spec).evaluate(context(spec, windows, {}))
    latency_bare = next(m for m in bare.metrics if m.metric == "latency")
    assert latency_bare.params.thresholdMs is None


def test_history_does_not_change_the_simulated_windows() -> None:
    one, two = world(seed=9), world(seed=9)
    two.baseline_history(WindowQuery("t", "svc", "v1", "v2", -600.0, 0.0))
    assert [w.to_dict() for w in collect(one, 5.0, 0.0, 5)] == [w.to_dict() for w in collect(two, 5.0, 0.0, 5)]
    outage = SimulatedWorld(BASE, Behaviour(), TrafficProfile(rps=200.0, outages=[(-100.0, 10.0)]), seed=1)
    assert outage.baseline_history(WindowQuery("t", "svc", "v1", "v2", -600.0, 0.0)) is None


SPEC = SHOP + """
  canary:
    analysis:
      interval: 1s
      minStageTime: 10s
      baselineHistory: HISTORY
      metrics:
        - {name: errors, type: errorRate, minEffect: 1.9%}
    steps:
      - setWeight: 5
      - pause: {duration: 60s}
"""


class CountingWorld(SimulatedWorld):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.history_queries: list[WindowQuery] = []

    def baseline_history(self, query: WindowQuery) -> VersionStats | None:
        self.history_queries.append(query)
        return super().baseline_history(query)


class NoHistory:
    def __init__(self, sim: SimulatedWorld) -> None:
        self.sim = sim

    def collect(self, query: WindowQuery) -> Window:
        return self.sim.collect(query)


def _engine(history: str, source: Any = None) -> tuple[RolloutEngine, VirtualClock, MemoryStore, CountingWorld]:
    sim = CountingWorld(BASE, Behaviour(error_rate=0.02), TrafficProfile(rps=200.0), seed=5, t0=1000.0)
    clock, store = VirtualClock(1000.0), MemoryStore()

    class Router:
        def apply(self, rollout: str, route: RouteState) -> None:
            sim.apply(rollout, route)

    engine = RolloutEngine(store=store, clock=clock, router=Router(), metrics=source(sim) if source else sim)
    engine.start(load_spec_text(SPEC.replace("HISTORY", history)))
    return engine, clock, store, sim


def test_the_engine_reads_the_history_once_and_keeps_it_with_the_rollout() -> None:
    engine, clock, store, sim = _engine("10m")
    for _ in range(40):
        clock.advance(1.0)
        if engine.tick("shop").phase.terminal:
            break
    record = store.get("shop")
    assert len(sim.history_queries) == 1
    query = sim.history_queries[0]
    assert (query.start, query.end) == (record.created_at - 600.0, record.created_at)
    assert record.carry.history is not None and record.carry.history.baseline is not None
    assert record.carry.history.baseline["requests"] > 100_000
    decision = next(e for e in store.events("shop") if e.type == "decision" and e.data["action"] == "rollback")
    errors = next(m for m in decision.data["evidence"]["metrics"] if m["metric"] == "errors")
    assert errors["baseline"]["priorTrials"] == PRIOR_CAP
    text = explain_decision(decision)
    assert "baseline rate prior" in text and "30000" in text.replace(",", "").replace(" ", "")


@pytest.mark.parametrize("history, source", [("0s", None), ("10m", NoHistory)])
def test_no_history_when_switched_off_or_the_source_cannot_say(history: str, source: Any) -> None:
    engine, clock, store, sim = _engine(history, source)
    for _ in range(5):
        clock.advance(1.0)
        engine.tick("shop")
    assert sim.history_queries == [] and store.get("shop").carry.history is None


def test_a_decision_with_a_prior_recomputes_offline_from_its_evidence_and_windows() -> None:
    spec = analysis(metrics=[{"name": "errors", "type": "errorRate", "minEffect": "1.9%"}])
    sim = world(Behaviour(error_rate=0.02), seed=6)
    carry = _history_carry(sim)
    windows = collect(sim, 5.0, 0.0, 8)
    verdict = SequentialJudge(spec).evaluate(context(spec, windows, carry))
    errors = verdict.metrics[0]
    test = SequentialErrorTest(alpha=errors.params.alpha, min_effect=errors.params.minEffect)
    state = AttributionState(test.grid.size).with_prior(
        errors.baseline.priorTrials, errors.baseline.priorBad, cap=errors.baseline.priorTrials)
    for w in windows:
        assert w.canary is not None and w.baseline is not None
        state = test.update(state, WindowCounts(w.canary.requests, w.baseline.requests, w.canary.errors,
                                                w.baseline.errors))
    assert test.e_value(state) == pytest.approx(errors.statistic, rel=1e-9)
    # and the prior mattered: without it the same windows give another e-value
    bare = AttributionState(test.grid.size)
    for w in windows:
        assert w.canary is not None and w.baseline is not None
        bare = test.update(bare, WindowCounts(w.canary.requests, w.baseline.requests, w.canary.errors,
                                              w.baseline.errors))
    assert test.e_value(bare) != pytest.approx(errors.statistic, rel=1e-3)
