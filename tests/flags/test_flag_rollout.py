"""A progressive flag rollout on the same engine as a traffic canary.

A simulated application evaluates the real flag file for each user, behaves according to the
variant it got, and pushes per-variant counters; the engine raises the flag's share step by step
and, on a regression, turns it off by itself with the same evidence as a traffic rollback.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from rollwise.adapters.metrics.pushed import PushedMetricSource
from rollwise.adapters.routers.flag import FlagRouter
from rollwise.adapters.stores.memory import MemoryStore
from rollwise.analysis.explain import explain_decision
from rollwise.core.clock import VirtualClock
from rollwise.core.engine import RolloutEngine
from rollwise.core.model import Phase
from rollwise.flags import FlagSet
from rollwise.spec import load_spec_text

FLAGS = {
    "flags": {
        "new-checkout": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
            "targeting": {"fractional": [["on", 0], ["off", 100]]},
        }
    }
}

SPEC = """
name: checkout-flag
service: checkout
versions:
  stable: {{name: "off"}}
  canary: {{name: "on"}}
traffic: {{router: flag, flag: new-checkout, flagsFile: "{flags}"}}
metrics: {{source: pushed}}
strategy:
  canary:
    analysis:
      interval: 5s
      minSamples: 100
      minStageTime: 20s
      metrics:
        - {{name: error-rate, type: errorRate, slo: "< 1%"}}
    steps:
      - setWeight: 5
      - pause: {{duration: 1m}}
      - setWeight: 10
      - pause: {{duration: 1m}}
      - setWeight: 25
      - pause: {{duration: 1m}}
      - setWeight: 50
      - pause: {{duration: 1m}}
      - setWeight: 100
"""


def run_flag_rollout(tmp_path: Path, on_error_rate: float, seed: int) -> tuple[MemoryStore, FlagRouter]:
    flags_file = tmp_path / "flags.json"
    flags_file.write_text(json.dumps(FLAGS))
    spec = load_spec_text(SPEC.format(flags=flags_file))
    clock = VirtualClock(1_800_000_000.0)
    store = MemoryStore()
    router = FlagRouter(flags_file, "new-checkout")
    engine = RolloutEngine(store=store, clock=clock, router=router, metrics=PushedMetricSource(store))
    engine.start(spec)
    rng = random.Random(seed)
    error_rate = {"on": on_error_rate, "off": 0.001}
    record = engine.tick(spec.name)
    for _ in range(3600):
        clock.advance(1.0)
        flag_set = router.repository.flag_set
        counts: dict[str, list[int]] = {"on": [0, 0], "off": [0, 0]}
        for _ in range(100):  # 100 requests per second from random users
            user = f"user-{rng.randrange(10_000)}"
            variant = flag_set.resolve("new-checkout", {"targetingKey": user}, False).variant or "off"
            counts[variant][0] += 1
            counts[variant][1] += rng.random() < error_rate[variant]
        for variant, (requests, errors) in counts.items():
            if requests:
                store.push_kpi(spec.name, variant, "requests", requests, clock.now() - 0.5)
                store.push_kpi(spec.name, variant, "errors", errors, clock.now() - 0.5)
        record = engine.tick(spec.name)
        if record.phase.terminal or record.phase == Phase.PAUSED:
            break
    return store, router


def share_on(flags_file: Path, users: int = 2000) -> float:
    flag_set = FlagSet.load(flags_file)
    hits = sum(flag_set.resolve("new-checkout", {"targetingKey": f"u{i}"}, False).value is True for i in range(users))
    return hits / users


def test_regression_turns_the_flag_off_by_itself(tmp_path: Path) -> None:
    store, router = run_flag_rollout(tmp_path, on_error_rate=0.05, seed=1)
    record = store.get("checkout-flag")
    assert record.phase == Phase.ROLLED_BACK
    assert share_on(tmp_path / "flags.json") == 0.0  # nobody gets the new variant any more
    changes = router.repository.changes("new-checkout")
    assert changes[-1].actor == "rollwise-engine" and "rolled back" in changes[-1].reason
    decision = [e for e in store.events("checkout-flag") if e.type == "decision"][-1]
    assert decision.data["action"] == "rollback" and decision.data["culprit"] == "error-rate"
    text = explain_decision(decision)
    assert "Culprit: error-rate" in text and "%" in text


def test_healthy_flag_climbs_to_everyone(tmp_path: Path) -> None:
    store, router = run_flag_rollout(tmp_path, on_error_rate=0.001, seed=2)
    assert store.get("checkout-flag").phase == Phase.SUCCEEDED
    percents = [c.details.get("percent") for c in router.repository.changes("new-checkout")]
    assert percents == [0, 5, 10, 25, 50, 100]
    assert share_on(tmp_path / "flags.json") == 1.0
