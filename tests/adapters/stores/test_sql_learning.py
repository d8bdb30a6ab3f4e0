"""Past releases' effects in the SQL store (SQLite and PostgreSQL), and ``rollwise explain`` reading the prior."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from rollwise.adapters.stores.sql import SqlStore
from rollwise.adapters.stores.sql_learning import SqlReleaseHistory
from rollwise.core.releases import PastEffect
from rollwise.simulate import Behaviour, TrafficProfile, simulate
from rollwise.spec import load_spec_text

REPO = Path(__file__).resolve().parents[3]


def _effect(rollout: str, metric: str = "errors", kind: str = "errorRate", at: float = 1.0) -> PastEffect:
    return PastEffect(service="checkout", metric=metric, metric_type=kind, rollout=rollout, run=1, finished_at=at,
                      outcome="RolledBack", regression=True, ratio=19.9, ratio_low=3.2, ratio_high=120.0,
                      effect=0.019, effect_low=0.002, effect_high=0.05, canary_trials=300.0, canary_bad=6.0,
                      baseline_trials=5700.0, baseline_bad=5.0, prior_trials=30000.0, prior_bad=30.0)


def test_effects_are_kept_once_and_read_back_by_kind(store_url: str) -> None:
    with SqlStore(store_url) as store:
        history = SqlReleaseHistory(store)
        first = [_effect("a", at=1.0), _effect("a", "latency", "latency", at=1.0)]
        history.record_effects(first)
        history.record_effects(first)  # the engine may offer a rollout's end twice (retries)
        history.record_effects([_effect("b", at=2.0)])
        read = sorted(history.past_effects(["errorRate", "latency"]), key=lambda e: (e.finished_at, e.metric))
        assert read == sorted([*first, _effect("b", at=2.0)], key=lambda e: (e.finished_at, e.metric))
        assert [e.rollout for e in history.past_effects(["errorRate"])] == ["a", "b"]
        assert history.past_effects(["custom"]) == []


SPEC = """
name: {name}
service: checkout
versions:
  stable: {{name: v1, address: 127.0.0.1:9001}}
  canary: {{name: v2, address: 127.0.0.1:9002}}
strategy:
  canary:
    analysis:
      interval: 1s
      metrics:
        - {{name: errors, type: errorRate}}
    steps:
      - setWeight: 5
      - pause: {{duration: 10s}}
      - setWeight: 100
"""


def test_explain_prints_the_prior_learned_from_the_stores_history(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'rollwise.db'}"
    with SqlStore(url) as store:
        history = SqlReleaseHistory(store)
        for seed, name in enumerate(("past-1", "past-2", "new")):
            simulate(load_spec_text(SPEC.format(name=name)), Behaviour(error_rate=0.001),
                     Behaviour(error_rate=0.02), TrafficProfile(rps=200), seed=seed, max_duration_s=1800,
                     store=store, releases=history)
        assert len(history.past_effects(["errorRate"])) == 3
    out = subprocess.run([sys.executable, "-m", "rollwise", "explain", "new", "--store", url],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())  # the console wraps long lines
    assert "mixture prior: rate ratio ~" in text
    assert "learned from this service's past regressions: 2 own of 2 in all" in text
