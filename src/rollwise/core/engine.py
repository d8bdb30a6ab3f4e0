"""The rollout engine: spec -> engine -> actions; observations -> judge -> verdict -> engine.

The engine is a reconciler. Each ``tick`` loads the durable record, reads the clock, maybe
collects one observation window and asks the judge, then decides at most one step and commits
the new record together with the events that explain it in one store transaction. Because the
data-plane state (``RouteState``) is declarative and applied idempotently, a controller killed
at any moment resumes from the last commit: no step is skipped, none is logged twice, and pause
timers are absolute times, so they survive restarts.
"""

from __future__ import annotations

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
    MetricSource,
    Notifier,
    Store,
    TrafficRouter,
)
from rollwise.core.units import format_duration
from rollwise.spec.models import AnalysisSpec, RolloutSpec

JudgeFactory = Callable[[AnalysisSpec], Judge]

COMMANDS = ("promote", "pause", "resume", "abort", "approve", "undo")


class CommandError(Exception):
    """A manual control that does not apply to the rollout's current state."""


@dataclass
class _Change:
    """What one tick or command wants to commit, and what must happen after the commit."""

    events: list[Event] = field(default_factory=list)
    windows: list[tuple[int, Window]] = field(default_factory=list)
    route_changed: bool = False


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
        record = self._with_history(record, analysis)
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
            updated = self._record_decision(updated, verdict, change, canary_weight)
        return updated, verdict

    def _with_history(self, record: RolloutRecord, analysis: AnalysisSpec) -> RolloutRecord:
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
        try:
            stats = self.metrics.baseline_history(query)
        except Exception:  # no history is no prior, not an error
            stats = None
        history = {"start": query.start, "end": end, "baseline": stats.to_dict() if stats is not None else None}
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
        except Exception:  # a metrics outage is "unknown", never "bad"
            return Window(start=start, end=end, baseline=None, canary=None, cursor=record.cursor)
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
        self, record: RolloutRecord, verdict: Verdict, change: _Change, canary_weight: float
    ) -> RolloutRecord:
        index = record.decisions + 1
        change.events.append(
            self._event(
                record,
                "decision",
                verdict.reason,
                index=index,
                action=str(verdict.action),
                rule=verdict.rule,
                culprit=verdict.culprit,
                stage=record.stage_index,
                weight=canary_weight,
                evidence=verdict.to_evidence(),
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
        if record.no_data_since is not None and now - record.no_data_since >= analysis.noDataLimit:
            silent = format_duration(now - record.no_data_since)
            if analysis.onNoData == "abort":
                return self._finish(record, change, Phase.ABORTED,
                                    f"no metrics for {silent} (onNoData: abort)"), False
            return self._pause(record, change, f"no metrics for {silent}: waiting for a human "
                               "(onNoData: hold)", actor="engine"), False
        cap_base = float(record.carry.get("cap_base", stage_start))
        if last == str(Action.INCONCLUSIVE) or now - cap_base >= analysis.maxStageTime:
            reason = (f"stage {record.stage_index} undecided after {format_duration(now - stage_start)} "
                      f"(cap {format_duration(analysis.maxStageTime)})")
            if analysis.onInconclusive == "rollback":
                return self._finish(record, change, Phase.ROLLED_BACK, reason + ": rolling back"), False
            if analysis.onInconclusive == "promote":
                return None, True
            return self._pause(record, change, reason + ": holding for a human", actor="engine"), False
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
        if verdict is not None and isinstance(verdict.evidence.get("carry"), dict):
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
        carry = {k: v for k, v in record.carry.items() if k != "cap_base"}
        if verdict is not None and isinstance(verdict.evidence.get("carry"), dict):
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
        ready = True
        if judged and not forced:
            gate_record, ready = self._gate(current, analysis, verdict, change, now, weight)
            if gate_record is not None:
                return gate_record

        if step is None:  # every step done: full promotion
            if not ready:
                return current if change.events or change.windows else None
            return self._promote_full(current, change, "all steps passed", evidence=self._evidence(verdict))

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
            change.events.append(self._event(
                updated, "step", f"weight {weight:g}% -> {target:g}% ({current.spec.versions.canary.name})",
                step=current.step_index, kind=kind, weight=target, previous_weight=weight,
                evidence=self._evidence(verdict),
            ))
            return updated
        if kind == "pause":
            assert step.pause is not None
            if step.pause.untilApproved:
                if current.approved_step == current.step_index or forced:
                    return self._step_done(current, change, now, "approved")
                if current.paused_reason is None:
                    return self._pause(current, change, f"step {current.step_index}: waiting for approval",
                                       actor="engine")
                return current if change.events or change.windows else None
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

    def _next_step(self, record: RolloutRecord, now: float, **extra: Any) -> RolloutRecord:
        carry = {k: v for k, v in (extra.pop("carry", record.carry)).items() if k != "forced_step"}
        return record.model_copy(update={
            "step_index": record.step_index + 1, "step_started_at": now, "updated_at": now,
            "paused_reason": None, "carry": carry, **extra,
        })

    def _step_done(self, record: RolloutRecord, change: _Change, now: float, how: str) -> RolloutRecord:
        updated = self._next_step(record, now)
        change.events.append(self._event(updated, "step", f"step {record.step_index} done: {how}",
                                         step=record.step_index, kind="pause"))
        return updated

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
            if not bg.autoPromote and current.approved_step != -1 and not forced:
                if current.paused_reason is None:
                    return self._pause(current, change, "preview passed: waiting for approval to cut over",
                                       actor="engine")
                return None
            return self._cutover(current, change, now, self._evidence(verdict))
        if record.bg_phase == "promoted":
            analysis = bg.postPromotionAnalysis
            if analysis is None:
                return self._finish(record, change, Phase.SUCCEEDED, "cut over; previous version kept for "
                                    f"{format_duration(bg.rollbackWindow)} for instant rollback")
            current, verdict = self._observe(record, analysis, change, now, 100.0)
            gate_record, ready = self._gate(current, analysis, verdict, change, now, 100.0)
            if gate_record is not None:
                return gate_record
            if ready:
                return self._finish(current, change, Phase.SUCCEEDED, "post-promotion analysis passed",
                                    evidence=self._evidence(verdict))
            return current if change.events or change.windows else None
        raise AssertionError(f"unknown blue/green phase {record.bg_phase}")

    def _cutover(self, record: RolloutRecord, change: _Change, now: float,
                 evidence: dict[str, Any]) -> RolloutRecord:
        bg = record.spec.strategy.blueGreen
        assert bg is not None
        updated = self._set_route(record, change, canary_weight=100.0, header_routes=[], mirror_to=None,
                                  mirror_percent=0.0)
        updated = updated.model_copy(update={
            "bg_phase": "promoted", "stage_index": record.stage_index + 1, "stage_started_at": now,
            "last_verdict": None, "updated_at": now, "paused_reason": None,
            "rollback_until": now + bg.rollbackWindow,
            "carry": {k: v for k, v in record.carry.items() if k != "forced_step"},
        })
        change.events.append(self._event(updated, "step", f"cutover: 100% to {record.canary_version}; "
                                         f"{record.stable_version} kept warm for instant rollback",
                                         kind="cutover", weight=100.0, evidence=evidence))
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
        if not ready and shadow.analysis is not None:
            reason = f"shadow undecided after {format_duration(elapsed)}: holding for a human"
            return self._pause(current, change, reason, actor="engine")
        if compared is not None and compared.action == Action.HOLD:  # nothing compared: never a silent pass
            return self._pause(current, change, f"shadow of {record.canary_version}: {compared.reason}; "
                               "holding for a human", actor="engine")
        updated = self._set_route(current, change, mirror_to=None, mirror_percent=0.0)
        return self._finish(updated, change, Phase.SUCCEEDED,
                            f"shadow of {record.canary_version} passed; ready for a canary",
                            evidence=self._evidence(verdict), keep_route=True)

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

    def _pause(self, record: RolloutRecord, change: _Change, why: str, actor: str) -> RolloutRecord:
        now = self.clock.now()
        updated = record.model_copy(update={"phase": Phase.PAUSED, "paused_reason": why, "updated_at": now})
        change.events.append(self._event(updated, "phase", f"Paused: {why}", actor=actor,
                                         phase=str(Phase.PAUSED)))
        return updated

    # ------------------------------------------------------------------ manual controls

    def _apply_command(self, record: RolloutRecord, command: str, actor: str, reason: str, full: bool,
                       change: _Change) -> RolloutRecord:
        now = self.clock.now()
        why = f" ({reason})" if reason else ""
        if command == "undo":
            if record.phase != Phase.SUCCEEDED:
                raise CommandError(f"undo needs a Succeeded rollout; {record.name} is {record.phase}")
            if record.rollback_until is None or now > record.rollback_until:
                raise CommandError("the rollback window has passed; start a new rollout instead")
            updated = self._set_route(record, change, stable=record.stable_version, canary_weight=0.0,
                                      mirror_to=None, mirror_percent=0.0, header_routes=[])
            updated = updated.model_copy(update={"phase": Phase.ROLLED_BACK, "updated_at": now,
                                                 "rollback_until": None})
            change.events.append(self._event(updated, "command", f"undo by {actor}: traffic back to "
                                             f"{record.stable_version}{why}", actor=actor, command=command,
                                             reason=reason))
            return updated
        if record.phase.terminal:
            raise CommandError(f"rollout {record.name} has ended ({record.phase})")
        event = self._event(record, "command", f"{command}{' --full' if full else ''} by {actor}{why}",
                            actor=actor, command=command, reason=reason, full=full)
        change.events.append(event)
        if command == "abort":
            return self._finish(record, change, Phase.ABORTED, f"aborted by {actor}{why}", actor=actor)
        if command == "pause":
            if record.phase == Phase.PAUSED:
                raise CommandError(f"{record.name} is already paused")
            return self._pause(record, change, f"paused by {actor}{why}", actor=actor)
        if command == "resume":
            if record.phase != Phase.PAUSED:
                raise CommandError(f"{record.name} is not paused")
            carry = {**record.carry, "cap_base": now}
            return record.model_copy(update={"phase": Phase.PROGRESSING, "paused_reason": None,
                                             "no_data_since": None, "carry": carry, "updated_at": now})
        if command == "approve":
            target = -1 if record.spec.strategy.kind == "blueGreen" else record.step_index
            return record.model_copy(update={"approved_step": target, "phase": Phase.PROGRESSING,
                                             "paused_reason": None, "updated_at": now})
        # promote
        if full:
            if record.spec.strategy.kind == "shadow":
                raise CommandError("a shadow run sends no user traffic; start a canary to release it")
            return self._promote_full(record, change, f"promoted fully by {actor}{why}", actor=actor)
        forced = -1 if record.spec.strategy.kind == "blueGreen" else record.step_index
        return record.model_copy(update={"carry": {**record.carry, "forced_step": forced},
                                         "phase": Phase.PROGRESSING, "paused_reason": None,
                                         "updated_at": now})
