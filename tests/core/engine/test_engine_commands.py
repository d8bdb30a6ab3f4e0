"""Manual controls say who did what, and only do what they say (issue 11, item 6)."""

from __future__ import annotations

from typing import Any

import pytest

from rollwise.adapters.stores.memory import MemoryStore
from rollwise.core.clock import VirtualClock
from rollwise.core.engine import CommandError, RolloutEngine
from rollwise.core.model import Event, Phase, VersionStats, Window, WindowQuery
from rollwise.spec import load_spec_text
from support.specs import SHOP

HEAD = SHOP + """
"""

STEPS = HEAD + """
  canary:
    steps:
      - setWeight: 5
      - pause: {duration: 60s}
      - setWeight: 25
      - pause: {untilApproved: true}
      - setWeight: 50
      - pause: {duration: 2m}
"""

CAPPED = HEAD + """
  canary:
    analysis:
      judge: threshold
      interval: 10s
      minSamples: 50
      minStageTime: 20s
      maxStageTime: 2m
      onNoData: hold
      noDataLimit: 60s
      metrics:
        - {name: error-rate, type: errorRate, slo: "< 1%"}
    steps:
      - setWeight: 10
      - pause: {duration: 30s}
      - setWeight: 50
"""

BLUE_GREEN = HEAD + """
  blueGreen:
    previewDuration: 20s
    autoPromote: false
"""


class Trickle:
    """Too few requests to decide anything: every stage reaches its cap."""

    def collect(self, query: WindowQuery) -> Window:
        stats = VersionStats(requests=1, errors=0)
        return Window(query.start, query.end, stats, stats)


class Silent:
    """A backend that answers with nothing."""

    def collect(self, query: WindowQuery) -> Window:
        return Window(query.start, query.end, None, None)


def make(spec_text: str, metrics: Any = None) -> tuple[RolloutEngine, VirtualClock, MemoryStore]:
    clock = VirtualClock(1000.0)
    store = MemoryStore()
    engine = RolloutEngine(store=store, clock=clock, metrics=metrics)
    engine.start(load_spec_text(spec_text))
    return engine, clock, store


def run(engine: RolloutEngine, clock: VirtualClock, seconds: float, step: float = 5.0) -> Phase:
    phase = engine.tick("shop").phase
    for _ in range(int(seconds / step)):
        clock.advance(step)
        phase = engine.tick("shop").phase
    return phase


def steps(store: MemoryStore) -> list[Event]:
    return [e for e in store.events("shop") if e.type in ("step", "phase")]


def last_step(store: MemoryStore) -> Event:
    return [e for e in store.events("shop") if e.type == "step"][-1]


def test_approve_does_not_end_a_human_pause() -> None:
    engine, clock, store = make(STEPS)
    run(engine, clock, 5)
    engine.command("shop", "pause", actor="bob", reason="incident")
    with pytest.raises(CommandError, match="approve answers only an approval gate: use resume"):
        engine.command("shop", "approve", actor="alice")
    record = store.get("shop")
    assert record.phase == Phase.PAUSED and record.paused_reason == "paused by bob (incident)"
    assert [e.data["command"] for e in store.events("shop") if e.type == "command"] == ["pause"]
    run(engine, clock, 120)
    assert store.get("shop").phase == Phase.PAUSED  # still held: nothing approved it away


def test_approve_is_refused_when_nothing_waits_for_approval() -> None:
    engine, clock, store = make(STEPS)
    run(engine, clock, 5)  # inside the 60 s pause: not an approval gate
    with pytest.raises(CommandError, match="not waiting for approval"):
        engine.command("shop", "approve", actor="alice")
    run(engine, clock, 60)
    assert last_step(store).message == "step 1 done: pause elapsed" and last_step(store).actor == "engine"


def test_approval_gate_history_names_the_approver() -> None:
    engine, clock, store = make(STEPS)
    assert run(engine, clock, 80) == Phase.PAUSED
    assert store.get("shop").paused_reason == "step 3: waiting for approval"
    engine.command("shop", "approve", actor="alice", reason="dashboards green")
    engine.tick("shop")
    done = last_step(store)
    assert done.message == "step 3 done: approved by alice (dashboards green)" and done.actor == "alice"
    engine.tick("shop")
    assert last_step(store).actor == "engine"  # the next step is the engine's own


def test_a_promote_is_credited_to_the_person_not_to_the_timer_or_the_analysis() -> None:
    engine, clock, store = make(STEPS)
    run(engine, clock, 5)
    engine.command("shop", "promote", actor="alice", reason="looks good")
    engine.tick("shop")
    done = last_step(store)
    assert done.message == "step 1 done: promoted by alice (looks good)" and done.actor == "alice"
    engine.tick("shop")
    assert last_step(store).message == "weight 5% -> 25% (v2)" and last_step(store).actor == "engine"
    engine.command("shop", "promote", actor="carol")  # at the approval gate
    engine.tick("shop")
    assert last_step(store).message == "step 3 done: promoted by carol" and last_step(store).actor == "carol"
    messages = [e.message for e in steps(store)]
    assert not any("pause elapsed" in m or "approved" in m for m in messages), messages


