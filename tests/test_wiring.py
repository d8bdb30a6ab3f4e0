"""wiring.py: the simulated router and metric source a controller can run without any data plane."""

from __future__ import annotations

import time
from pathlib import Path

from rollwise.adapters.stores.sql import SqlStore
from rollwise.controller import Controller
from rollwise.core.clock import VirtualClock
from rollwise.core.engine import RolloutEngine
from rollwise.core.model import Phase
from rollwise.spec import load_spec_text
from rollwise.wiring import Runtime

SPEC = """
name: sim
service: sim
versions: {stable: {name: v1}, canary: {name: v2}}
traffic: {router: simulated}
metrics: {source: simulated}
strategy:
  canary:
    analysis:
      judge: threshold
      interval: 10s
      adaptive: false
      metrics: [{name: error-rate, type: errorRate, slo: "< 5%"}]
    steps: [{setWeight: 20}, {pause: {duration: 30s}}, {setWeight: 100}]
"""


def test_a_simulated_rollout_runs_to_the_end_in_a_controller(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'r.db'}")
    clock = VirtualClock(time.time())
    spec = load_spec_text(SPEC)
    RolloutEngine(store, clock).start(spec)
    runtime = Runtime(store=store, workdir=tmp_path)
    assert runtime.router_for(spec) is runtime.metrics_for(spec).source  # type: ignore[union-attr]
    controller = Controller(store, runtime=runtime, clock=clock)
    for _ in range(20):
        controller.tick_all()
        if store.get("sim").phase.terminal:
            break
        clock.advance(10)
    assert store.get("sim").phase == Phase.SUCCEEDED
    windows = [w for _, w in store.windows("sim")]
    assert windows and all(w.baseline is not None and w.baseline.requests > 0 for w in windows)
    assert any(w.canary is not None and w.canary.requests > 0 for w in windows)
