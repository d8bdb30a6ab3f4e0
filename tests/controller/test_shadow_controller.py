"""A shadow rollout through the production path — spec, controller, Runtime wiring — not the demo.

The Runtime must put a response comparator behind Envoy's mirror by itself, feed its counters to
the judge, and stop it when the mirror ends; users must only ever see the primary.
"""

from __future__ import annotations

import shlex
import sys
import threading
from pathlib import Path

import httpx
import pytest

from rollwise.adapters.shadow.comparator import ShadowComparison
from rollwise.adapters.stores.memory import MemoryStore
from rollwise.controller import Controller
from rollwise.core.model import Phase
from rollwise.demo.load import LoadGenerator
from rollwise.local_processes import free_port
from rollwise.spec import load_spec_text
from rollwise.wiring import Runtime

pytestmark = [pytest.mark.envoy, pytest.mark.timeout(180)]


def _spec(listen: str) -> str:
    service = f"{shlex.quote(sys.executable)} -m rollwise.demo.service --port {{port}} --latency-ms 2"
    return f"""
name: search-shadow
service: search
versions:
  stable: {{name: v1, command: "{service} --version v1"}}
  canary: {{name: v3, command: "{service} --version v3 --mismatch-rate 0.3"}}
traffic: {{router: envoy, listen: "{listen}"}}
metrics: {{source: envoy}}
strategy:
  shadow:
    percent: 100
    duration: 6s
    compare: [status, body]
    maxMismatchRate: 2%
"""


def test_runtime_compares_shadow_responses_and_users_only_see_primary(tmp_path: Path) -> None:
    listen = f"127.0.0.1:{free_port()}"
    spec = load_spec_text(_spec(listen))
    store = MemoryStore()
    runtime = Runtime(workdir=tmp_path, store=store)
    controller = Controller(store, runtime=runtime)
    load = LoadGenerator(f"http://{listen}", rate=80, duration_s=40, paths=[f"/item/{i}" for i in range(50)])
    try:
        from rollwise.core.clock import SystemClock
        from rollwise.core.engine import RolloutEngine

        RolloutEngine(store=store, clock=SystemClock()).start(spec)
        controller.tick_all()  # deploys v1 and v3 and routes users to v1
        load.start()
        done = threading.Event()

        def drive() -> None:
            controller.run([spec.name], poll_s=0.2, max_seconds=60)
            done.set()

        threading.Thread(target=drive, daemon=True).start()
        assert done.wait(90)
        record = store.get(spec.name)
        comparison = runtime.routers[f"shadow:{spec.name}:envoy:{listen}"]
        assert isinstance(comparison, ShadowComparison)
        assert comparison._running == {}  # the comparator stopped with the mirror
    finally:
        if load.running:
            load.stop()
        summary = load.wait()
        runtime.close()
    assert record.phase == Phase.ROLLED_BACK, [e.message for e in store.events(spec.name)]
    decision = [e for e in store.events(spec.name) if e.type == "decision"][-1]
    assert decision.data["culprit"] == "shadow-mismatch"
    mismatch = decision.data["evidence"]["metrics"][0]
    assert mismatch["canary"]["compared"] > 100 and mismatch["canary"]["mismatches"] > 0.1 * mismatch["canary"][
        "compared"]
    assert set(summary.by_version) == {"v1"} and summary.failures == 0  # nobody saw v3
    with pytest.raises(httpx.HTTPError):  # and every process the runtime started is gone
        httpx.get(f"http://{listen}/", timeout=1)
