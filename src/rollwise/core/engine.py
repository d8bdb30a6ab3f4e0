"""The rollout engine: spec -> engine -> actions; observations -> judge -> verdict -> engine.

The engine is a reconciler. Each ``tick`` loads the durable record, reads the clock, maybe
collects one observation window and asks the judge, then decides at most one step and commits
the new record together with the events that explain it in one store transaction. Because the
data-plane state (``RouteState``) is declarative and applied idempotently, a controller killed
at any moment resumes from the last commit: no step is skipped, none is logged twice, and pause
timers are absolute times, so they survive restarts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rollwise.analysis.shadow_compare import mismatch_verdict
from rollwise.core.clock import Clock
from rollwise.core.model import (
    Action,
    Event,
    Phase,
    RolloutRecord,
    RouteState,
    StageContext,
    Verdict,
    VersionStats,
    Window,
    WindowQuery,
)
from rollwise.core.protocols import (
    BaselineHistory,
    ConflictError,
    Deployer,
    Judge,
    MetricsError,
    MetricSource,
    Notifier,
    Store,
    TrafficRouter,
)
from rollwise.core.units import format_duration
from rollwise.spec.models import AnalysisSpec, RolloutSpec

JudgeFactory = Callable[[AnalysisSpec], Judge]

COMMANDS = ("promote", "pause", "resume", "abort", "approve", "undo")

# What a paused rollout waits for (``carry["hold"]``). Only the first three are questions that
# ``approve`` answers; a person's pause or a no-data hold is ended by ``resume`` (or promote/abort).
APPROVAL_GATES = ("approval", "cutover", "stage-cap", "shadow")
# A person's pending decision, dropped by pause and resume so it never fires after them.
PENDING_KEYS = ("forced_step", "forced_by", "approval")


class CommandError(Exception):
    """A manual control that does not apply to the rollout's current state."""


_CREDENTIALS = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


def _failure(exc: Exception) -> str:
    """One line saying why a metrics read failed; a backend's ``MetricsError`` already names itself.

    Credentials in any URL the cause mentions are cut: the line goes to status, events and viewers.
    """
    text = str(exc) if isinstance(exc, MetricsError) else f"metrics source failed: {type(exc).__name__}: {exc}"
    flat = _CREDENTIALS.sub(r"\1", " ".join(text.split()))
    return flat if len(flat) <= 400 else flat[:399] + "…"


@dataclass
class _Change:
    """What one tick or command wants to commit, and what must happen after the commit."""

    events: list[Event] = field(default_factory=list)
    windows: list[tuple[int, Window]] = field(default_factory=list)
    route_changed: bool = False
    decided_by: tuple[str, str] | None = None  # (how, actor) when a person's promote/approval decided


