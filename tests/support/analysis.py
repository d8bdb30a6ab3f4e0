"""Helpers for the judge tests: seeded windows from the simulator and a stage driver."""

from __future__ import annotations

from typing import Any

from rollwise.core.model import Action, RouteState, StageContext, Verdict, Window, WindowQuery
from rollwise.core.protocols import Judge
from rollwise.simulate.world import Behaviour, SimulatedWorld, TrafficProfile
from rollwise.spec.models import AnalysisSpec

BASE = Behaviour(error_rate=0.001, latency_p50_ms=20.0, latency_p99_ms=100.0, conversion=0.05)


def analysis(**overrides: Any) -> AnalysisSpec:
    data: dict[str, Any] = {
        "interval": "1s", "alpha": 0.01, "minSamples": 100, "minStageTime": "10s",
        "metrics": [{"name": "errors", "type": "errorRate"}, {"name": "latency", "type": "latency"}],
    }
    data.update(overrides)
    return AnalysisSpec.model_validate(data)


def world(canary: Behaviour | None = None, seed: int = 0, rps: float = 200.0, **profile: Any) -> SimulatedWorld:
    return SimulatedWorld(BASE, canary or Behaviour(), TrafficProfile(rps=rps, **profile), seed=seed,
                          latency_slo_ms=100.0, t0=0.0)


def collect(sim: SimulatedWorld, weight: float, start: float, seconds: int, step: float = 1.0) -> list[Window]:
    sim.apply("t", RouteState(stable="v1", canary="v2", canary_weight=weight))
    return [sim.collect(WindowQuery("t", "svc", "v1", "v2", start + i * step, start + (i + 1) * step))
            for i in range(int(seconds / step))]


def context(spec: AnalysisSpec, windows: list[Window], carry: dict[str, Any] | None = None,
            stage: int = 0, weight: float = 5.0, start: float = 0.0, run: int = 1) -> StageContext:
    now = windows[-1].end if windows else start
    return StageContext(analysis=spec, stage_index=stage, canary_weight=weight, stage_started_at=start, now=now,
                        windows=tuple(windows), carry=carry or {}, run=run)


def drive_stage(judge: Judge, spec: AnalysisSpec, sim: SimulatedWorld, weight: float, seconds: int,
                carry: dict[str, Any] | None = None, start: float = 0.0, stage: int = 0) -> tuple[Verdict, float]:
    """Ask ``judge`` after every 1-s window until it decides (rollback, or expand past minStageTime)."""
    carry = carry or {}
    sim.apply("t", RouteState(stable="v1", canary="v2", canary_weight=weight))
    windows: list[Window] = []
    verdict = None
    for i in range(seconds):
        windows.append(sim.collect(WindowQuery("t", "svc", "v1", "v2", start + i, start + i + 1)))
        verdict = judge.evaluate(context(spec, windows, carry, stage=stage, weight=weight, start=start))
        if verdict.action == Action.ROLLBACK:
            return verdict, i + 1.0
        if verdict.action == Action.EXPAND and i + 1 >= spec.minStageTime:
            return verdict, i + 1.0
    assert verdict is not None
    return verdict, float(seconds)
