from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rollwise.adapters.stores.memory import MemoryStore
from rollwise.core.clock import VirtualClock
from rollwise.core.engine import CommandError, RolloutEngine
from rollwise.core.model import Phase, RouteState, VersionStats, Window, WindowQuery
from rollwise.simulate import Behaviour, SimulatedWorld, TrafficProfile
from rollwise.spec import load_spec_text
from support.specs import SHOP

BASE = SHOP + """
  canary:
"""

PLAIN_STEPS = BASE + """
    steps:
      - setWeight: 5
      - pause: {duration: 60s}
      - setWeight: 25
      - pause: {untilApproved: true}
      - setWeight: 50
      - pause: {duration: 30s}
"""

ANALYSED = BASE + """
    analysis:
      judge: threshold
      interval: 10s
      minSamples: 50
      minStageTime: 20s
      maxStageTime: 5m
      failureLimit: 2
      onNoData: ON_NO_DATA
      noDataLimit: 60s
      metrics:
        - {name: error-rate, type: errorRate, slo: "< 1%"}
    steps:
      - setWeight: 10
      - pause: {duration: 30s}
      - setWeight: 50
      - pause: {duration: 30s}
"""


class RecordingRouter:
    def __init__(self) -> None:
        self.applied: list[RouteState] = []

    def apply(self, rollout: str, route: RouteState) -> None:
        self.applied.append(route)


def make(spec_text: str, metrics: Any = None) -> tuple[RolloutEngine, VirtualClock, RecordingRouter, MemoryStore]:
    clock = VirtualClock(1000.0)
    store = MemoryStore()
    router = RecordingRouter()
    engine = RolloutEngine(store=store, clock=clock, router=router, metrics=metrics)
    engine.start(load_spec_text(spec_text))
    return engine, clock, router, store


def run(engine: RolloutEngine, clock: VirtualClock, seconds: float, step: float = 5.0) -> Phase:
    phase = engine.tick("shop").phase
    for _ in range(int(seconds / step)):
        clock.advance(step)
        phase = engine.tick("shop").phase
    return phase


def step_weights(store: MemoryStore) -> list[float]:
    return [e.data["weight"] for e in store.events("shop") if e.type == "step" and "weight" in e.data]


def test_steps_pause_and_approval_gate() -> None:
    engine, clock, router, store = make(PLAIN_STEPS)
    assert run(engine, clock, 50) == Phase.PROGRESSING
    assert step_weights(store) == [5]  # the 60 s pause still holds
    assert run(engine, clock, 30) == Phase.PAUSED  # waiting for approval at 25 %
    record = store.get("shop")
    assert record.route.canary_weight == 25 and "approval" in (record.paused_reason or "")
    engine.command("shop", "approve", actor="alice", reason="checked dashboards")
    assert run(engine, clock, 60) == Phase.SUCCEEDED
    assert step_weights(store) == [5, 25, 50]
    final = store.get("shop").route
    assert final.canary_weight == 100 and router.applied[-1].canary_weight == 100
    approvals = [e for e in store.events("shop") if e.type == "command"]
    assert approvals[0].actor == "alice" and "checked dashboards" in approvals[0].message


def test_pause_timer_survives_a_new_engine() -> None:
    engine, clock, router, store = make(PLAIN_STEPS)
    run(engine, clock, 40)
    # the controller dies; a new one starts with the same store and the clock moved on 15 s
    clock.advance(15)
    fresh = RolloutEngine(store=store, clock=clock, router=router)
    assert fresh.tick("shop").step_index == 1  # still inside the 60 s pause (55 s elapsed)
    assert router.applied[-1].canary_weight == 5  # the new engine re-asserted the desired route
    clock.advance(10)
    fresh.tick("shop")  # the pause ends (one step per tick)
    assert fresh.tick("shop").route.canary_weight == 25
    assert step_weights(store) == [5, 25]