class RolloutEngine:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        judges: JudgeFactory | None = None,
        router: TrafficRouter | None = None,
        metrics: MetricSource | None = None,
        notifier: Notifier | None = None,
        deployer: Deployer | None = None,
    ):
        self.store = store
        self.clock = clock
        if judges is None:
            from rollwise.analysis import judge_for

            judges = judge_for
        self.judges = judges
        self.router = router
        self.metrics = metrics
        self.notifier = notifier
        self.deployer = deployer
        self._applied_route: dict[str, int] = {}
        self._judge_cache: dict[str, Judge] = {}
        self._last_seq: dict[str, int] = {}

    # ------------------------------------------------------------------ public API

    def start(
        self, spec: RolloutSpec, actor: str = "engine", commit_time: float | None = None
    ) -> RolloutRecord:
        now = self.clock.now()
        record = RolloutRecord(
            name=spec.name,
            spec=spec,
            created_at=now,
            updated_at=now,
            route=RouteState(stable=spec.versions.stable.name),
            commit_time=commit_time,
        )
        event = Event(
            rollout=spec.name,
            at=now,
            actor=actor,
            type="created",
            message=f"rollout of {spec.service} {spec.versions.stable.name} -> "
            f"{spec.versions.canary.name} created ({spec.strategy.kind})",
            data={"strategy": spec.strategy.kind, "commit_time": commit_time},
        )
        return self.store.create(record, [event])

    def tick(self, name: str, attempts: int = 5) -> RolloutRecord:
        """Advance one rollout by at most one decision; safe to call at any rate."""
        for _ in range(attempts):
            record = self.store.get(name)
            if record.phase != Phase.PENDING:  # a pending rollout has deployed nothing to route to
                self._reconcile_route(record)
            change = _Change()
            updated = self._advance(record, change)
            if updated is None:
                return record
            try:
                saved = self._commit(updated, change)
            except ConflictError:
                continue
            return saved
        raise ConflictError(f"rollout {name!r} kept changing under the engine")

    def command(
        self, name: str, command: str, actor: str, reason: str = "", full: bool = False
    ) -> RolloutRecord:
        """A manual control from a person: promote [--full], pause, resume, abort, approve, undo."""
        if command not in COMMANDS:
            raise CommandError(f"unknown command {command!r}; expected one of {', '.join(COMMANDS)}")
        for _ in range(5):
            record = self.store.get(name)
            change = _Change()
            updated = self._apply_command(record, command, actor, reason, full, change)
            try:
                return self._commit(updated, change, apply_route=False)
            except ConflictError:
                continue
        raise ConflictError(f"rollout {name!r} kept changing; try again")

    def update_spec(self, name: str, spec: RolloutSpec, actor: str, reason: str = "") -> RolloutRecord:
        """Replace a running rollout's spec. The caller validated it whole; identity must not change."""
        record = self.store.get(name)
        if record.phase.terminal:
            raise CommandError(f"rollout {name!r} has ended ({record.phase}); start a new one")
        if spec.name != record.name or spec.versions != record.spec.versions:
            raise CommandError("a spec update may not change the rollout's name or versions")
        if spec.strategy.kind != record.spec.strategy.kind:
            raise CommandError("a spec update may not change the strategy kind")
        now = self.clock.now()
        updated = record.model_copy(update={"spec": spec, "updated_at": now})
        change = _Change()
        change.events.append(
            Event(rollout=name, at=now, actor=actor, type="spec-updated", message="spec updated",
                  data={"reason": reason})
        )
        return self._commit(updated, change, apply_route=False)

    # ------------------------------------------------------------------ plumbing

    def _commit(self, record: RolloutRecord, change: _Change, apply_route: bool = True) -> RolloutRecord:
        saved = self.store.save(record, change.events, change.windows)
        if apply_route and change.route_changed:
            # The store holds the desired route and the data plane follows it, never the other way:
            # applied only once committed, a change is never undone by a crash between the two (the
            # next controller would re-apply the older, committed route) or by losing a write race.
            # If the data plane refuses, the tick fails here and every later tick retries the same
            # route in ``_reconcile_route`` before deciding anything else.
            self._apply_route(saved)
        if self.notifier is not None and change.events:
            for event in self._numbered(saved.name, len(change.events)):
                self.notifier.notify(saved, event)
        return saved

    def _numbered(self, name: str, count: int) -> list[Event]:
        """The last ``count`` events as stored, with the sequence numbers the store gave them."""
        since = self._last_seq.get(name)
        events = self.store.events(name, since or 0)
        if events:
            self._last_seq[name] = events[-1].seq
        return events[-count:]

    def _reconcile_route(self, record: RolloutRecord) -> None:
        if self._applied_route.get(record.name) != record.route.revision:
            self._apply_route(record)

    def route_applied(self, record: RolloutRecord) -> bool:
        """Whether this engine's data plane has ``record``'s desired route (no router: trivially)."""
        return self.router is None or self._applied_route.get(record.name) == record.route.revision

    def _apply_route(self, record: RolloutRecord) -> None:
        """Apply the desired route, then tell the store the data plane confirmed it.

        A rollout that ended before it began (aborted while Pending) deployed nothing: there is
        nothing to route to, so its route is confirmed without touching the data plane; so is a
        rollout whose spec names no data plane (``router: none``).
        """
        if self.router is not None and record.step_started_at is not None:
            self.router.apply(record.name, record.route)
        self._applied_route[record.name] = record.route.revision
        self.store.confirm_route(record.name, record.route.revision, self.clock.now())

    def _event(self, record: RolloutRecord, type_: str, message: str, actor: str = "engine",
               **data: Any) -> Event:
        return Event(rollout=record.name, at=self.clock.now(), actor=actor, type=type_, message=message,
                     data=data)

    @staticmethod
    def _route(record: RolloutRecord, **changes: Any) -> RouteState:
        return record.route.model_copy(update={**changes, "revision": record.route.revision + 1})

    def _set_route(self, record: RolloutRecord, change: _Change, **route: Any) -> RolloutRecord:
        change.route_changed = True
        return record.model_copy(update={"route": self._route(record, **route)})

    # ------------------------------------------------------------------ the reconciler

    def _advance(self, record: RolloutRecord, change: _Change) -> RolloutRecord | None:
        now = self.clock.now()
        if record.phase == Phase.PENDING:
            return self._begin(record, change, now)
        if record.phase.terminal:
            return self._retire(record, change, now)
        if record.phase == Phase.PAUSED:
            return None
        kind = record.spec.strategy.kind
        if kind == "canary":
            return self._advance_canary(record, change, now)
        if kind == "blueGreen":
            return self._advance_blue_green(record, change, now)
        return self._advance_shadow(record, change, now)

    def _begin(self, record: RolloutRecord, change: _Change, now: float) -> RolloutRecord:
        spec = record.spec
        upstreams = {}
        for ref in (spec.versions.stable, spec.versions.canary):
            if self.deployer is not None:
                upstreams[ref.name] = self.deployer.ensure(record.name, ref)
            elif ref.address:
                upstreams[ref.name] = ref.address
        route: dict[str, Any] = {
            "stable": spec.versions.stable.name,
            "canary": spec.versions.canary.name,
            "canary_weight": 0.0,
            "upstreams": upstreams,
        }
        if spec.strategy.canary is not None:
            route["sticky_header"] = spec.strategy.canary.stickyHeader
        updated = self._set_route(record, change, **route)
        updated = updated.model_copy(
            update={
                "phase": Phase.PROGRESSING,
                "updated_at": now,
                "step_index": 0,
                "step_started_at": now,
                "stage_started_at": now,
                "last_window_end": now,
                "previous_stable": spec.versions.stable.name,
            }
        )
        change.events.append(
            self._event(updated, "phase", f"{spec.versions.canary.name} deployed; rollout progressing",
                        phase=str(Phase.PROGRESSING), upstreams=upstreams)
        )
        return updated

    def _retire(self, record: RolloutRecord, change: _Change, now: float) -> RolloutRecord | None:
        """Stop versions no longer routed to, once their rollback window has passed."""
        if self.deployer is None:
            return None
        stopped = set(record.carry.get("stopped", []))
        if record.rollback_until is not None and now < record.rollback_until:
            return None
        routed = {record.route.stable, *( [record.route.canary] if record.route.canary_weight > 0 else [])}
        to_stop = [
            ref for ref in (record.spec.versions.stable, record.spec.versions.canary)
            if ref.name not in routed and ref.name not in stopped
        ]
        if not to_stop:
            if record.carry.get("retired"):
                return None
            # Nothing left to stop: say so in the record, so runners stop waking for it (``retire_at``).
            return record.model_copy(update={"carry": {**record.carry, "retired": True}})
        for ref in to_stop:
            self.deployer.stop(record.name, ref)
            stopped.add(ref.name)
        upstreams = {k: v for k, v in record.route.upstreams.items() if k not in stopped}
        updated = self._set_route(record, change, upstreams=upstreams)
        updated = updated.model_copy(update={"carry": {**record.carry, "stopped": sorted(stopped),
                                                       "retired": True}})
        change.events.append(self._event(updated, "retired", "stopped " + ", ".join(r.name for r in to_stop)))
        return updated

    # ------------------------------------------------------------------ analysis

    def _observe(
        self, record: RolloutRecord, analysis: AnalysisSpec, change: _Change, now: float,
        canary_weight: float,
    ) -> tuple[RolloutRecord, Verdict | None]:
        """Collect a window if one is due and ask the judge about the stage so far."""
        start = record.last_window_end if record.last_window_end is not None else now
        if now - start < analysis.interval:
            return record, None
        window = self._collect(record, start, now)
        change.windows.append((record.stage_index, window))
        stage_windows = [w for _, w in self.store.windows(record.name, record.stage_index)]
        stage_windows.append(window)
        record = self._note_metrics(record, window, change)
        record = self._with_history(record, analysis, change)
        stage_start = record.stage_started_at if record.stage_started_at is not None else now
        context = StageContext(
            analysis=analysis,
            stage_index=record.stage_index,
            canary_weight=canary_weight,
            stage_started_at=stage_start,
            now=now,
            windows=tuple(stage_windows),
            carry=dict(record.carry),
            run=record.run,
        )
        verdict = self._judge(analysis).evaluate(context)
        updated = record.model_copy(
            update={"last_window_end": now, "cursor": window.cursor, "updated_at": now}
        )
        if verdict.action == Action.HOLD:
            if updated.no_data_since is None:
                updated = updated.model_copy(update={"no_data_since": start})
        elif updated.no_data_since is not None:
            updated = updated.model_copy(update={"no_data_since": None})
        if verdict.action == Action.ROLLBACK or str(verdict.action) != record.last_verdict:
            failed = window.error if verdict.action == Action.HOLD else None
            updated = self._record_decision(updated, verdict, change, canary_weight, metrics_error=failed)
        return updated, verdict

    def _note_metrics(self, record: RolloutRecord, window: Window, change: _Change) -> RolloutRecord:
        """Keep ``carry["metrics_error"]`` current; one event per distinct error, one when it clears."""
        current = record.carry.get("metrics_error")
        if window.error is None:
            if not isinstance(current, dict):
                return record
            carry = {k: v for k, v in record.carry.items() if k != "metrics_error"}
            lasted = format_duration(window.end - float(current.get("since", window.end)))
            change.events.append(self._event(record, "metrics-recovered", f"metrics backend answering again "
                                             f"after {lasted} of errors", error=current.get("message")))
            return record.model_copy(update={"carry": carry})
        same = isinstance(current, dict) and current.get("message") == window.error
        since = float(current["since"]) if same and isinstance(current, dict) else window.start
        if not same:
            change.events.append(self._event(record, "metrics-error", f"metrics backend error: {window.error} "
                                             "(holding: unknown, not bad)", error=window.error,
                                             window=[window.start, window.end]))
        failure = {"message": window.error, "since": since, "last": window.end}
        return record.model_copy(update={"carry": {**record.carry, "metrics_error": failure}})

    def _with_history(self, record: RolloutRecord, analysis: AnalysisSpec, change: _Change) -> RolloutRecord:
        """Read the stable version's recent history once per rollout, into ``carry["history"]``.

        Judges use it as a prior for the baseline rate their alternatives are built on: known
        before the first window, it is predictable, so it can only change how fast a regression is
        found, never the false-rollback guarantee. A source that cannot say leaves it empty.
        """
        if "history" in record.carry or analysis.baselineHistory <= 0:
            return record
        if not isinstance(self.metrics, BaselineHistory):
            return record
        end = record.created_at
        query = WindowQuery(
            rollout=record.name, service=record.spec.service, baseline_version=record.stable_version,
            canary_version=record.canary_version, start=end - analysis.baselineHistory, end=end,
        )
        error: str | None = None
        try:
            stats = self.metrics.baseline_history(query)
        except Exception as exc:  # no history is no prior, not a reason to stop; but say why there is none
            stats, error = None, _failure(exc)
            change.events.append(self._event(record, "metrics-error", f"baseline history unavailable: {error} "
                                             "(judging without a prior)", error=error, scope="history"))
        history: dict[str, Any] = {"start": query.start, "end": end,
                                   "baseline": stats.to_dict() if stats is not None else None}
        if error is not None:
            history["error"] = error
        return record.model_copy(update={"carry": {**record.carry, "history": history}})

    def _close_window(self, record: RolloutRecord, change: _Change, now: float) -> RolloutRecord:
        """End the current window at a stage boundary so the next stage's windows start fresh.

        The closing window is kept under the old stage (charts show it); the source's cursor moves
        to ``now`` so cumulative-counter sources diff the new stage against the right snapshot.
        """
        start = record.last_window_end if record.last_window_end is not None else now
        if now > start:
            window = self._collect(record, start, now)
            change.windows.append((record.stage_index, window))
            record = self._note_metrics(record, window, change)
            return record.model_copy(update={"last_window_end": now, "cursor": window.cursor})
        return record.model_copy(update={"last_window_end": now})

    def _judge(self, analysis: AnalysisSpec) -> Judge:
        """One judge per analysis spec, so judges may memoise per-window work across ticks."""
        key = analysis.model_dump_json()
        judge = self._judge_cache.get(key)
        if judge is None:
            if len(self._judge_cache) > 64:
                self._judge_cache.clear()
            judge = self._judge_cache[key] = self.judges(analysis)
        return judge

    def _collect(self, record: RolloutRecord, start: float, end: float) -> Window:
        query = WindowQuery(
            rollout=record.name,
            service=record.spec.service,
            baseline_version=record.stable_version,
            canary_version=record.canary_version,
            start=start,
            end=end,
            cursor=record.cursor,
        )
        if self.metrics is None:
            return Window(start=start, end=end, baseline=None, canary=None, cursor=record.cursor)
        try:
            window = self.metrics.collect(query)
        except Exception as exc:  # a metrics outage is "unknown", never "bad"; but it is not "no data"
            return Window(start=start, end=end, baseline=None, canary=None, cursor=record.cursor,
                          error=_failure(exc))
        return self._with_pushed_kpis(record, window)

    def _with_pushed_kpis(self, record: RolloutRecord, window: Window) -> Window:
        sides: dict[str, VersionStats | None] = {"baseline": window.baseline, "canary": window.canary}
        for side, version in (("baseline", record.stable_version), ("canary", record.canary_version)):
            stats = sides[side]
            if stats is None:
                continue
            pushed = self.store.kpi_totals(record.name, version, window.start, window.end)
            if pushed:
                sides[side] = VersionStats(
                    requests=stats.requests, errors=stats.errors, latency_buckets=stats.latency_buckets,
                    latency_sum_ms=stats.latency_sum_ms, kpis={**stats.kpis, **pushed}, extra=stats.extra,
                )
        return Window(start=window.start, end=window.end, baseline=sides["baseline"],
                      canary=sides["canary"], cursor=window.cursor)

    def _record_decision(
        self, record: RolloutRecord, verdict: Verdict, change: _Change, canary_weight: float,
        metrics_error: str | None = None,
    ) -> RolloutRecord:
        index = record.decisions + 1
        extra = {"metrics_error": metrics_error} if metrics_error else {}
        change.events.append(
            self._event(
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

    def _gate(
        self, record: RolloutRecord, analysis: AnalysisSpec | None, verdict: Verdict | None,
        change: _Change, now: float, canary_weight: float,
    ) -> tuple[RolloutRecord | None, bool]:
        """Judge the stage. Returns (record to commit or None, whether the stage may end)."""
        if analysis is None or canary_weight <= 0:
            return None, True
        if verdict is not None and verdict.action == Action.ROLLBACK:
            return self._finish(record, change, Phase.ROLLED_BACK, verdict.reason,
                                evidence=verdict.to_evidence()), False
        stage_start = record.stage_started_at if record.stage_started_at is not None else now
        last = str(verdict.action) if verdict is not None else record.last_verdict
        ready = last == str(Action.EXPAND) and now - stage_start >= analysis.minStageTime
        if ready:
            if record.run < analysis.runs:
                return self._next_run(record, analysis, change, now, verdict), False
            return None, True
        approved = self._approval(record, "stage-cap")
        if approved is not None:  # a person accepted the undecided stage at its cap
            change.decided_by = approved
            return None, True
        if record.no_data_since is not None and now - record.no_data_since >= analysis.noDataLimit:
            silent = format_duration(now - record.no_data_since)
            failure = record.carry.get("metrics_error")
            if isinstance(failure, dict):  # the backend failing is why: say so, not just "no metrics"
                silent += f": the backend failed: {failure.get('message')}"
            if analysis.onNoData == "abort":
                return self._finish(record, change, Phase.ABORTED,
                                    f"no metrics for {silent} (onNoData: abort)"), False
            return self._pause(record, change, f"no metrics for {silent}: waiting for a human "
                               "(onNoData: hold)", actor="engine", hold="no-data"), False
        cap_base = float(record.carry.get("cap_base", stage_start))
        if last == str(Action.INCONCLUSIVE) or now - cap_base >= analysis.maxStageTime:
            reason = (f"stage {record.stage_index} undecided after {format_duration(now - stage_start)} "
                      f"(cap {format_duration(analysis.maxStageTime)})")
            if analysis.onInconclusive == "rollback":
                return self._finish(record, change, Phase.ROLLED_BACK, reason + ": rolling back"), False
            if analysis.onInconclusive == "promote":
                return None, True
            return self._pause(record, change, reason + ": holding for a human", actor="engine",
                               hold="stage-cap"), False
        return None, False

    def _next_run(
        self, record: RolloutRecord, analysis: AnalysisSpec, change: _Change, now: float, verdict: Verdict | None
    ) -> RolloutRecord:
        """Start the stage's next run: its windows apart, and (if rollwise runs the canary) a fresh process.

        A restart is what makes runs independent for a non-deterministic release: an agent's caches,
        sampled plans and warmed-up state do not leak from one run into the next.
        """
        record = self._close_window(record, change, now)
        carry = dict(record.carry)
        if verdict is not None and verdict.details.carry is not None:
            carry.update(verdict.evidence["carry"])
        updated = record.model_copy(update={
            "run": record.run + 1, "stage_index": record.stage_index + 1, "stage_started_at": now,
            "last_verdict": None, "carry": carry, "updated_at": now,
        })
        message = f"run {record.run} passed; starting run {record.run + 1}"
        restarted: str | None = None
        if self.deployer is not None and analysis.restartBetweenRuns:
            ref = record.spec.versions.canary
            self.deployer.stop(record.name, ref)
            restarted = self.deployer.ensure(record.name, ref)
            updated = self._set_route(updated, change, upstreams={**record.route.upstreams, ref.name: restarted})
            message += f" on a freshly started {ref.name} ({restarted})"
        change.events.append(self._event(updated, "run", message, run=record.run + 1, restarted=restarted))
        return updated

    def _new_stage(self, record: RolloutRecord, verdict: Verdict | None, now: float) -> dict[str, Any]:
        carry = {k: v for k, v in record.carry.items() if k not in ("cap_base", "approval")}
        if verdict is not None and verdict.details.carry is not None:
            carry.update(verdict.evidence["carry"])
        return {
            "stage_index": record.stage_index + 1,
            "stage_started_at": now,
            "last_verdict": None,
            "no_data_since": None,
            "carry": carry,
            "run": 1,
        }

    # ------------------------------------------------------------------ canary

    def _advance_canary(self, record: RolloutRecord, change: _Change, now: float) -> RolloutRecord | None:
        canary = record.spec.strategy.canary
        assert canary is not None
        steps = canary.steps
        analysis = canary.analysis
        weight = record.route.canary_weight
        current = record
        verdict: Verdict | None = None
        step = steps[record.step_index] if record.step_index < len(steps) else None
        inline = step.analysis if step is not None and step.analysis is not None else None
        if inline is not None and analysis is None:
            raise CommandError("an analysis step needs strategy.canary.analysis to say how to judge")
        judged = analysis is not None and 0 < weight < 100
        if judged:
            assert analysis is not None
            current, verdict = self._observe(current, analysis, change, now, weight)
        forced = current.carry.get("forced_step") == current.step_index
        if forced:
            change.decided_by = self._credit(current, "promoted")
        ready = True
        if judged and not forced:
            gate_record, ready = self._gate(current, analysis, verdict, change, now, weight)
            if gate_record is not None:
                return gate_record

        if step is None:  # every step done: full promotion
            if not ready:
                return current if change.events or change.windows else None
            how, actor = (change.decided_by if judged else None) or ("all steps passed", "engine")
            return self._promote_full(current, change, how, evidence=self._evidence(verdict), actor=actor)

        step_elapsed = now - (current.step_started_at or now)
        kind = step.kind
        if kind == "setWeight":
            target = float(step.setWeight or 0)
            expanding = target > weight
            if expanding and not ready:
                return current if change.events or change.windows else None
            if analysis is not None and target != weight:
                current = self._close_window(current, change, now)
            updated = self._set_route(current, change, canary_weight=target)
            stage = self._new_stage(current, verdict, now) if target != weight else {}
            updated = self._next_step(updated, now, **stage)
            # Unjudged, a weight step needs nobody's say-so: credit a person only for passing a gate.
            how, actor = (change.decided_by if judged else None) or ("", "engine")
            change.events.append(self._event(
                updated, "step", f"weight {weight:g}% -> {target:g}% ({current.spec.versions.canary.name})"
                + (f": {how}" if how else ""), actor=actor,
                step=current.step_index, kind=kind, weight=target, previous_weight=weight,
                evidence=self._evidence(verdict),
            ))
            return updated
        if kind == "pause":
            assert step.pause is not None
            if step.pause.untilApproved:
                return self._approval_step(current, change, now, forced)
            duration = step.pause.duration or 0.0
            adaptive_done = analysis is not None and analysis.adaptive and ready and weight > 0
            if forced or adaptive_done or (step_elapsed >= duration and ready):
                how = "evidence decided" if adaptive_done and step_elapsed < duration else "pause elapsed"
                return self._step_done(current, change, now, how)
            return current if change.events or change.windows else None
        if kind == "analysis":
            assert step.analysis is not None
            duration = step.analysis.duration or 0.0
            if forced or (ready and step_elapsed >= min(duration, analysis.minStageTime if analysis else 0)):
                return self._step_done(current, change, now, "analysis passed")
            return current if change.events or change.windows else None
        if kind == "setMirror":
            assert step.setMirror is not None
            percent = step.setMirror.percent
            updated = self._set_route(current, change, mirror_to=current.canary_version if percent else None,
                                      mirror_percent=percent)
            updated = self._next_step(updated, now)
            change.events.append(self._event(updated, "step", f"mirror {percent:g}% to {current.canary_version}",
                                             step=current.step_index, kind=kind, mirror_percent=percent))
            return updated
        if kind == "setHeaderRoute":
            assert step.setHeaderRoute is not None
            updated = self._set_route(current, change, header_routes=[step.setHeaderRoute])
            updated = self._next_step(updated, now)
            change.events.append(self._event(updated, "step", f"header route {step.setHeaderRoute.name!r} "
                                             f"-> {current.canary_version}", step=current.step_index, kind=kind))
            return updated
        raise AssertionError(f"unhandled step kind {kind}")

    def _approval_step(self, record: RolloutRecord, change: _Change, now: float,
                       forced: bool) -> RolloutRecord | None:
        """A ``pause: {untilApproved: true}`` step: wait (paused) until a person approves or promotes."""
        approved = self._approval(record, "approval")
        if approved is not None and not forced:
            change.decided_by = approved
        if forced or approved is not None or record.approved_step == record.step_index:
            return self._step_done(record, change, now, "approved")
        if record.paused_reason is None:
            return self._pause(record, change, f"step {record.step_index}: waiting for approval",
                               actor="engine", hold="approval")
        return record if change.events or change.windows else None

    def _next_step(self, record: RolloutRecord, now: float, **extra: Any) -> RolloutRecord:
        carry = {k: v for k, v in (extra.pop("carry", record.carry)).items()
                 if k not in ("forced_step", "forced_by", "hold")}
        if (carry.get("approval") or {}).get("gate") == "approval":
            del carry["approval"]  # a step's approval ends with the step; a stage cap's with the stage
        return record.model_copy(update={
            "step_index": record.step_index + 1, "step_started_at": now, "updated_at": now,
            "paused_reason": None, "carry": carry, **extra,
        })

    def _step_done(self, record: RolloutRecord, change: _Change, now: float, how: str) -> RolloutRecord:
        """End a pause/analysis step; the event names the person when a promote or approval ended it."""
        how, actor = change.decided_by or (how, "engine")
        updated = self._next_step(record, now)
        change.events.append(self._event(updated, "step", f"step {record.step_index} done: {how}", actor=actor,
                                         step=record.step_index, kind="pause"))
        return updated

    @staticmethod
    def _credit(record: RolloutRecord, verb: str, key: str = "forced_by") -> tuple[str, str]:
        """("promoted by alice (reason)", "alice") for the person whose pending decision this is."""
        who = record.carry.get(key) or {}
        actor = str(who.get("actor") or "unknown")
        reason = f" ({who['reason']})" if who.get("reason") else ""
        return f"{verb} by {actor}{reason}", actor

    def _approval(self, record: RolloutRecord, gate: str) -> tuple[str, str] | None:
        """The (how, actor) of a person's approval of ``gate`` where the rollout stands, if any."""
        approval = record.carry.get("approval")
        if not isinstance(approval, dict) or approval.get("gate") != gate:
            return None
        if gate == "approval" and approval.get("step") != record.step_index:
            return None
        if gate in ("stage-cap", "shadow") and approval.get("stage") != record.stage_index:
            return None
        return self._credit(record, "approved", key="approval")

    @staticmethod
    def _evidence(verdict: Verdict | None) -> dict[str, Any]:
        return verdict.to_evidence() if verdict is not None else {}

    # ------------------------------------------------------------------ blue/green

    def _advance_blue_green(self, record: RolloutRecord, change: _Change, now: float) -> RolloutRecord | None:
        bg = record.spec.strategy.blueGreen
        assert bg is not None
        if record.bg_phase is None:
            routes = [bg.previewHeader] if bg.previewHeader is not None else []
            updated = self._set_route(
                record, change, header_routes=routes,
                mirror_to=record.canary_version if bg.previewMirrorPercent else None,
                mirror_percent=bg.previewMirrorPercent,
            )
            updated = updated.model_copy(update={"bg_phase": "preview", "stage_started_at": now,
                                                 "step_started_at": now, "updated_at": now})
            change.events.append(self._event(updated, "step", f"preview {record.canary_version} "
                                             "(no user traffic)", kind="preview"))
            return updated
        if record.bg_phase == "preview":
            analysis = bg.previewAnalysis
            current, verdict = record, None
            if analysis is not None:
                current, verdict = self._observe(current, analysis, change, now, 100.0)
                gate_record, ready = self._gate(current, analysis, verdict, change, now, 100.0)
                if gate_record is not None:
                    return gate_record
            else:
                ready = now - (record.stage_started_at or now) >= bg.previewDuration
            forced = current.carry.get("forced_step") == -1
            if not (ready or forced):
                return current if change.events or change.windows else None
            approved = self._approval(current, "cutover")
            if not bg.autoPromote and current.approved_step != -1 and approved is None and not forced:
                if current.paused_reason is None:
                    return self._pause(current, change, "preview passed: waiting for approval to cut over",
                                       actor="engine", hold="cutover")
                return None
            if forced:
                change.decided_by = self._credit(current, "promoted")
            elif approved is not None and not bg.autoPromote:
                change.decided_by = approved
            return self._cutover(current, change, now, self._evidence(verdict), change.decided_by)
        if record.bg_phase == "promoted":
            analysis = bg.postPromotionAnalysis
            if analysis is None:
                return self._finish(record, change, Phase.SUCCEEDED, "cut over; previous version kept for "
                                    f"{format_duration(bg.rollbackWindow)} for instant rollback")
            current, verdict = self._observe(record, analysis, change, now, 100.0)
            if current.carry.get("forced_step") == -1:  # promoted during post-promotion analysis
                how, actor = self._credit(current, "promoted")
                return self._finish(current, change, Phase.SUCCEEDED, f"post-promotion analysis ended: {how}",
                                    evidence=self._evidence(verdict), actor=actor)
            gate_record, ready = self._gate(current, analysis, verdict, change, now, 100.0)
            if gate_record is not None:
                return gate_record
            if ready:
                how, actor = change.decided_by or ("passed", "engine")
                return self._finish(current, change, Phase.SUCCEEDED, f"post-promotion analysis {how}",
                                    evidence=self._evidence(verdict), actor=actor)
            return current if change.events or change.windows else None
        raise AssertionError(f"unknown blue/green phase {record.bg_phase}")

    def _cutover(self, record: RolloutRecord, change: _Change, now: float,
                 evidence: dict[str, Any], decided_by: tuple[str, str] | None = None) -> RolloutRecord:
        bg = record.spec.strategy.blueGreen
        assert bg is not None
        updated = self._set_route(record, change, canary_weight=100.0, header_routes=[], mirror_to=None,
                                  mirror_percent=0.0)
        updated = updated.model_copy(update={
            "bg_phase": "promoted", "stage_index": record.stage_index + 1, "stage_started_at": now,
            "last_verdict": None, "updated_at": now, "paused_reason": None,
            "rollback_until": now + bg.rollbackWindow,
            "carry": {k: v for k, v in record.carry.items() if k not in (*PENDING_KEYS, "hold")},
        })
        how, actor = decided_by or ("", "engine")
        change.events.append(self._event(updated, "step", f"cutover: 100% to {record.canary_version}"
                                         + (f" ({how})" if how else "")
                                         + f"; {record.stable_version} kept warm for instant rollback",
                                         actor=actor, kind="cutover", weight=100.0, evidence=evidence))
        return updated

    # ------------------------------------------------------------------ shadow

    def _advance_shadow(self, record: RolloutRecord, change: _Change, now: float) -> RolloutRecord | None:
        shadow = record.spec.strategy.shadow
        assert shadow is not None
        compares = bool({"status", "body"} & set(shadow.compare))
        if record.route.mirror_to is None and record.step_index == 0:
            if compares and shadow.analysis is None:
                record = self._close_window(record, change, now)  # counters from here on are the shadow's
            updated = self._set_route(record, change, mirror_to=record.canary_version,
                                      mirror_percent=shadow.percent)
            updated = updated.model_copy(update={"step_index": 1, "stage_started_at": now,
                                                 "step_started_at": now, "updated_at": now})
            change.events.append(self._event(updated, "step", f"mirror {shadow.percent:g}% of live traffic to "
                                             f"{record.canary_version}; users see only {record.stable_version}",
                                             kind="setMirror", mirror_percent=shadow.percent))
            return updated
        current, verdict = record, None
        ready = True
        if shadow.analysis is not None:
            current, verdict = self._observe(current, shadow.analysis, change, now, 0.0)
            if verdict is not None and verdict.action == Action.ROLLBACK:
                return self._finish(current, change, Phase.ROLLED_BACK, verdict.reason,
                                    evidence=verdict.to_evidence())
            ready = current.last_verdict == str(Action.EXPAND)
        elapsed = now - (current.stage_started_at or now)
        if elapsed < shadow.duration:
            return current if change.events or change.windows else None
        compared: Verdict | None = None
        if compares:
            # Judged before the metrics' verdict: responses that differ with confidence are enough to
            # roll back, even while the error and latency tests are still undecided.
            if shadow.analysis is None:
                current = self._close_window(current, change, now)
            windows = [w for _, w in self.store.windows(current.name, current.stage_index)]
            windows += [w for stage, w in change.windows if stage == current.stage_index]
            alpha = shadow.analysis.alpha if shadow.analysis is not None else 0.01
            compared = mismatch_verdict(windows, shadow.maxMismatchRate, alpha)
            current = self._record_decision(current, compared, change, 0.0)
            if compared.action == Action.ROLLBACK:
                return self._finish(current, change, Phase.ROLLED_BACK, compared.reason,
                                    evidence=compared.to_evidence())
        approved = self._approval(current, "shadow")
        if not ready and shadow.analysis is not None and approved is None:
            reason = f"shadow undecided after {format_duration(elapsed)}: holding for a human"
            return self._pause(current, change, reason, actor="engine", hold="shadow")
        if compared is not None and compared.action == Action.HOLD and approved is None:
            # nothing compared: never a silent pass
            return self._pause(current, change, f"shadow of {record.canary_version}: {compared.reason}; "
                               "holding for a human", actor="engine", hold="shadow")
        how, actor = approved or ("passed", "engine")
        updated = self._set_route(current, change, mirror_to=None, mirror_percent=0.0)
        return self._finish(updated, change, Phase.SUCCEEDED,
                            f"shadow of {record.canary_version} {how}; ready for a canary",
                            evidence=self._evidence(verdict), keep_route=True, actor=actor)

    # ------------------------------------------------------------------ endings

    def _promote_full(self, record: RolloutRecord, change: _Change, why: str,
                      evidence: dict[str, Any] | None = None, actor: str = "engine") -> RolloutRecord:
        updated = self._set_route(record, change, canary_weight=100.0, mirror_to=None, mirror_percent=0.0,
                                  header_routes=[])
        return self._finish(updated, change, Phase.SUCCEEDED, why, evidence=evidence, actor=actor,
                            keep_route=True)

    def _finish(self, record: RolloutRecord, change: _Change, phase: Phase, why: str,
                evidence: dict[str, Any] | None = None, actor: str = "engine",
                keep_route: bool = False) -> RolloutRecord:
        now = self.clock.now()
        updated = record
        if not keep_route and phase in (Phase.ROLLED_BACK, Phase.ABORTED):
            updated = self._set_route(record, change, canary_weight=0.0, mirror_to=None, mirror_percent=0.0,
                                      header_routes=[])
        rollback_until = record.rollback_until
        if phase == Phase.SUCCEEDED and rollback_until is None:
            window = record.spec.strategy.blueGreen.rollbackWindow if record.spec.strategy.blueGreen else 600.0
            rollback_until = now + window
        updated = updated.model_copy(update={
            "phase": phase, "finished_at": now, "updated_at": now, "paused_reason": None,
            "rollback_until": rollback_until if phase == Phase.SUCCEEDED else None,
        })
        change.events.append(self._event(updated, "phase", f"{phase}: {why}", actor=actor, phase=str(phase),
                                         evidence=evidence or {}))
        return updated

    def _pause(self, record: RolloutRecord, change: _Change, why: str, actor: str, hold: str = "human",
               carry: dict[str, Any] | None = None) -> RolloutRecord:
        """Hold the rollout; ``hold`` says what for (``APPROVAL_GATES`` are what ``approve`` answers)."""
        now = self.clock.now()
        carry = {**(record.carry if carry is None else carry), "hold": hold}
        updated = record.model_copy(update={"phase": Phase.PAUSED, "paused_reason": why, "updated_at": now,
                                            "carry": carry})
        change.events.append(self._event(updated, "phase", f"Paused: {why}", actor=actor,
                                         phase=str(Phase.PAUSED)))
        return updated

    # ------------------------------------------------------------------ manual controls

    def _apply_command(self, record: RolloutRecord, command: str, actor: str, reason: str, full: bool,
                       change: _Change) -> RolloutRecord:
        now = self.clock.now()
        why = f" ({reason})" if reason else ""
        if command == "undo":
            return self._undo(record, actor, reason, change)
        if record.phase.terminal:
            raise CommandError(f"rollout {record.name} has ended ({record.phase})")
        gate = self._refuse_unless_approvable(record) if command == "approve" else ""
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
            carry, dropped = self._drop_pending(record)
        event = self._event(record, "command", f"{command}{' --full' if full else ''} by {actor}{why}{dropped}",
                            actor=actor, command=command, reason=reason, full=full)
        change.events.append(event)
        by = {"actor": actor, "reason": reason}
        if command == "abort":
            return self._finish(record, change, Phase.ABORTED, f"aborted by {actor}{why}", actor=actor)
        if command == "pause":
            return self._pause(record, change, f"paused by {actor}{why}", actor=actor, carry=carry)
        if command == "resume":
            carry = {k: v for k, v in carry.items() if k != "hold"}
            return record.model_copy(update={"phase": Phase.PROGRESSING, "paused_reason": None, "approved_step": None,
                                             "no_data_since": None, "carry": {**carry, "cap_base": now},
                                             "updated_at": now})
        if command == "approve":
            approval = {**by, "gate": gate, "step": record.step_index, "stage": record.stage_index}
            carry = {k: v for k, v in record.carry.items() if k != "hold"}
            target = -1 if gate == "cutover" else record.step_index if gate == "approval" else record.approved_step
            return record.model_copy(update={"approved_step": target, "phase": Phase.PROGRESSING,
                                             "paused_reason": None, "updated_at": now,
                                             "carry": {**carry, "approval": approval}})
        # promote
        if full:
            return self._promote_full(record, change, f"promoted fully by {actor}{why}", actor=actor)
        forced = -1 if record.spec.strategy.kind == "blueGreen" else record.step_index
        carry = {k: v for k, v in record.carry.items() if k != "hold"}
        return record.model_copy(update={"carry": {**carry, "forced_step": forced, "forced_by": by},
                                         "phase": Phase.PROGRESSING, "paused_reason": None,
                                         "updated_at": now})

    def _undo(self, record: RolloutRecord, actor: str, reason: str, change: _Change) -> RolloutRecord:
        now = self.clock.now()
        why = f" ({reason})" if reason else ""
        if record.phase != Phase.SUCCEEDED:
            raise CommandError(f"undo needs a Succeeded rollout; {record.name} is {record.phase}")
        if record.rollback_until is None or now > record.rollback_until:
            raise CommandError("the rollback window has passed; start a new rollout instead")
        updated = self._set_route(record, change, stable=record.stable_version, canary_weight=0.0,
                                  mirror_to=None, mirror_percent=0.0, header_routes=[])
        updated = updated.model_copy(update={"phase": Phase.ROLLED_BACK, "updated_at": now,
                                             "rollback_until": None})
        change.events.append(self._event(updated, "command", f"undo by {actor}: traffic back to "
                                         f"{record.stable_version}{why}", actor=actor, command="undo",
                                         reason=reason))
        return updated

    @staticmethod
    def _drop_pending(record: RolloutRecord) -> tuple[dict[str, Any], str]:
        """The carry without a person's pending promote/approval, and words saying what was dropped."""
        carry = {k: v for k, v in record.carry.items() if k not in PENDING_KEYS}
        dropped = []
        for key, verb in (("forced_by", "promote"), ("approval", "approval")):
            who = record.carry.get(key)
            if isinstance(who, dict):
                dropped.append(f"{verb} by {who.get('actor', 'unknown')}")
        if not dropped:
            return carry, ""
        return carry, f"; pending {' and '.join(dropped)} dropped (give it again after resuming)"

    def _refuse_unless_approvable(self, record: RolloutRecord) -> str:
        """The approval gate ``record`` waits at; a ``CommandError`` saying why not when there is none."""
        hold = record.carry.get("hold")
        if record.phase == Phase.PAUSED:
            if hold is None and (record.paused_reason or "").endswith("waiting for approval"):
                hold = "approval"  # paused before holds were recorded
            elif hold is None and (record.paused_reason or "").endswith("waiting for approval to cut over"):
                hold = "cutover"
            if hold in APPROVAL_GATES:
                return str(hold)
            if hold == "no-data":
                raise CommandError(f"{record.name} is holding because {record.paused_reason}; approve answers "
                                   "only an approval gate: resume to wait for metrics again, or promote to move "
                                   "on without them")
            raise CommandError(f"{record.name} is paused ({record.paused_reason}); approve answers only an "
                               "approval gate: use resume to continue")
        gate = self._gate_ahead(record)
        if gate is None:
            raise CommandError(f"{record.name} is not waiting for approval ({record.phase}, step "
                               f"{record.step_index}); approve answers a `pause: {{untilApproved: true}}` step, a "
                               "stage cap holding for a human or a blue/green cutover approval")
        return gate

    @staticmethod
    def _gate_ahead(record: RolloutRecord) -> str | None:
        """An approval gate a progressing rollout is about to reach (approving it early is allowed)."""
        canary, bg = record.spec.strategy.canary, record.spec.strategy.blueGreen
        if record.phase != Phase.PROGRESSING:
            return None
        if canary is not None and record.step_index < len(canary.steps):
            step = canary.steps[record.step_index]
            if step.pause is not None and step.pause.untilApproved:
                return "approval"
        if bg is not None and not bg.autoPromote and record.bg_phase in (None, "preview"):
            return "cutover"
        return None
