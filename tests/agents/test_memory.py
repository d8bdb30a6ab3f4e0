"""The memory lifecycle's order: which step each phase and route needs, and memory before the route."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rollwise.agents.memory import Marks, MemoryLifecycle, MemoryRouter, memory_step
from rollwise.core.model import Phase, RolloutRecord, RouteState
from rollwise.spec.models import RolloutSpec

SPEC = RolloutSpec.model_validate({
    "name": "agent", "service": "agent", "traffic": {"router": "file"},
    "versions": {"stable": {"name": "v1"}, "canary": {"name": "v2"}},
    "strategy": {"canary": {"steps": [{"setWeight": 20}]}},
    "memory": {"uri": "/tmp/m", "onPromote": "replay"},
})


def record(phase: Phase, run: int = 1) -> RolloutRecord:
    return RolloutRecord(name="agent", spec=SPEC, phase=phase, created_at=0, updated_at=0,
                         route=RouteState(stable="v1"), run=run)


@pytest.mark.parametrize(("phase", "route", "step"), [
    (Phase.PROGRESSING, RouteState(stable="v1"), None),
    (Phase.PROGRESSING, RouteState(stable="v1", canary="v2", canary_weight=20), "begin"),
    (Phase.PROGRESSING, RouteState(stable="v1", mirror_to="v2", mirror_percent=100), "begin"),
    (Phase.PAUSED, RouteState(stable="v1", canary="v2", canary_weight=100), "begin"),
    (Phase.SUCCEEDED, RouteState(stable="v1", canary="v2", canary_weight=100), "promote"),
    (Phase.ROLLED_BACK, RouteState(stable="v1"), "rollback"),
    (Phase.ABORTED, RouteState(stable="v1"), "rollback"),
])
def test_the_step_each_phase_and_route_needs(phase: Phase, route: RouteState, step: str | None) -> None:
    assert memory_step(record(phase), route) == step


class Calls:
    """Records the order of memory steps and route applications."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def apply(self, rollout: str, route: RouteState) -> None:
        self.seen.append(f"route {route.canary_weight:g}")


class FakeLifecycle(MemoryLifecycle):
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def begin(self, marks: Marks, release: str) -> bool:
        self.calls.seen.append(f"begin {marks.stable} {release}")
        return True

    def rollback(self, marks: Marks, release: str) -> bool:
        self.calls.seen.append(f"rollback {marks.restored} {release}")
        return True

    def promote(self, marks: Marks, release: str) -> bool:
        self.calls.seen.append(f"promote {marks.promoted} {release}")
        return True


def test_the_memory_is_in_step_before_the_route_is_applied() -> None:
    calls = Calls()
    phases = iter([Phase.PROGRESSING, Phase.ROLLED_BACK])

    def record_of(name: str) -> Any:
        return record(next(phases), run=3)

    router = MemoryRouter(calls, FakeLifecycle(calls), record_of)
    router.apply("agent", RouteState(stable="v1", canary="v2", canary_weight=20))
    router.apply("agent", RouteState(stable="v1", canary="v2", canary_weight=0))
    assert calls.seen == ["begin agent.run3.stable v2", "route 20", "rollback agent.run3.restored v1", "route 0"]


class Failing(FakeLifecycle):
    def rollback(self, marks: Marks, release: str) -> bool:
        raise OSError("disk full")


def test_a_failed_memory_step_leaves_the_route_unapplied() -> None:
    """The engine confirms a route only after ``apply`` returned, so a failed restore is retried."""
    calls = Calls()
    router = MemoryRouter(calls, Failing(calls), lambda name: record(Phase.ROLLED_BACK))
    with pytest.raises(OSError):
        router.apply("agent", RouteState(stable="v1"))
    assert calls.seen == []


def test_without_lancedb_the_memory_says_which_extra_to_install(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['lancedb'] = None; sys.argv = ['rollwise', 'memory', 'list', '--uri', "
            f"{str(tmp_path)!r}]; from rollwise.cli import main; main()")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: LanceDB memory needs the agents extra: pip install 'rollwise[agents]'"


def test_the_controller_keeps_one_engine_for_a_rollout_with_memory(tmp_path: Path) -> None:
    """The memory wrapper is built once per rollout, so the engine (and what it applied) survives ticks."""
    pytest.importorskip("lancedb")
    from rollwise.adapters.stores.memory import MemoryStore
    from rollwise.controller import Controller
    from rollwise.wiring import Runtime

    spec = SPEC.model_copy(update={"memory": SPEC.memory.model_copy(update={"uri": str(tmp_path)}),  # type: ignore[union-attr]
                                   "traffic": SPEC.traffic.model_copy(update={"path": str(tmp_path / "r.json")})})
    controller = Controller(MemoryStore(), Runtime(workdir=tmp_path, notifier=Calls()))  # type: ignore[arg-type]
    rollout = RolloutRecord(name="agent", spec=spec, created_at=0, updated_at=0, route=RouteState(stable="v1"))
    engine = controller.engine_for(rollout)
    assert isinstance(engine.router, MemoryRouter)
    assert controller.engine_for(rollout) is engine
