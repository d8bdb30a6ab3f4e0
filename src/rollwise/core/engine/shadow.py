"""The shadow strategy: mirror live traffic to the new version, judge it, and never let users see it.

A shadow run ends Succeeded ("ready for a canary") or RolledBack; it promotes nothing. With
``compare: [status|body]`` the comparator's mismatch counts are judged too, before the metrics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rollwise.analysis.shadow_compare import mismatch_verdict
from rollwise.core.carry import Hold
from rollwise.core.engine.change import Change, evidence_of, if_changed
from rollwise.core.engine.observation import close_window, observe, record_decision
from rollwise.core.engine.transitions import approval, finish, pause
from rollwise.core.model import Action, Phase, RolloutRecord, Verdict
from rollwise.core.units import format_duration

if TYPE_CHECKING:
    from rollwise.core.engine.reconciler import RolloutEngine


class Shadow:
    kind = "shadow"

    def advance(self, engine: RolloutEngine, record: RolloutRecord, change: Change,
                now: float) -> RolloutRecord | None:
        shadow = record.spec.strategy.shadow
        assert shadow is not None
        if record.route.mirror_to is None and record.step_index == 0:
            return _begin_mirror(engine, record, change, now)
        current, verdict = record, None
        ready = True
        if shadow.analysis is not None:
            current, verdict = observe(engine, current, shadow.analysis, change, now, 0.0)
            if verdict is not None and verdict.action == Action.ROLLBACK:
                return finish(engine, current, change, Phase.ROLLED_BACK, verdict.reason,
                              evidence=verdict.to_evidence())
            ready = current.last_verdict == str(Action.EXPAND)
        elapsed = now - (current.stage_started_at or now)
        if elapsed < shadow.duration:
            return if_changed(current, change)
        compared: Verdict | None = None
        if _compares(record):
            current, compared = _compare(engine, current, change, now)
            if compared.action == Action.ROLLBACK:
                return finish(engine, current, change, Phase.ROLLED_BACK, compared.reason,
                              evidence=compared.to_evidence())
        approved = approval(current, Hold.SHADOW)
        if not ready and shadow.analysis is not None and approved is None:
            reason = f"shadow undecided after {format_duration(elapsed)}: holding for a human"
            return pause(engine, current, change, reason, actor="engine", hold=Hold.SHADOW)
        if compared is not None and compared.action == Action.HOLD and approved is None:
            # nothing compared: never a silent pass
            return pause(engine, current, change, f"shadow of {record.canary_version}: {compared.reason}; "
                         "holding for a human", actor="engine", hold=Hold.SHADOW)
        how, actor = approved or ("passed", "engine")
        updated = engine.set_route(current, change, mirror_to=None, mirror_percent=0.0)
        return finish(engine, updated, change, Phase.SUCCEEDED,
                      f"shadow of {record.canary_version} {how}; ready for a canary",
                      evidence=evidence_of(verdict), keep_route=True, actor=actor)


def _compares(record: RolloutRecord) -> bool:
    shadow = record.spec.strategy.shadow
    assert shadow is not None
    return bool(shadow.compared_responses)


def _begin_mirror(engine: RolloutEngine, record: RolloutRecord, change: Change, now: float) -> RolloutRecord:
    shadow = record.spec.strategy.shadow
    assert shadow is not None
    if _compares(record) and shadow.analysis is None:
        record = close_window(engine, record, change, now)  # counters from here on are the shadow's
    updated = engine.set_route(record, change, mirror_to=record.canary_version, mirror_percent=shadow.percent)
    updated = updated.model_copy(update={"step_index": 1, "stage_started_at": now,
                                         "step_started_at": now, "updated_at": now})
    change.events.append(engine.event(updated, "step", f"mirror {shadow.percent:g}% of live traffic to "
                                      f"{record.canary_version}; users see only {record.stable_version}",
                                      kind="setMirror", mirror_percent=shadow.percent))
    return updated


def _compare(engine: RolloutEngine, record: RolloutRecord, change: Change,
             now: float) -> tuple[RolloutRecord, Verdict]:
    """Judge the comparator's mismatches over the stage.

    Judged before the metrics' verdict: responses that differ with confidence are enough to roll
    back, even while the error and latency tests are still undecided.
    """
    shadow = record.spec.strategy.shadow
    assert shadow is not None
    if shadow.analysis is None:
        record = close_window(engine, record, change, now)
    windows = [w for _, w in engine.store.windows(record.name, record.stage_index)]
    windows += [w for stage, w in change.windows if stage == record.stage_index]
    alpha = shadow.analysis.alpha if shadow.analysis is not None else 0.01
    compared = mismatch_verdict(windows, shadow.maxMismatchRate, alpha)
    return record_decision(engine, record, compared, change, 0.0), compared
