"""Gates: whether a judged stage may end, and what a stage boundary resets.

A stage ends when the judge said expand and the stage is old enough; a regression rolls back;
silence past ``noDataLimit`` and indecision past ``maxStageTime`` follow the spec's ``onNoData``
and ``onInconclusive``. A person's approval of a capped stage counts as its end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rollwise.core.carry import Hold
from rollwise.core.engine.change import Change
from rollwise.core.engine.observation import close_window
from rollwise.core.engine.transitions import approval, finish, pause
from rollwise.core.model import Action, Phase, RolloutRecord, Verdict
from rollwise.core.units import format_duration
from rollwise.spec.models import AnalysisSpec

if TYPE_CHECKING:
    from rollwise.core.engine.reconciler import RolloutEngine


def gate(
    engine: RolloutEngine, record: RolloutRecord, analysis: AnalysisSpec | None, verdict: Verdict | None,
    change: Change, now: float, canary_weight: float,
) -> tuple[RolloutRecord | None, bool]:
    """Judge the stage. Returns (record to commit or None, whether the stage may end)."""
    if analysis is None or canary_weight <= 0:
        return None, True
    if verdict is not None and verdict.action == Action.ROLLBACK:
        return finish(engine, record, change, Phase.ROLLED_BACK, verdict.reason,
                      evidence=verdict.to_evidence()), False
    stage_start = record.stage_started_at if record.stage_started_at is not None else now
    last = str(verdict.action) if verdict is not None else record.last_verdict
    ready = last == str(Action.EXPAND) and now - stage_start >= analysis.minStageTime
    if ready:
        if record.run < analysis.runs:
            return next_run(engine, record, analysis, change, now, verdict), False
        return None, True
    approved = approval(record, Hold.STAGE_CAP)
    if approved is not None:  # a person accepted the undecided stage at its cap
        change.decided_by = approved
        return None, True
    if record.no_data_since is not None and now - record.no_data_since >= analysis.noDataLimit:
        return _silent(engine, record, analysis, change, now), False
    cap_base = record.carry.cap_base if record.carry.cap_base is not None else stage_start
    if last == str(Action.INCONCLUSIVE) or now - cap_base >= analysis.maxStageTime:
        reason = (f"stage {record.stage_index} undecided after {format_duration(now - stage_start)} "
                  f"(cap {format_duration(analysis.maxStageTime)})")
        if analysis.onInconclusive == "rollback":
            return finish(engine, record, change, Phase.ROLLED_BACK, reason + ": rolling back"), False
        if analysis.onInconclusive == "promote":
            return None, True
        return pause(engine, record, change, reason + ": holding for a human", actor="engine",
                     hold=Hold.STAGE_CAP), False
    return None, False


def _silent(engine: RolloutEngine, record: RolloutRecord, analysis: AnalysisSpec, change: Change,
            now: float) -> RolloutRecord:
    """No metrics for ``noDataLimit``: abort or hold for a human, as ``onNoData`` says."""
    assert record.no_data_since is not None
    silent = format_duration(now - record.no_data_since)
    failed = record.carry.metrics_error
    if failed is not None:  # the backend failing is why: say so, not just "no metrics"
        silent += f": the backend failed: {failed.message}"
    if analysis.onNoData == "abort":
        return finish(engine, record, change, Phase.ABORTED, f"no metrics for {silent} (onNoData: abort)")
    return pause(engine, record, change, f"no metrics for {silent}: waiting for a human (onNoData: hold)",
                 actor="engine", hold=Hold.NO_DATA)


def next_run(
    engine: RolloutEngine, record: RolloutRecord, analysis: AnalysisSpec, change: Change, now: float,
    verdict: Verdict | None,
) -> RolloutRecord:
    """Start the stage's next run: its windows apart, and (if rollwise runs the canary) a fresh process.

    A restart is what makes runs independent for a non-deterministic release: an agent's caches,
    sampled plans and warmed-up state do not leak from one run into the next.
    """
    record = close_window(engine, record, change, now)
    carry = record.carry.with_judges(verdict.details.carry) if verdict is not None else record.carry
    updated = record.model_copy(update={
        "run": record.run + 1, "stage_index": record.stage_index + 1, "stage_started_at": now,
        "last_verdict": None, "carry": carry, "updated_at": now,
    })
    message = f"run {record.run} passed; starting run {record.run + 1}"
    restarted: str | None = None
    if engine.deployer is not None and analysis.restartBetweenRuns:
        ref = record.spec.versions.canary
        engine.deployer.stop(record.name, ref)
        restarted = engine.deployer.ensure(record.name, ref)
        updated = engine.set_route(updated, change, upstreams={**record.route.upstreams, ref.name: restarted})
        message += f" on a freshly started {ref.name} ({restarted})"
    change.events.append(engine.event(updated, "run", message, run=record.run + 1, restarted=restarted))
    return updated


def new_stage(record: RolloutRecord, verdict: Verdict | None, now: float) -> dict[str, Any]:
    """The record fields a new stage starts with; the judge's carry is handed to the next stage."""
    carry = record.carry.but(cap_base=None, approval=None)
    if verdict is not None:
        carry = carry.with_judges(verdict.details.carry)
    return {
        "stage_index": record.stage_index + 1,
        "stage_started_at": now,
        "last_verdict": None,
        "no_data_since": None,
        "carry": carry,
        "run": 1,
    }
