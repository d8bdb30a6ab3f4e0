"""kill -9 a real ``rollwise controller`` at random moments; the rollouts must still run exactly right.

Each rollout's steps must appear once each and in order, pause timers must hold across restarts,
and the data plane (a FileRouter log) must see the weights in order with none skipped.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollwise.core.model import Phase
from rollwise.wiring import open_store
from support.pg import postgres_schema
from support.specs import STEPPED_WEIGHTS, stepped_file_spec

pytestmark = pytest.mark.slow  # ~2.5 min: a real controller killed 50+ times per backend

PAUSE_S = 0.6
WEIGHTS = STEPPED_WEIGHTS
MIN_KILLS = 50

def _rollwise(*args: str, store: str) -> list[str]:
    return [sys.executable, "-m", "rollwise", *args, "--store", store]


def _start(name: str, tmp: Path, store: str) -> None:
    spec_file = tmp / f"{name}.yaml"
    spec_file.write_text(stepped_file_spec(name, tmp / "routes" / f"{name}.json", PAUSE_S))
    subprocess.run(_rollwise("rollout", "start", str(spec_file), "--no-wait", "--output", "json", store=store),
                   check=True, capture_output=True, timeout=60)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'crash.db'}"
        return
    with postgres_schema(request.getfixturevalue("postgres_url")) as url:
        yield url


@pytest.mark.timeout(400)
def test_random_kill_9_never_skips_or_repeats_a_step(tmp_path: Path, store_url: str) -> None:
    rng = random.Random(20261126)
    names: list[str] = []
    kills = 0
    controllers: list[subprocess.Popen[bytes]] = []
    try:
        while kills < MIN_KILLS:
            store = open_store(store_url)
            active = store.list(active_only=True)
            while len(active) < 3:
                name = f"r{len(names)}"
                names.append(name)
                _start(name, tmp_path, store_url)
                active = store.list(active_only=True)
            # one --id across restarts: the restarted controller takes its leases back at once
            proc = subprocess.Popen(_rollwise("controller", "--poll", "0.02", "--id", "crash", store=store_url),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            controllers.append(proc)
            time.sleep(rng.uniform(0.5, 1.6))  # imports take ~0.5 s; then it is mid-rollout
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            kills += 1
        # a final controller that is left alone finishes everything
        final = subprocess.Popen(_rollwise("controller", "--poll", "0.02", "--max-seconds", "60", "--id", "crash",
                                          store=store_url),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        controllers.append(final)
        deadline = time.monotonic() + 60
        store = open_store(store_url)
        while time.monotonic() < deadline and store.list(active_only=True):
            time.sleep(0.2)
    finally:
        for proc in controllers:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    assert kills >= MIN_KILLS
    assert len(names) >= 3
    for name in names:
        record = store.get(name)
        assert record.phase == Phase.SUCCEEDED, (name, record.phase, record.paused_reason)
        steps = [e for e in store.events(name) if e.type == "step"]
        assert [e.data["step"] for e in steps] == list(range(2 * len(WEIGHTS) - 1)), name
        weights = [e.data["weight"] for e in steps if "weight" in e.data]
        assert weights == WEIGHTS, name
        # pause timers honoured across restarts: each weight change waited out the pause before it
        times = {e.data["step"]: e.at for e in steps}
        for index in range(2, 2 * len(WEIGHTS) - 1, 2):
            assert times[index] - times[index - 2] >= PAUSE_S - 1e-6, (name, index)
        log = (tmp_path / "routes" / f"{name}.json.log").read_text().splitlines()
        applied = [json.loads(line) for line in log]
        revisions = [a["revision"] for a in applied]
        assert revisions == sorted(revisions), name  # never an older state after a newer one
        seen_weights = [w for i, w in enumerate(a["canary_weight"] for a in applied)
                        if i == 0 or w != applied[i - 1]["canary_weight"]]
        assert seen_weights == [0, *WEIGHTS], (name, seen_weights)
