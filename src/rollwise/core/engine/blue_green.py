"""The blue/green strategy: preview the new version (no user traffic), cut over, watch, keep the old warm.

``bg_phase`` is where a rollout stands: None (nothing yet), ``preview`` (judged on preview traffic,
then waiting for approval unless ``autoPromote``), ``promoted`` (all traffic on the new version,
optionally judged by a post-promotion analysis before the rollout succeeds).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rollwise.core.carry import Hold
from rollwise.core.engine.change import Change, evidence_of, if_changed
from rollwise.core.engine.gates import gate
from rollwise.core.engine.observation import observe
from rollwise.core.engine.transitions import approval, credit, finish, pause
from rollwise.core.model import Phase, RolloutRecord
from rollwise.core.units import format_duration

if TYPE_CHECKING:
    from rollwise.core.engine.reconciler import RolloutEngine


class BlueGreen:
    kind = "blueGreen"

    def advance(self, engine: RolloutEngine, record: RolloutRecord, change: Change,
                now: float) -> RolloutRecord | None:
        if record.bg_phase is None:
            return _begin_preview(engine, record, change, now)
        if record.bg_phase == "preview":
            return _preview(engine, record, change, now)
        if record.bg_phase == "promoted":
            return _promoted(engine, record, change, now)
        raise AssertionError(f"unknown blue/green phase {record.bg_phase}")


def _begin_preview(engine: RolloutEngine, record: RolloutRecord, change: Change, now: float) -> RolloutRecord:
    bg = record.spec.strategy.blueGreen
    assert bg is not None
    routes = [bg.previewHeader] if bg.previewHeader is not None else []
    updated = engine.set_route(
        record, change, header_routes=routes,
        mirror_to=record.canary_version if bg.previewMirrorPercent else None,
        mirror_percent=bg.previewMirrorPercent,
    )
    updated = updated.model_copy(update={"bg_phase": "preview", "stage_started_at": now,
                                         "step_started_at": now, "updated_at": now})
    change.events.append(engine.event(updated, "step", f"preview {record.canary_version} (no user traffic)",
                                      kind="preview"))
    return updated


def _preview(engine: RolloutEngine, record: RolloutRecord, change: Change, now: float) -> RolloutRecord | None:
    bg = record.spec.strategy.blueGreen
    assert bg is not None
    analysis = bg.previewAnalysis
    current, verdict = record, None
    if analysis is not None:
        current, verdict = observe(engine, current, analysis, change, now, 100.0)
        gate_record, ready = gate(engine, current, analysis, verdict, change, now, 100.0)
        if gate_record is not None:
            return gate_record
    else:
        ready = now - (record.stage_started_at or now) >= bg.previewDuration
    forced = current.carry.promoted_at(None)
    if not (ready or forced):
        return if_changed(current, change)
    approved = approval(current, Hold.CUTOVER)
    if not bg.autoPromote and not current.cutover_approved and approved is None and not forced:
        if current.paused_reason is None:
            return pause(engine, current, change, "preview passed: waiting for approval to cut over",
                         actor="engine", hold=Hold.CUTOVER)
        return None
    if forced:
        change.decided_by = credit(current.carry.promotion, "promoted")
    elif approved is not None and not bg.autoPromote:
        change.decided_by = approved
    return _cutover(engine, current, change, now, evidence_of(verdict), change.decided_by)


def _promoted(engine: RolloutEngine, record: RolloutRecord, change: Change, now: float) -> RolloutRecord | None:
    bg = record.spec.strategy.blueGreen
    assert bg is not None
    analysis = bg.postPromotionAnalysis
    if analysis is None:
        return finish(engine, record, change, Phase.SUCCEEDED, "cut over; previous version kept for "
                      f"{format_duration(bg.rollbackWindow)} for instant rollback")
    current, verdict = observe(engine, record, analysis, change, now, 100.0)
    if current.carry.promoted_at(None):  # promoted during post-promotion analysis
        how, actor = credit(current.carry.promotion, "promoted")
        return finish(engine, current, change, Phase.SUCCEEDED, f"post-promotion analysis ended: {how}",
                      evidence=evidence_of(verdict), actor=actor)
    gate_record, ready = gate(engine, current, analysis, verdict, change, now, 100.0)
    if gate_record is not None:
        return gate_record
    if ready:
        how, actor = change.decided_by or ("passed", "engine")
        return finish(engine, current, change, Phase.SUCCEEDED, f"post-promotion analysis {how}",
                      evidence=evidence_of(verdict), actor=actor)
    return if_changed(current, change)


def _cutover(engine: RolloutEngine, record: RolloutRecord, change: Change, now: float,
             evidence: dict[str, Any], decided_by: tuple[str, str] | None = None) -> RolloutRecord:
    bg = record.spec.strategy.blueGreen
    assert bg is not None
    updated = engine.set_route(record, change, canary_weight=100.0, header_routes=[], mirror_to=None,
                               mirror_percent=0.0)
    updated = updated.model_copy(update={
        "bg_phase": "promoted", "stage_index": record.stage_index + 1, "stage_started_at": now,
        "last_verdict": None, "updated_at": now, "paused_reason": None,
        "rollback_until": now + bg.rollbackWindow,
        "carry": record.carry.but(promotion=None, approval=None, hold=None),
    })
    how, actor = decided_by or ("", "engine")
    change.events.append(engine.event(updated, "step", f"cutover: 100% to {record.canary_version}"
                                      + (f" ({how})" if how else "")
                                      + f"; {record.stable_version} kept warm for instant rollback",
                                      actor=actor, kind="cutover", weight=100.0, evidence=evidence))
    return updated