def test_a_promote_through_an_analysis_step_is_credited_to_the_person() -> None:
    spec = CAPPED.replace("      - pause: {duration: 30s}\n", "      - analysis: {duration: 1m}\n")
    engine, clock, store = make(spec, metrics=Trickle())
    run(engine, clock, 20)
    engine.command("shop", "promote", actor="dan", reason="enough")  # the analysis cannot decide yet
    engine.tick("shop")
    assert last_step(store).message == "step 1 done: promoted by dan (enough)" and last_step(store).actor == "dan"
    assert not any("analysis passed" in e.message for e in steps(store))
    engine.tick("shop")
    assert store.get("shop").route.canary_weight == 10  # the judge holds the next weight step
    engine.command("shop", "promote", actor="dan")
    engine.tick("shop")
    moved = last_step(store)
    assert (moved.message, moved.actor) == ("weight 10% -> 50% (v2): promoted by dan", "dan")


def test_a_promote_of_the_last_step_names_the_person_in_the_final_phase() -> None:
    engine, clock, store = make(HEAD + "  canary:\n    steps:\n      - setWeight: 20\n      - pause: {duration: 1h}\n")
    run(engine, clock, 5)
    engine.command("shop", "promote", actor="erin", reason="ship it")
    engine.tick("shop")
    engine.tick("shop")
    final = store.events("shop")[-1]
    assert final.message == "Succeeded: all steps passed" and final.actor == "engine"  # the steps ran out
    assert last_step(store).message == "step 1 done: promoted by erin (ship it)" and last_step(store).actor == "erin"


def test_a_promote_before_a_pause_does_not_fire_after_resume() -> None:
    engine, clock, store = make(STEPS)
    run(engine, clock, 5)
    engine.command("shop", "promote", actor="alice")  # not yet acted on
    engine.command("shop", "pause", actor="bob", reason="incident")
    pause = [e for e in store.events("shop") if e.type == "command"][-1]
    assert "pending promote by alice dropped" in pause.message
    engine.command("shop", "resume", actor="bob")
    assert run(engine, clock, 30) == Phase.PROGRESSING
    assert store.get("shop").step_index == 1  # the 60 s pause still runs its course
    run(engine, clock, 40)
    done = next(e for e in store.events("shop") if e.type == "step" and e.data.get("step") == 1)
    assert done.message == "step 1 done: pause elapsed" and done.actor == "engine"


def test_an_approval_before_a_pause_does_not_fire_after_resume() -> None:
    engine, clock, store = make(STEPS)
    run(engine, clock, 70)
    assert store.get("shop").step_index == 3 and store.get("shop").phase == Phase.PROGRESSING
    engine.command("shop", "approve", actor="alice")  # early: the gate is the current step
    engine.command("shop", "pause", actor="bob", reason="incident")
    engine.command("shop", "resume", actor="bob")
    assert run(engine, clock, 20) == Phase.PAUSED
    assert store.get("shop").paused_reason == "step 3: waiting for approval"


def test_a_stage_cap_is_an_approval_gate_and_the_approver_is_named() -> None:
    engine, clock, store = make(CAPPED, metrics=Trickle())
    assert run(engine, clock, 200) == Phase.PAUSED
    assert "undecided" in (store.get("shop").paused_reason or "")
    engine.command("shop", "approve", actor="carol", reason="low traffic hour")
    engine.tick("shop")
    engine.tick("shop")
    moved = [e for e in store.events("shop") if e.type == "step"][-2:]
    assert [e.message for e in moved] == ["step 1 done: approved by carol (low traffic hour)",
                                         "weight 10% -> 50% (v2): approved by carol (low traffic hour)"]
    assert {e.actor for e in moved} == {"carol"}


def test_a_no_data_hold_is_not_an_approval_gate() -> None:
    engine, clock, store = make(CAPPED, metrics=Silent())
    assert run(engine, clock, 120) == Phase.PAUSED
    with pytest.raises(CommandError, match="resume to wait for metrics again"):
        engine.command("shop", "approve", actor="carol")


def test_blue_green_cutover_names_who_approved_or_promoted() -> None:
    engine, clock, store = make(BLUE_GREEN)
    run(engine, clock, 5)
    engine.command("shop", "pause", actor="bob", reason="incident")
    with pytest.raises(CommandError, match="approve answers only an approval gate"):
        engine.command("shop", "approve", actor="alice")
    engine.command("shop", "resume", actor="bob")
    assert run(engine, clock, 30) == Phase.PAUSED
    assert "waiting for approval to cut over" in (store.get("shop").paused_reason or "")
    engine.command("shop", "approve", actor="alice", reason="QA signed off")
    engine.tick("shop")
    cutover = last_step(store)
    assert cutover.message.startswith("cutover: 100% to v2 (approved by alice (QA signed off))")
    assert cutover.actor == "alice"

    engine, clock, store = make(BLUE_GREEN)
    run(engine, clock, 5)
    engine.command("shop", "promote", actor="erin")
    engine.tick("shop")
    assert last_step(store).message.startswith("cutover: 100% to v2 (promoted by erin)")
    assert last_step(store).actor == "erin"


def test_a_plain_promote_of_a_shadow_is_refused_not_silently_ignored() -> None:
    engine, clock, store = make(HEAD + "  shadow: {duration: 1m}\n")
    run(engine, clock, 5)
    with pytest.raises(CommandError, match="shadow run sends no user traffic"):
        engine.command("shop", "promote", actor="alice")
