"""Observation: collect windows, ask the judge, and gate a stage on what it said.

A metrics outage is "unknown", never "bad": a failing backend's window carries the error, the
record keeps it while it lasts, and a stage waiting on it is held, not rolled back.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from rollwise.core.carry import BaselineRead, MetricsFailure
from rollwise.core.engine.change import Change
from rollwise.core.model import Action, RolloutRecord, StageContext, Verdict, Window, WindowQuery
from rollwise.core.protocols import BaselineHistory, MetricsError
from rollwise.core.units import format_duration
from rollwise.spec.models import AnalysisSpec

if TYPE_CHECKING:
    from rollwise.core.engine.reconciler import RolloutEngine

_CREDENTIALS = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


def failure(exc: Exception) -> str:
    """One line saying why a metrics read failed; a backend's ``MetricsError`` already names itself.

    Credentials in any URL the cause mentions are cut: the line goes to status, events and viewers.
    """
    text = str(exc) if isinstance(exc, MetricsError) else f"metrics source failed: {type(exc).__name__}: {exc}"
    flat = _CREDENTIALS.sub(r"\1", " ".join(text.split()))
    return flat if len(flat) <= 400 else flat[:399] + "…"


def observe(
    engine: RolloutEngine, record: RolloutRecord, analysis: AnalysisSpec, change: Change, now: float,
    canary_weight: float,
) -> tuple[RolloutRecord, Verdict | None]:
    """Collect a window if one is due and ask the judge about the stage so far."""
    start = record.last_window_end if record.last_window_end is not None else now
    if now - start < analysis.interval:
        return record, None
    window = collect(engine, record, start, now)
    change.windows.append((record.stage_index, window))
    stage_windows = [w for _, w in engine.store.windows(record.name, record.stage_index)]
    stage_windows.append(window)
    record = note_metrics(engine, record, window, change)
    record = with_history(engine, record, analysis, change)
    stage_start = record.stage_started_at if record.stage_started_at is not None else now
    context = StageContext(
        analysis=analysis,
        stage_index=record.stage_index,
        canary_weight=canary_weight,
        stage_started_at=stage_start,
        now=now,
        windows=tuple(stage_windows),
        carry=record.carry.for_judges(),
        run=record.run,
    )
    verdict = engine.judge(analysis).evaluate(context)
    updated = record.model_copy(update={"last_window_end": now, "cursor": window.cursor, "updated_at": now})
    if verdict.action == Action.HOLD:
        if updated.no_data_since is None:
            updated = updated.model_copy(update={"no_data_since": start})
    elif updated.no_data_since is not None:
        updated = updated.model_copy(update={"no_data_since": None})
    if verdict.action == Action.ROLLBACK or str(verdict.action) != record.last_verdict:
        failed = window.error if verdict.action == Action.HOLD else None
        updated = record_decision(engine, updated, verdict, change, canary_weight, metrics_error=failed)
    return updated, verdict


def note_metrics(engine: RolloutEngine, record: RolloutRecord, window: Window, change: Change) -> RolloutRecord:
    """Keep ``carry.metrics_error`` current; one event per distinct error, one when it clears."""
    current = record.carry.metrics_error
    if window.error is None:
        if current is None:
            return record
        lasted = format_duration(window.end - current.since)
        change.events.append(engine.event(record, "metrics-recovered", f"metrics backend answering again "
                                          f"after {lasted} of errors", error=current.message))
        return record.model_copy(update={"carry": record.carry.but(metrics_error=None)})
    same = current is not None and current.message == window.error
    since = current.since if same and current is not None else window.start
    if not same:
        change.events.append(engine.event(record, "metrics-error", f"metrics backend error: {window.error} "
                                          "(holding: unknown, not bad)", error=window.error,
                                          window=[window.start, window.end]))
    failed = MetricsFailure(message=window.error, since=since, last=window.end)
    return record.model_copy(update={"carry": record.carry.but(metrics_error=failed)})


def with_history(engine: RolloutEngine, record: RolloutRecord, analysis: AnalysisSpec,
                 change: Change) -> RolloutRecord:
    """Read the stable version's recent history once per rollout, into ``carry.history``.

    Judges use it as a prior for the baseline rate their alternatives are built on: known
    before the first window, it is predictable, so it can only change how fast a regression is
    found, never the false-rollback guarantee. A source that cannot say leaves it empty.
    """
    if record.carry.history is not None or analysis.baselineHistory <= 0:
        return record
    if not isinstance(engine.metrics, BaselineHistory):
        return record
    end = record.created_at
    query = WindowQuery(
        rollout=record.name, service=record.spec.service, baseline_version=record.stable_version,
        canary_version=record.canary_version, start=end - analysis.baselineHistory, end=end,
    )
    error: str | None = None
    try:
        stats = engine.metrics.baseline_history(query)
    except Exception as exc:  # no history is no prior, not a reason to stop; but say why there is none
        stats, error = None, failure(exc)
        change.events.append(engine.event(record, "metrics-error", f"baseline history unavailable: {error} "
                                          "(judging without a prior)", error=error, scope="history"))
    history = BaselineRead(start=query.start, end=end, baseline=stats.to_dict() if stats is not None else None,
                           error=error)
    return record.model_copy(update={"carry": record.carry.but(history=history)})


def close_window(engine: RolloutEngine, record: RolloutRecord, change: Change, now: float) -> RolloutRecord:
    """End the current window at a stage boundary so the next stage's windows start fresh.

    The closing window is kept under the old stage (charts show it); the source's cursor moves
    to ``now`` so cumulative-counter sources diff the new stage against the right snapshot.
    """
    start = record.last_window_end if record.last_window_end is not None else now
    if now > start:
        window = collect(engine, record, start, now)
        change.windows.append((record.stage_index, window))
        record = note_metrics(engine, record, window, change)
        return record.model_copy(update={"last_window_end": now, "cursor": window.cursor})
    return record.model_copy(update={"last_window_end": now})


def collect(engine: RolloutEngine, record: RolloutRecord, start: float, end: float) -> Window:
    query = WindowQuery(
        rollout=record.name,
        service=record.spec.service,
        baseline_version=record.stable_version,
        canary_version=record.canary_version,
        start=start,
        end=end,
        cursor=record.cursor,
        regions=judged_regions(record),
    )
    if engine.metrics is None:
        return Window(start=start, end=end, baseline=None, canary=None, cursor=record.cursor)
    try:
        return engine.metrics.collect(query)
    except Exception as exc:  # a metrics outage is "unknown", never "bad"; but it is not "no data"
        return Window(start=start, end=end, baseline=None, canary=None, cursor=record.cursor,
                      error=failure(exc))


def judged_regions(record: RolloutRecord) -> tuple[str, ...]:
    """The regions a window is read from: a running region wave's changing group, else every region."""
    waves = record.carry.waves
    wave = waves.wave if waves is not None and waves.started else None
    if wave is None:
        return ()
    return tuple(batch_regions(record, waves.current if waves is not None else 0, wave.batch))


def batch_regions(record: RolloutRecord, index: int, batch: int) -> list[str]:
    """The regions of wave ``index``'s group ``batch`` (``parallelism`` at a time), as the spec lists them."""
    canary = record.spec.strategy.canary
    assert canary is not None and canary.waves is not None
    batches = canary.waves[index].batches()
    return batches[batch] if batch < len(batches) else []


def record_decision(
    engine: RolloutEngine, record: RolloutRecord, verdict: Verdict, change: Change, canary_weight: float,
    metrics_error: str | None = None,
) -> RolloutRecord:
    index = record.decisions + 1
    extra = {"metrics_error": metrics_error} if metrics_error else {}
    change.events.append(
        engine.event(
            record,
            "decision",
            f"metrics backend error: {metrics_error}: holding (unknown, not bad)" if metrics_error
            else verdict.reason,
            index=index,
            action=str(verdict.action),
            rule=verdict.rule,
            culprit=verdict.culprit,
            stage=record.stage_index,
            weight=canary_weight,
            evidence=verdict.to_evidence(),
            **extra,
        )
    )
    return record.model_copy(update={"decisions": index, "last_verdict": str(verdict.action)})
