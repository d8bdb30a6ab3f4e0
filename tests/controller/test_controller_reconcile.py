"""The controller loop applies what commands decided, including for rollouts a command ended.

In-process and fast (memory store, file router, virtual clock); the same contract with real
processes and Envoy is ``test_command_matrix.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rollwise.controller import Controller
from rollwise.core.clock import VirtualClock
from rollwise.core.engine import RolloutEngine
from rollwise.core.memory_store import MemoryStore
from rollwise.core.model import Phase
from rollwise.spec.loader import load_spec_text
from rollwise.spec.models import VersionRef
from rollwise.wiring import Runtime

CANARY = """
name: shop
service: shop
versions:
  stable: {{name: v1, {stable}}}
  canary: {{name: v2, {canary}}}
traffic: {{router: file, path: "{path}"}}
strategy:
  canary:
    steps:
      - setWeight: 30
      - pause: {{duration: 1h}}
"""


class RecordingDeployer:
    def __init__(self) -> None:
        self.stopped: list[str] = []

    def ensure(self, rollout: str, version: VersionRef) -> str:
        return "127.0.0.1:9" if version.name == "v1" else "127.0.0.1:10"

    def stop(self, rollout: str, version: VersionRef) -> None:
        self.stopped.append(version.name)


def _setup(tmp_path: Path, processes: bool = False) -> tuple[Controller, RolloutEngine, VirtualClock, Path]:
    path = tmp_path / "route.json"
    versions = ('command: "serve v1"', 'command: "serve v2"') if processes else (
        'address: "127.0.0.1:9"', 'address: "127.0.0.1:10"')
    spec = load_spec_text(CANARY.format(stable=versions[0], canary=versions[1], path=path))
    clock = VirtualClock(1_000.0)
    store = MemoryStore()
    runtime = Runtime(workdir=tmp_path, store=store, deployer=RecordingDeployer() if processes else None)
    controller = Controller(store, runtime=runtime, clock=clock)
    people = RolloutEngine(store=store, clock=clock)  # what the CLI and the API run: no router
    people.start(spec, actor="alice")
    for _ in range(3):
        controller.tick_all()
    assert json.loads(path.read_text())["canary_weight"] == 30
    return controller, people, clock, path


def test_a_rollout_ended_by_a_command_gets_its_final_route_once(tmp_path: Path) -> None:
    controller, people, _, path = _setup(tmp_path)
    people.command("shop", "abort", actor="alice")
    assert json.loads(path.read_text())["canary_weight"] == 30  # a command only changes the store

    controller.tick_all()
    assert json.loads(path.read_text())["canary_weight"] == 0
    record = controller.store.get("shop")
    applied = controller.store.applied_route("shop")
    assert record.phase == Phase.ABORTED and applied is not None and applied.revision == record.route.revision
    assert controller.store.due(2_000.0) == []  # ended and applied: it costs the loop nothing more


def test_undo_after_a_full_promotion_moves_traffic_back(tmp_path: Path) -> None:
    controller, people, _, path = _setup(tmp_path)
    people.command("shop", "promote", actor="alice", full=True)
    controller.tick_all()
    assert json.loads(path.read_text())["canary_weight"] == 100
    people.command("shop", "undo", actor="alice")
    controller.tick_all()
    assert json.loads(path.read_text())["canary_weight"] == 0
    assert controller.store.get("shop").phase == Phase.ROLLED_BACK


def test_unrouted_versions_stop_when_the_rollback_window_closes(tmp_path: Path) -> None:
    controller, people, clock, _ = _setup(tmp_path, processes=True)
    people.command("shop", "abort", actor="alice")
    controller.tick_all()
    deployer = controller.runtime.deployer
    assert isinstance(deployer, RecordingDeployer) and deployer.stopped == ["v2"]
    assert controller.store.due(clock.now() + 1) == []

    controller, people, clock, _ = _setup(tmp_path / "succeeded", processes=True)
    people.command("shop", "promote", actor="alice", full=True)
    controller.tick_all()
    record = controller.store.get("shop")
    assert record.phase == Phase.SUCCEEDED and record.rollback_until is not None
    assert controller.store.due(clock.now()) == []
    clock.set(record.rollback_until)
    assert controller.store.due(clock.now()) == ["shop"]
    controller.tick_all()
    assert controller.store.get("shop").carry.get("retired") is True
    assert controller.store.due(clock.now() + 1) == []


@pytest.mark.timeout(1200)  # six CLI processes; generous for a loaded shared machine
def test_status_shows_the_route_the_data_plane_confirmed(tmp_path: Path) -> None:
    """The issue's case as a user runs it: abort a file-router canary at 30 % that a controller drives."""
    store = f"sqlite:///{tmp_path / 'r.db'}"
    route = tmp_path / "route.json"
    spec = tmp_path / "shop.yaml"
    spec.write_text(CANARY.format(stable='address: "127.0.0.1:9"', canary='address: "127.0.0.1:10"', path=route))

    def rollwise(*args: str) -> dict[str, object]:
        done = subprocess.run([sys.executable, "-m", "rollwise", *args, "--store", store], capture_output=True,
                              text=True, timeout=300, env={**os.environ, "HOME": str(tmp_path)})
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout) if "json" in args else {}

    rollwise("rollout", "start", str(spec), "--no-wait")
    rollwise("controller", "--once")
    assert json.loads(route.read_text())["canary_weight"] == 30
    rollwise("rollout", "abort", "shop")
    status = rollwise("rollout", "status", "shop", "--output", "json")
    assert status["phase"] == "Aborted" and status["canary_weight"] == 0
    assert status["route_applied_revision"] == status["route_revision"] - 1  # not on the data plane yet
    rollwise("controller", "--once")
    status = rollwise("rollout", "status", "shop", "--output", "json")
    assert status["route_applied_revision"] == status["route_revision"]
    assert json.loads(route.read_text())["canary_weight"] == 0