def test_manual_promote_abort_and_undo() -> None:
    engine, clock, router, store = make(PLAIN_STEPS)
    run(engine, clock, 5)
    engine.command("shop", "promote", actor="bob")  # skip the 60 s pause
    clock.advance(1)
    engine.tick("shop")
    clock.advance(1)
    assert engine.tick("shop").route.canary_weight == 25
    engine.command("shop", "abort", actor="bob", reason="bad smell")
    record = store.get("shop")
    assert record.phase == Phase.ABORTED and record.route.canary_weight == 0
    with pytest.raises(CommandError):
        engine.command("shop", "promote", actor="bob")


def test_promote_full_then_undo_within_window_only() -> None:
    engine, clock, router, store = make(PLAIN_STEPS)
    run(engine, clock, 5)
    engine.command("shop", "promote", actor="carol", full=True)
    record = store.get("shop")
    assert record.phase == Phase.SUCCEEDED and record.route.canary_weight == 100
    clock.advance(30)
    undone = engine.command("shop", "undo", actor="carol")
    assert undone.phase == Phase.ROLLED_BACK and undone.route.canary_weight == 0
    engine2, clock2, _, _ = make(PLAIN_STEPS)
    run(engine2, clock2, 5)
    engine2.command("shop", "promote", actor="carol", full=True)
    clock2.advance(3600)
    with pytest.raises(CommandError, match="rollback window"):
        engine2.command("shop", "undo", actor="carol")


def test_bad_canary_is_rolled_back_with_evidence() -> None:
    world = SimulatedWorld(Behaviour(error_rate=0.001), Behaviour(error_rate=0.08), TrafficProfile(rps=200), seed=3)
    clock = VirtualClock(0.0)
    store = MemoryStore()
    engine = RolloutEngine(store=store, clock=clock, router=world, metrics=world)
    engine.start(load_spec_text(ANALYSED.replace("ON_NO_DATA", "hold")))
    assert run(engine, clock, 300) == Phase.ROLLED_BACK
    record = store.get("shop")
    assert record.route.canary_weight == 0 and world.routes["shop"].canary_weight == 0
    rollback = [e for e in store.events("shop") if e.type == "decision" and e.data["action"] == "rollback"]
    assert rollback and rollback[-1].data["culprit"] == "error-rate"
    assert "error-rate" in rollback[-1].message and "%" in rollback[-1].message
    assert step_weights(store) == [10]


class Outage:
    """Metrics that never arrive."""

    def collect(self, query: WindowQuery) -> Window:
        raise ConnectionError("prometheus unreachable")


def test_no_data_holds_then_aborts_after_the_limit() -> None:
    engine, clock, router, store = make(ANALYSED.replace("ON_NO_DATA", "abort"), metrics=Outage())
    assert run(engine, clock, 50) == Phase.PROGRESSING  # unknown is not bad
    assert store.get("shop").route.canary_weight == 10
    assert run(engine, clock, 60) == Phase.ABORTED
    assert "no metrics" in store.events("shop")[-1].message


def test_no_data_with_hold_pauses_for_a_human_never_rolls_back() -> None:
    engine, clock, router, store = make(ANALYSED.replace("ON_NO_DATA", "hold"), metrics=Outage())
    assert run(engine, clock, 200) == Phase.PAUSED
    assert not [e for e in store.events("shop") if e.data.get("action") == "rollback"]


class Trickle:
    """Too few requests to ever reach minSamples: the stage cap must hold, never pass silently."""

    def collect(self, query: WindowQuery) -> Window:
        stats = VersionStats(requests=1, errors=0)
        return Window(query.start, query.end, stats, stats)


def test_stage_cap_holds_for_a_human() -> None:
    engine, clock, router, store = make(ANALYSED.replace("ON_NO_DATA", "hold"), metrics=Trickle())
    assert run(engine, clock, 400) == Phase.PAUSED
    record = store.get("shop")
    assert record.route.canary_weight == 10 and "undecided" in (record.paused_reason or "")
    engine.command("shop", "resume", actor="dave")
    assert store.get("shop").phase == Phase.PROGRESSING


