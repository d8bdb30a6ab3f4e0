"""Moves every strategy and command shares: end a rollout, hold it, promote it fully, credit a person."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rollwise.core.carry import Approval, Carry, Hold, Promotion
from rollwise.core.engine.change import Change
from rollwise.core.model import Phase, RolloutRecord

if TYPE_CHECKING:
    from rollwise.core.engine.reconciler import RolloutEngine


def promote_full(engine: RolloutEngine, record: RolloutRecord, change: Change, why: str,
                 evidence: dict[str, Any] | None = None, actor: str = "engine") -> RolloutRecord:
    # Region waves end here too: every region (named or not) then serves the canary.
    updated = engine.set_route(record, change, canary_weight=100.0, mirror_to=None, mirror_percent=0.0,
                               header_routes=[], region_weights={})
    return finish(engine, updated, change, Phase.SUCCEEDED, why, evidence=evidence, actor=actor, keep_route=True)


def finish(engine: RolloutEngine, record: RolloutRecord, change: Change, phase: Phase, why: str,
           evidence: dict[str, Any] | None = None, actor: str = "engine",
           keep_route: bool = False) -> RolloutRecord:
    now = engine.clock.now()
    updated = record
    if not keep_route and phase in (Phase.ROLLED_BACK, Phase.ABORTED):
        updated = engine.set_route(record, change, canary_weight=0.0, mirror_to=None, mirror_percent=0.0,
                                   header_routes=[], region_weights=all_stable(record))
    rollback_until = record.rollback_until
    if phase == Phase.SUCCEEDED and rollback_until is None:
        window = record.spec.strategy.blueGreen.rollbackWindow if record.spec.strategy.blueGreen else 600.0
        rollback_until = now + window
    updated = updated.model_copy(update={
        "phase": phase, "finished_at": now, "updated_at": now, "paused_reason": None,
        "rollback_until": rollback_until if phase == Phase.SUCCEEDED else None,
    })
    change.events.append(engine.event(updated, "phase", f"{phase}: {why}", actor=actor, phase=str(phase),
                                      evidence=evidence or {}))
    return updated


def all_stable(record: RolloutRecord) -> dict[str, float]:
    """The route's per-region weights with every region back on stable (region waves roll back whole)."""
    return {region: 0.0 for region in record.route.region_weights}


def pause(engine: RolloutEngine, record: RolloutRecord, change: Change, why: str, actor: str,
          hold: Hold = Hold.HUMAN, carry: Carry | None = None) -> RolloutRecord:
    """Hold the rollout; ``hold`` says what for (approval gates are what ``approve`` answers)."""
    now = engine.clock.now()
    carry = (record.carry if carry is None else carry).but(hold=hold)
    updated = record.model_copy(update={"phase": Phase.PAUSED, "paused_reason": why, "updated_at": now,
                                        "carry": carry})
    change.events.append(engine.event(updated, "phase", f"Paused: {why}", actor=actor, phase=str(Phase.PAUSED)))
    return updated


def credit(person: Promotion | Approval | None, verb: str) -> tuple[str, str]:
    """("promoted by alice (reason)", "alice") for the person whose pending decision this is."""
    actor = (person.actor if person is not None else "") or "unknown"
    reason = f" ({person.reason})" if person is not None and person.reason else ""
    return f"{verb} by {actor}{reason}", actor


def approval(record: RolloutRecord, gate: Hold) -> tuple[str, str] | None:
    """The (how, actor) of a person's approval of ``gate`` where the rollout stands, if any."""
    given = record.carry.approval
    if given is None or given.gate != gate:
        return None
    if gate == Hold.APPROVAL and given.step != record.step_index:
        return None
    if gate in (Hold.STAGE_CAP, Hold.SHADOW, Hold.WAVE) and given.stage != record.stage_index:
        return None
    return credit(given, "approved")
