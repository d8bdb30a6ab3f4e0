"""The engine learns across releases: a finished rollout's effects are kept, the next one begins with priors."""

from __future__ import annotations

from rollwise.analysis.explain import explain_decision
from rollwise.core.memory_store import MemoryReleaseHistory, MemoryStore
from rollwise.core.model import Event
from rollwise.simulate import Behaviour, TrafficProfile, simulate
from rollwise.spec import load_spec_text

SPEC = """
name: {name}
service: {service}
versions:
  stable: {{name: v1, address: 127.0.0.1:9001}}
  canary: {{name: v2, address: 127.0.0.1:9002}}
strategy:
  canary:
    analysis:
      interval: 1s
      minStageTime: 10s
      metrics:
        - {{name: errors, type: errorRate}}
        - {{name: latency, type: latency, quantile: 0.99}}
    steps:
      - setWeight: 5
      - pause: {{duration: 10s}}
      - setWeight: 100
"""
BASE = Behaviour(error_rate=0.001)
BAD = Behaviour(error_rate=0.02)


def _run(name: str, canary: Behaviour, releases: MemoryReleaseHistory, seed: int, store: MemoryStore | None = None,
         service: str = "checkout") -> None:
    spec = load_spec_text(SPEC.format(name=name, service=service))
    simulate(spec, BASE, canary, TrafficProfile(rps=200), seed=seed, max_duration_s=1800, releases=releases,
             store=store)


def test_a_rolled_back_release_is_kept_as_a_regression_of_its_culprit() -> None:
    releases = MemoryReleaseHistory()
    _run("past-1", BAD, releases, seed=1)
    by_metric = {e.metric: e for e in releases.effects}
    assert set(by_metric) == {"errors", "latency"}
    errors = by_metric["errors"]
    assert errors.outcome == "RolledBack" and errors.regression and errors.ratio > 2.0
    assert errors.service == "checkout" and errors.metric_type == "errorRate" and errors.canary_bad > 0
    assert not by_metric["latency"].regression
    _run("past-1", BAD, releases, seed=1)  # the same rollout offered again is kept once
    assert len(releases.effects) == 2


def test_a_healthy_release_teaches_no_regression() -> None:
    releases = MemoryReleaseHistory()
    _run("fine", Behaviour(error_rate=0.001), releases, seed=2)
    assert releases.effects and not any(e.regression for e in releases.effects)


def test_the_next_rollout_begins_with_a_prior_that_explain_shows() -> None:
    releases = MemoryReleaseHistory()
    for seed in range(3):
        _run(f"past-{seed}", BAD, releases, seed=10 + seed)
    store = MemoryStore()
    _run("new", BAD, releases, seed=99, store=store)
    events = store.events("new")
    priors = [e for e in events if e.type == "priors"]
    assert len(priors) == 1 and "errors" in priors[0].data["priors"]
    assert "3 own" in priors[0].message
    record = store.get("new")
    assert record.carry.priors is not None and set(record.carry.priors.metrics) == {"errors"}
    rollback = [e for e in events if e.type == "decision" and e.data.get("action") == "rollback"][-1]
    text = explain_decision(rollback)
    assert "mixture prior: rate ratio ~" in text and "this service's past regressions" in text
    assert "3 own of 3 in all" in text


def test_another_service_gets_everyones_prior() -> None:
    releases = MemoryReleaseHistory()
    for seed in range(2):
        _run(f"past-{seed}", BAD, releases, seed=20 + seed)
    store = MemoryStore()
    _run("search-new", BAD, releases, seed=5, store=store, service="search")
    rollback = [e for e in store.events("search-new") if e.type == "decision"][-1]
    assert "all services' past regressions (none of this service's yet)" in explain_decision(rollback)


def test_without_a_history_the_evidence_has_no_prior() -> None:
    store = MemoryStore()
    _run("plain", BAD, MemoryReleaseHistory(), seed=3, store=store)
    events: list[Event] = store.events("plain")
    assert not [e for e in events if e.type == "priors"]
    rollback = [e for e in events if e.type == "decision"][-1]
    assert "mixture prior" not in explain_decision(rollback)