def test_spec_update_keeps_identity() -> None:
    engine, clock, router, store = make(PLAIN_STEPS)
    run(engine, clock, 5)
    other = load_spec_text(PLAIN_STEPS.replace("name: v2", "name: v9"))
    with pytest.raises(CommandError):
        engine.update_spec("shop", other, actor="eve")
    assert store.get("shop").spec.versions.canary.name == "v2"
    longer = load_spec_text(PLAIN_STEPS.replace("duration: 60s", "duration: 10m"))
    engine.update_spec("shop", longer, actor="eve", reason="slower")
    assert run(engine, clock, 120) == Phase.PROGRESSING
    assert step_weights(store) == [5]


# ---------------------------------------------------------------- property: any interleaving


commands = st.sampled_from(["tick", "tick", "tick", "advance", "advance", "restart", "pause", "resume",
                            "approve", "promote"])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(commands, st.integers(min_value=1, max_value=90)), min_size=5, max_size=80))
def test_any_interleaving_applies_each_step_once_in_order(ops: list[tuple[str, int]]) -> None:
    clock = VirtualClock(0.0)
    store = MemoryStore()
    router = RecordingRouter()
    spec = load_spec_text(PLAIN_STEPS)
    RolloutEngine(store=store, clock=clock, router=router).start(spec)
    engine = RolloutEngine(store=store, clock=clock, router=router)
    for op, amount in ops:
        if op == "advance":
            clock.advance(amount)
        elif op == "restart":
            engine = RolloutEngine(store=store, clock=clock, router=router)
        elif op == "tick":
            engine.tick("shop")
        else:
            try:
                engine.command("shop", op, actor="prop")
            except CommandError:
                pass
    steps = [e.data["step"] for e in store.events("shop") if e.type == "step"]
    assert steps == list(range(len(steps))), steps  # no step skipped, none twice
    weights = step_weights(store)
    assert weights == [5, 25, 50][: len(weights)]
    seqs = [e.seq for e in store.events("shop")]
    assert seqs == list(range(1, len(seqs) + 1))
    record = store.get("shop")
    if record.phase == Phase.SUCCEEDED:
        assert record.route.canary_weight == 100
    if router.applied:
        assert router.applied[-1].revision <= record.route.revision


RUNS_SPEC = BASE + """
    analysis:
      interval: 1s
      minStageTime: 10s
      runs: 3
      restartBetweenRuns: RESTART
      metrics:
        - {name: errors, type: errorRate}
    steps:
      - setWeight: 5
      - setWeight: 20
"""


