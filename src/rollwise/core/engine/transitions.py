"""Moves every strategy and command shares: end a rollout, hold it, promote it fully, credit a person."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rollwise.core.engine.change import Change
from rollwise.core.model import Phase, RolloutRecord

if TYPE_CHECKING:
    from rollwise.core.engine.reconciler import RolloutEngine


def promote_full(engine: RolloutEngine, record: RolloutRecord, change: Change, why: str,
                 evidence: dict[str, Any] | None = None, actor: str = "engine") -> RolloutRecord:
    updated = engine.set_route(record, change, canary_weight=100.0, mirror_to=None, mirror_percent=0.0,
                               header_routes=[])
    return finish(engine, updated, change, Phase.SUCCEEDED, why, evidence=evidence, actor=actor, keep_route=True)


def finish(engine: RolloutEngine, record: RolloutRecord, change: Change, phase: Phase, why: str,
           evidence: dict[str, Any] | None = None, actor: str = "engine",
           keep_route: bool = False) -> RolloutRecord:
    now = engine.clock.now()
    updated = record
    if not keep_route and phase in (Phase.ROLLED_BACK, Phase.ABORTED):
        updated = engine.set_route(record, change, canary_weight=0.0, mirror_to=None, mirror_percent=0.0,
                                   header_routes=[])
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


def pause(engine: RolloutEngine, record: RolloutRecord, change: Change, why: str, actor: str,
          hold: str = "human", carry: dict[str, Any] | None = None) -> RolloutRecord:
    """Hold the rollout; ``hold`` says what for (``APPROVAL_GATES`` are what ``approve`` answers)."""
    now = engine.clock.now()
    carry = {**(record.carry if carry is None else carry), "hold": hold}
    updated = record.model_copy(update={"phase": Phase.PAUSED, "paused_reason": why, "updated_at": now,
                                        "carry": carry})
    change.events.append(engine.event(updated, "phase", f"Paused: {why}", actor=actor, phase=str(Phase.PAUSED)))
    return updated


def credit(record: RolloutRecord, verb: str, key: str = "forced_by") -> tuple[str, str]:
    """("promoted by alice (reason)", "alice") for the person whose pending decision this is."""
    who = record.carry.get(key) or {}
    actor = str(who.get("actor") or "unknown")
    reason = f" ({who['reason']})" if who.get("reason") else ""
    return f"{verb} by {actor}{reason}", actor


def approval(record: RolloutRecord, gate: str) -> tuple[str, str] | None:
    """The (how, actor) of a person's approval of ``gate`` where the rollout stands, if any."""
    given = record.carry.get("approval")
    if not isinstance(given, dict) or given.get("gate") != gate:
        return None
    if gate == "approval" and given.get("step") != record.step_index:
        return None
    if gate in ("stage-cap", "shadow") and given.get("stage") != record.stage_index:
        return None
    return credit(record, "approved", key="approval")
