"""The canary strategy: walk the spec's steps, judging every stage that sends the canary traffic.

Each step type has one handler in ``STEP_HANDLERS``; a new step type is a spec field plus one
handler here. A handler gets the tick's ``StepTurn`` (the record so far, the stage's verdict and
whether the stage may end) and returns the record to commit, or None when nothing changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rollwise.core.carry import Hold
from rollwise.core.engine.change import Change, CommandError, evidence_of, if_changed
from rollwise.core.engine.gates import gate, new_stage
from rollwise.core.engine.observation import close_window, observe
from rollwise.core.engine.transitions import approval, credit, pause, promote_full
from rollwise.core.model import Action, RolloutRecord, Verdict
from rollwise.spec.models import AnalysisSpec, CanaryStep

if TYPE_CHECKING:
    from rollwise.core.engine.reconciler import RolloutEngine


@dataclass
class StepTurn:
    """One tick at one canary step: what the stage's judging left for the step's handler."""

    engine: RolloutEngine
    record: RolloutRecord
    change: Change
    now: float
    step: CanaryStep
    analysis: AnalysisSpec | None  # the canary's analysis, None when the rollout is not judged
    verdict: Verdict | None
    judged: bool  # the stage sends the canary traffic and has an analysis to judge it
    ready: bool  # the stage may end
    forced: bool  # a person promoted at this step

    @property
    def weight(self) -> float:
        return self.record.route.canary_weight

    @property
    def step_elapsed(self) -> float:
        return self.now - (self.record.step_started_at or self.now)

    def unchanged(self) -> RolloutRecord | None:
        return if_changed(self.record, self.change)


StepHandler = Callable[[StepTurn], "RolloutRecord | None"]


@dataclass
class StepsDone:
    """One tick after the last step: the stage's verdict and whether it may end (or a person promoted)."""

    engine: RolloutEngine
    record: RolloutRecord
    change: Change
    now: float
    verdict: Verdict | None
    judged: bool
    ready: bool
    forced: bool


DoneHandler = Callable[[StepsDone], "RolloutRecord | None"]
RegressionHandler = Callable[["RolloutEngine", RolloutRecord, Change, Verdict], RolloutRecord]


class Canary:
    kind = "canary"

    def advance(self, engine: RolloutEngine, record: RolloutRecord, change: Change,
                now: float) -> RolloutRecord | None:
        return walk_steps(engine, record, change, now, promote_when_done)


def walk_steps(engine: RolloutEngine, record: RolloutRecord, change: Change, now: float, done: DoneHandler,
               regressed: RegressionHandler | None = None) -> RolloutRecord | None:
    """Judge the stage and run the current step's handler; ``done`` decides once every step ran.

    ``regressed`` (region waves' ``onFailure: hold``) replaces the rollback a regression verdict
    would otherwise trigger.
    """
    canary = record.spec.strategy.canary
    assert canary is not None
    analysis = canary.analysis
    weight = record.route.canary_weight
    current, verdict = record, None
    step = canary.steps[record.step_index] if record.step_index < len(canary.steps) else None
    if step is not None and step.analysis is not None and analysis is None:
        raise CommandError("an analysis step needs strategy.canary.analysis to say how to judge")
    judged = analysis is not None and 0 < weight < 100
    if judged:
        assert analysis is not None
        current, verdict = observe(engine, current, analysis, change, now, weight)
        if regressed is not None and verdict is not None and verdict.action == Action.ROLLBACK:
            return regressed(engine, current, change, verdict)
    forced = current.carry.promoted_at(current.step_index)
    if forced:
        change.decided_by = credit(current.carry.promotion, "promoted")
    ready = True
    if judged and not forced:
        gate_record, ready = gate(engine, current, analysis, verdict, change, now, weight)
        if gate_record is not None:
            return gate_record
    if step is None:
        return done(StepsDone(engine, current, change, now, verdict, judged, ready, forced))
    turn = StepTurn(engine, current, change, now, step, analysis, verdict, judged, ready, forced)
    return STEP_HANDLERS[step.kind](turn)


def promote_when_done(turn: StepsDone) -> RolloutRecord | None:
    """Every step done: full promotion once the last stage may end."""
    if not turn.ready:
        return if_changed(turn.record, turn.change)
    how, actor = (turn.change.decided_by if turn.judged else None) or ("all steps passed", "engine")
    return promote_full(turn.engine, turn.record, turn.change, how, evidence=evidence_of(turn.verdict), actor=actor)