class CountingDeployer:
    """Hands out a new address at every start, like a process on a fresh port."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.starts = 0

    def ensure(self, rollout: str, version: Any) -> str:
        self.calls.append(("ensure", version.name))
        self.starts += 1
        return f"127.0.0.1:{9000 + self.starts}"

    def stop(self, rollout: str, version: Any) -> None:
        self.calls.append(("stop", version.name))


@pytest.mark.parametrize("restart", [True, False])
def test_repeated_runs_restart_the_canary_so_runs_are_independent(restart: bool) -> None:
    world = SimulatedWorld(Behaviour(), Behaviour(), TrafficProfile(rps=200), seed=4)
    clock, store, deployer = VirtualClock(0.0), MemoryStore(), CountingDeployer()
    engine = RolloutEngine(store=store, clock=clock, router=world, metrics=world, deployer=deployer)
    engine.start(load_spec_text(RUNS_SPEC.replace("RESTART", str(restart).lower())))
    assert run(engine, clock, 900, step=1.0) == Phase.SUCCEEDED
    run_events = [e for e in store.events("shop") if e.type == "run"]
    assert len(run_events) == 4  # runs 2 and 3 of both judged stages
    canary_stops = [c for c in deployer.calls if c == ("stop", "v2")]
    if restart:
        assert len(canary_stops) == 4
        assert all("freshly started v2" in e.message for e in run_events)
        addresses = [e.data["restarted"] for e in run_events]
        assert len(set(addresses)) == 4
        # the data plane was pointed at each new process
        seen = [r.upstreams.get("v2") for _, r in world.applied]
        assert all(address in seen for address in addresses)
    else:
        assert canary_stops == [] and all(e.data["restarted"] is None for e in run_events)


class FlakyRouter(RecordingRouter):
    """Refuses the first route with ``weight``, like a data plane that is briefly unreachable."""

    def __init__(self, weight: float) -> None:
        super().__init__()
        self.refuse_weight: float | None = weight

    def apply(self, rollout: str, route: RouteState) -> None:
        if route.canary_weight == self.refuse_weight:
            self.refuse_weight = None
            raise ConnectionError("data plane unreachable")
        super().apply(rollout, route)


def test_the_data_plane_follows_the_store_and_never_goes_back_after_a_refusal() -> None:
    clock, store = VirtualClock(1000.0), MemoryStore()
    RolloutEngine(store=store, clock=clock, router=RecordingRouter()).start(load_spec_text(PLAIN_STEPS))
    first = RolloutEngine(store=store, clock=clock, router=RecordingRouter())
    first.tick("shop")  # deployed, weight 0
    clock.advance(1)
    refusing = FlakyRouter(weight=5)
    engine = RolloutEngine(store=store, clock=clock, router=refusing)
    with pytest.raises(ConnectionError):
        engine.tick("shop")  # setWeight 5: committed as the desired route, refused by the data plane
    desired = store.get("shop").route
    assert desired.canary_weight == 5 and [r.canary_weight for r in refusing.applied] == [0]
    clock.advance(1)
    engine.tick("shop")  # the desired route is applied first, before anything else is decided
    assert refusing.applied[1].revision == desired.revision and refusing.applied[1].canary_weight == 5
    # a fresh controller (as after kill -9) re-applies the newest committed route, never an older one
    fresh_router = RecordingRouter()
    RolloutEngine(store=store, clock=clock, router=fresh_router).tick("shop")
    assert fresh_router.applied[0].revision == store.get("shop").route.revision >= desired.revision


class SaveLog(MemoryStore):
    """A memory store that remembers, per save, whether it was asked to be durable and what it carried."""

    def __init__(self) -> None:
        super().__init__()
        self.saves: list[tuple[bool, int, bool]] = []  # (durable, events, route moved)

    def save(self, record: Any, events: Any = (), windows: Any = (), durable: bool = True) -> Any:
        before = self.get(record.name).route.revision
        self.saves.append((durable, len(events), record.route.revision != before))
        return super().save(record, events, windows, durable)


def test_only_a_tick_that_took_a_window_and_nothing_else_may_skip_the_disk() -> None:
    store, clock = SaveLog(), VirtualClock(1000.0)
    world = SimulatedWorld(Behaviour(), Behaviour(), seed=3, t0=1000.0)
    engine = RolloutEngine(store, clock, router=world, metrics=world)
    engine.start(load_spec_text(BASE + """
    analysis: {judge: threshold, interval: 10s, adaptive: false, metrics: [{name: e, type: errorRate, slo: "< 5%"}]}
    steps: [{setWeight: 20}, {pause: {duration: 1h}}]
"""))
    for _ in range(12):
        engine.tick("shop")
        clock.advance(10)
    engine.command("shop", "pause", actor="ana")
    assert all(durable for durable, events, moved in store.saves if events or moved)  # steps, decisions, commands
    assert any(not durable for durable, _, _ in store.saves)  # windows alone
    assert all(events == 0 and not moved for durable, events, moved in store.saves if not durable)
    assert store.saves[-1][0]  # the person's pause
