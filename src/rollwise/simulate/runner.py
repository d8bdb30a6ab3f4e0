"""Run a whole rollout on simulated traffic and a virtual clock, with the real engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rollwise.analysis import judge_for
from rollwise.core.clock import VirtualClock
from rollwise.core.engine import JudgeFactory, RolloutEngine
from rollwise.core.memory_store import MemoryStore
from rollwise.core.model import Phase, RolloutRecord
from rollwise.core.protocols import ReleaseHistory, Store
from rollwise.simulate.world import Behaviour, SimulatedWorld, TrafficProfile
from rollwise.spec.models import RolloutSpec

T0 = 1_700_000_000.0  # a fixed epoch so simulated events carry plausible timestamps


@dataclass
class SimulationResult:
    name: str
    phase: str
    duration_s: float
    canary_requests: int
    canary_bad_requests: int
    steps: list[dict[str, float]]
    decisions: list[dict[str, Any]]
    shadow_mismatches: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    waves: list[dict[str, Any]] | None = None  # region waves: one row each (``core/waves.py``)
    started_at: float = T0

    def to_dict(self, with_events: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "phase": self.phase,
            "duration_s": round(self.duration_s, 3),
            "canary_requests": self.canary_requests,
            "canary_bad_requests": self.canary_bad_requests,
            "steps": self.steps,
            "decisions": self.decisions,
        }
        if self.shadow_mismatches:
            data["shadow_mismatches"] = self.shadow_mismatches
        if self.waves is not None:
            data["waves"] = self.waves
        if with_events:
            data["events"] = self.events
        return data


def latency_slo_of(spec: RolloutSpec) -> float | None:
    analysis = spec.analysis()
    if analysis is None:
        return None
    for metric in analysis.metrics:
        if metric.type == "latency" and metric.slo is not None:
            return metric.slo.value
    return None


def regions_of(spec: RolloutSpec) -> dict[str, float] | None:
    """Every region a spec's waves name, with equal traffic; None when it has no waves."""
    canary = spec.strategy.canary
    if canary is None or not canary.waves:
        return None
    return {region: 1.0 for wave in canary.waves for region in wave.regions}


def simulate(
    spec: RolloutSpec,
    baseline: Behaviour | None = None,
    canary: Behaviour | None = None,
    profile: TrafficProfile | None = None,
    seed: int = 0,
    max_duration_s: float = 24 * 3600.0,
    tick_s: float | None = None,
    store: Store | None = None,
    judges: JudgeFactory = judge_for,
    releases: ReleaseHistory | None = None,
    regions: dict[str, float] | None = None,
    canary_in: dict[str, Behaviour] | None = None,
    t0: float = T0,
) -> SimulationResult:
    """Drive ``spec`` to an end (or ``max_duration_s``) and report what happened, in simulated time.

    A spec with region waves runs on a fleet of its waves' regions (equal traffic unless ``regions``
    says otherwise); ``canary_in`` gives the canary another behaviour in some regions.
    """
    clock = VirtualClock(t0)
    world = SimulatedWorld(
        baseline or Behaviour(), canary or Behaviour(), profile, seed=seed,
        latency_slo_ms=latency_slo_of(spec), t0=t0, regions=regions or regions_of(spec), canary_in=canary_in,
    )
    store = store or MemoryStore()
    engine = RolloutEngine(store=store, clock=clock, judges=judges, router=world, metrics=world,
                           releases=releases)
    analysis = spec.analysis()
    step = tick_s or (min(analysis.interval, 10.0) if analysis is not None else 1.0)
    engine.start(spec)
    record = engine.tick(spec.name)
    while not record.phase.terminal and record.phase != Phase.PAUSED:
        if clock.now() - t0 >= max_duration_s:
            break
        clock.advance(step)
        record = engine.tick(spec.name)
    events = store.events(spec.name)
    steps = [
        {"at_s": round(e.at - t0, 3), "weight": float(e.data["weight"])}
        for e in events
        if e.type == "step" and "weight" in e.data
    ]
    decisions = [
        {"at_s": round(e.at - t0, 3), "action": e.data.get("action"), "reason": e.message,
         "evidence": e.data.get("evidence", {})}
        for e in events
        if e.type == "decision"
    ]
    return SimulationResult(
        name=spec.name,
        phase=str(record.phase),
        duration_s=clock.now() - t0,
        canary_requests=world.truth.canary_requests,
        canary_bad_requests=world.truth.canary_bad_requests,
        steps=steps,
        decisions=decisions,
        shadow_mismatches=world.truth.shadow_mismatches,
        events=[e.model_dump(mode="json") for e in events],
        waves=waves_of(record),
        started_at=t0,
    )


def waves_of(record: RolloutRecord) -> list[dict[str, Any]] | None:
    from rollwise.core.waves import wave_rows

    rows = wave_rows(record)
    return None if rows is None else [row.model_dump(mode="json") for row in rows]
