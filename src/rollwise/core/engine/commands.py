"""A person's controls: promote [--full], pause, resume, abort, approve, undo, and their refusals.

Commands only change the store. A promote or approval is recorded as a pending decision that the
next tick acts on where it was given; the runner owning the data plane applies any route change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rollwise.core.carry import APPROVAL_GATES, Approval, Carry, Hold, Promotion
from rollwise.core.engine.change import Change, CommandError
from rollwise.core.engine.transitions import all_stable, finish, pause, promote_full
from rollwise.core.model import Phase, RolloutRecord

if TYPE_CHECKING:
    from rollwise.core.engine.reconciler import RolloutEngine

COMMANDS = ("promote", "pause", "resume", "abort", "approve", "undo")


def apply(engine: RolloutEngine, record: RolloutRecord, command: str, actor: str, reason: str, full: bool,
          change: Change) -> RolloutRecord:
    """``record`` after ``command``, with the command's event in ``change``; ``CommandError`` if it does not apply."""
    now = engine.clock.now()
    why = f" ({reason})" if reason else ""
    if command == "undo":
        return _undo(engine, record, actor, reason, change)
    if record.phase.terminal:
        raise CommandError(f"rollout {record.name} has ended ({record.phase})")
    gate = refuse_unless_approvable(record) if command == "approve" else None
    if command == "promote" and record.spec.strategy.kind == "shadow":
        raise CommandError("a shadow run sends no user traffic; start a canary to release it "
                           "(or approve a shadow holding for a human)")
    if command == "pause" and record.phase == Phase.PAUSED:
        raise CommandError(f"{record.name} is already paused")
    if command == "resume" and record.phase != Phase.PAUSED:
        raise CommandError(f"{record.name} is not paused")
    carry = record.carry
    dropped = ""
    if command in ("pause", "resume"):
        # A promote or approval given before a pause is not carried past it: after an incident
        # nobody expects an old decision to fire the moment the rollout resumes.
        carry, dropped = _drop_pending(record)
    event = engine.event(record, "command", f"{command}{' --full' if full else ''} by {actor}{why}{dropped}",
                         actor=actor, command=command, reason=reason, full=full)
    change.events.append(event)
    if command == "abort":
        return finish(engine, record, change, Phase.ABORTED, f"aborted by {actor}{why}", actor=actor)
    if command == "pause":
        return pause(engine, record, change, f"paused by {actor}{why}", actor=actor, carry=carry)
    if command == "resume":
        return record.model_copy(update={"phase": Phase.PROGRESSING, "paused_reason": None, "approved_step": None,
                                         "cutover_approved": False, "no_data_since": None,
                                         "carry": carry.but(hold=None, cap_base=now), "updated_at": now})
    if command == "approve":
        assert gate is not None
        return _approve(record, gate, actor, reason, now)
    if full:
        return promote_full(engine, record, change, f"promoted fully by {actor}{why}", actor=actor)
    # Blue/green has no steps: its promote acts wherever it stands (the cutover or the post-promotion analysis).
    step = None if record.spec.strategy.kind == "blueGreen" else record.step_index
    promotion = Promotion(actor=actor, reason=reason, step=step)
    return record.model_copy(update={"carry": record.carry.but(hold=None, promotion=promotion),
                                     "phase": Phase.PROGRESSING, "paused_reason": None,
                                     "updated_at": now})


def _approve(record: RolloutRecord, gate: Hold, actor: str, reason: str, now: float) -> RolloutRecord:
    approval = Approval(actor=actor, reason=reason, gate=gate, step=record.step_index, stage=record.stage_index)
    given: dict[str, object] = {}  # a stage cap's approval lives in the carry alone
    if gate == Hold.CUTOVER:
        given["cutover_approved"] = True
    elif gate == Hold.APPROVAL:
        given["approved_step"] = record.step_index
    return record.model_copy(update={**given, "phase": Phase.PROGRESSING, "paused_reason": None,
                                     "updated_at": now, "carry": record.carry.but(hold=None, approval=approval)})


def _undo(engine: RolloutEngine, record: RolloutRecord, actor: str, reason: str, change: Change) -> RolloutRecord:
    now = engine.clock.now()
    why = f" ({reason})" if reason else ""
    if record.phase != Phase.SUCCEEDED:
        raise CommandError(f"undo needs a Succeeded rollout; {record.name} is {record.phase}")
    if record.rollback_until is None or now > record.rollback_until:
        raise CommandError("the rollback window has passed; start a new rollout instead")
    updated = engine.set_route(record, change, stable=record.stable_version, canary_weight=0.0,
                               mirror_to=None, mirror_percent=0.0, header_routes=[],
                               region_weights=all_stable(record))
    updated = updated.model_copy(update={"phase": Phase.ROLLED_BACK, "updated_at": now, "rollback_until": None})
    change.events.append(engine.event(updated, "command", f"undo by {actor}: traffic back to "
                                      f"{record.stable_version}{why}", actor=actor, command="undo", reason=reason))
    return updated


def _drop_pending(record: RolloutRecord) -> tuple[Carry, str]:
    """The carry without a person's pending promote/approval, and words saying what was dropped."""
    carry = record.carry.but(promotion=None, approval=None)
    dropped = []
    for verb, who in (("promote", record.carry.promotion), ("approval", record.carry.approval)):
        if who is not None:
            dropped.append(f"{verb} by {who.actor}")
    if not dropped:
        return carry, ""
    return carry, f"; pending {' and '.join(dropped)} dropped (give it again after resuming)"


def refuse_unless_approvable(record: RolloutRecord) -> Hold:
    """The approval gate ``record`` waits at; a ``CommandError`` saying why not when there is none."""
    hold = record.carry.hold
    if record.phase == Phase.PAUSED:
        if hold is None and (record.paused_reason or "").endswith("waiting for approval"):
            hold = Hold.APPROVAL  # paused before holds were recorded
        elif hold is None and (record.paused_reason or "").endswith("waiting for approval to cut over"):
            hold = Hold.CUTOVER
        if hold in APPROVAL_GATES:
            assert hold is not None
            return hold
        if hold == Hold.NO_DATA:
            raise CommandError(f"{record.name} is holding because {record.paused_reason}; approve answers "
                               "only an approval gate: resume to wait for metrics again, or promote to move "
                               "on without them")
        raise CommandError(f"{record.name} is paused ({record.paused_reason}); approve answers only an "
                           "approval gate: use resume to continue")
    gate = _gate_ahead(record)
    if gate is None:
        raise CommandError(f"{record.name} is not waiting for approval ({record.phase}, step "
                           f"{record.step_index}); approve answers a `pause: {{untilApproved: true}}` step, a "
                           "stage cap holding for a human, a blue/green cutover approval or a region wave's gate")
    return gate


def _gate_ahead(record: RolloutRecord) -> Hold | None:
    """An approval gate a progressing rollout is about to reach (approving it early is allowed)."""
    canary, bg = record.spec.strategy.canary, record.spec.strategy.blueGreen
    if record.phase != Phase.PROGRESSING:
        return None
    if canary is not None and record.step_index < len(canary.steps):
        step = canary.steps[record.step_index]
        if step.pause is not None and step.pause.untilApproved:
            return Hold.APPROVAL
    if bg is not None and not bg.autoPromote and record.bg_phase in (None, "preview"):
        return Hold.CUTOVER
    return None