def _set_weight(turn: StepTurn) -> RolloutRecord | None:
    engine, current, change, now, weight = turn.engine, turn.record, turn.change, turn.now, turn.weight
    target = float(turn.step.setWeight or 0)
    if target > weight and not turn.ready:
        return turn.unchanged()
    if turn.analysis is not None and target != weight:
        current = close_window(engine, current, change, now)
    updated = engine.set_route(current, change, canary_weight=target)
    stage = new_stage(current, turn.verdict, now) if target != weight else {}
    updated = next_step(updated, now, **stage)
    # Unjudged, a weight step needs nobody's say-so: credit a person only for passing a gate.
    how, actor = (change.decided_by if turn.judged else None) or ("", "engine")
    change.events.append(engine.event(
        updated, "step", f"weight {weight:g}% -> {target:g}% ({current.spec.versions.canary.name})"
        + (f": {how}" if how else ""), actor=actor,
        step=current.step_index, kind="setWeight", weight=target, previous_weight=weight,
        evidence=evidence_of(turn.verdict),
    ))
    return updated


def _pause(turn: StepTurn) -> RolloutRecord | None:
    assert turn.step.pause is not None
    if turn.step.pause.untilApproved:
        return _approval_step(turn)
    duration = turn.step.pause.duration or 0.0
    analysis = turn.analysis
    adaptive_done = analysis is not None and analysis.ends_stages_early and turn.ready and turn.weight > 0
    if turn.forced or adaptive_done or (turn.step_elapsed >= duration and turn.ready):
        how = "evidence decided" if adaptive_done and turn.step_elapsed < duration else "pause elapsed"
        return step_done(turn, how)
    return turn.unchanged()


def _analysis(turn: StepTurn) -> RolloutRecord | None:
    assert turn.step.analysis is not None
    duration = turn.step.analysis.duration or 0.0
    least = min(duration, turn.analysis.minStageTime if turn.analysis else 0)
    if turn.forced or (turn.ready and turn.step_elapsed >= least):
        return step_done(turn, "analysis passed")
    return turn.unchanged()


def _set_mirror(turn: StepTurn) -> RolloutRecord | None:
    assert turn.step.setMirror is not None
    engine, current = turn.engine, turn.record
    percent = turn.step.setMirror.percent
    updated = engine.set_route(current, turn.change, mirror_to=current.canary_version if percent else None,
                               mirror_percent=percent)
    updated = next_step(updated, turn.now)
    turn.change.events.append(engine.event(updated, "step", f"mirror {percent:g}% to {current.canary_version}",
                                           step=current.step_index, kind="setMirror", mirror_percent=percent))
    return updated


def _set_header_route(turn: StepTurn) -> RolloutRecord | None:
    assert turn.step.setHeaderRoute is not None
    engine, current = turn.engine, turn.record
    updated = engine.set_route(current, turn.change, header_routes=[turn.step.setHeaderRoute])
    updated = next_step(updated, turn.now)
    turn.change.events.append(engine.event(updated, "step", f"header route {turn.step.setHeaderRoute.name!r} "
                                           f"-> {current.canary_version}", step=current.step_index,
                                           kind="setHeaderRoute"))
    return updated


STEP_HANDLERS: dict[str, StepHandler] = {
    "setWeight": _set_weight,
    "pause": _pause,
    "analysis": _analysis,
    "setMirror": _set_mirror,
    "setHeaderRoute": _set_header_route,
}


def _approval_step(turn: StepTurn) -> RolloutRecord | None:
    """A ``pause: {untilApproved: true}`` step: wait (paused) until a person approves or promotes."""
    record, change = turn.record, turn.change
    approved = approval(record, Hold.APPROVAL)
    if approved is not None and not turn.forced:
        change.decided_by = approved
    if turn.forced or approved is not None or record.approved_step == record.step_index:
        return step_done(turn, "approved")
    if record.paused_reason is None:
        return pause(turn.engine, record, change, f"step {record.step_index}: waiting for approval",
                     actor="engine", hold=Hold.APPROVAL)
    return turn.unchanged()


def next_step(record: RolloutRecord, now: float, **extra: Any) -> RolloutRecord:
    carry = extra.pop("carry", record.carry).but(promotion=None, hold=None)
    if carry.approval is not None and carry.approval.gate == Hold.APPROVAL:
        carry = carry.but(approval=None)  # a step's approval ends with the step; a stage cap's with the stage
    return record.model_copy(update={
        "step_index": record.step_index + 1, "step_started_at": now, "updated_at": now,
        "paused_reason": None, "carry": carry, **extra,
    })


def step_done(turn: StepTurn, how: str) -> RolloutRecord:
    """End a pause/analysis step; the event names the person when a promote or approval ended it."""
    how, actor = turn.change.decided_by or (how, "engine")
    updated = next_step(turn.record, turn.now)
    turn.change.events.append(turn.engine.event(updated, "step", f"step {turn.record.step_index} done: {how}",
                                                actor=actor, step=turn.record.step_index, kind="pause"))
    return updated
