"""The reconciler: load the record, decide at most one step, commit it with its events, apply the route.

Each ``tick`` loads the durable record, reads the clock, lets the rollout's strategy decide at most
one step, and commits the new record together with the events that explain it in one store
transaction. Because the data-plane state (``RouteState``) is declarative and applied
idempotently, a controller killed at any moment resumes from the last commit: no step is skipped,
none is logged twice, and pause timers are absolute times, so they survive restarts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from rollwise.core.carry import RouteFailure
from rollwise.core.clock import Clock
from rollwise.core.engine import commands
from rollwise.core.engine.change import Change, CommandError
from rollwise.core.engine.learning import remember, with_priors
from rollwise.core.engine.strategy import strategy_for
from rollwise.core.evidence import Evidence, PlanEvidence, dump_evidence
from rollwise.core.model import Event, Phase, RolloutRecord, RouteState
from rollwise.core.protocols import (
    ConflictError,
    Deployer,
    IncidentRecorder,
    Judge,
    MetricSource,
    Notifier,
    ReleaseHistory,
    RouteRejected,
    Store,
    TrafficRouter,
)
from rollwise.core.units import format_duration
from rollwise.spec.models import AnalysisSpec, RolloutSpec

JudgeFactory = Callable[[AnalysisSpec], Judge]


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
        releases: ReleaseHistory | None = None,
        incidents: IncidentRecorder | None = None,
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
        self.releases = releases
        self.incidents = incidents
        self._applied_route: dict[str, int] = {}
        self._judge_cache: dict[str, Judge] = {}
        self._last_seq: dict[str, int] = {}

    # ------------------------------------------------------------------ public API

    def start(
        self, spec: RolloutSpec, actor: str = "engine", commit_time: float | None = None,
        plan: PlanEvidence | None = None,
    ) -> RolloutRecord:
        """Create the rollout; ``plan`` (already applied to ``spec``) is kept as a ``plan`` event."""
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
        events = [event]
        if plan is not None:
            evidence = Evidence(rule="risk-plan", plan=plan)
            events.append(Event(rollout=spec.name, at=now, actor=actor, type="plan", message=plan.reason,
                                data={"lane": plan.lane, "score": plan.score, "evidence": dump_evidence(evidence)}))
        return self.store.create(record, events)

    def tick(self, name: str, attempts: int = 5) -> RolloutRecord:
        """Advance one rollout by at most one decision; safe to call at any rate."""
        for _ in range(attempts):
            record = self.store.get(name)
            if record.phase != Phase.PENDING:  # a pending rollout has deployed nothing to route to
                try:
                    record = self._follow_route(record)
                except ConflictError:
                    continue
            change = Change()
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
        if command not in commands.COMMANDS:
            raise CommandError(f"unknown command {command!r}; expected one of {', '.join(commands.COMMANDS)}")
        for _ in range(5):
            record = self.store.get(name)
            change = Change()
            updated = commands.apply(self, record, command, actor, reason, full, change)
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
        if _wave_groups(spec) != _wave_groups(record.spec):  # carry.waves follows them one to one
            raise CommandError("a spec update may not change the waves' names, regions or parallelism")
        now = self.clock.now()
        updated = record.model_copy(update={"spec": spec, "updated_at": now})
        change = Change()
        change.events.append(
            Event(rollout=name, at=now, actor=actor, type="spec-updated", message="spec updated",
                  data={"reason": reason})
        )
        return self._commit(updated, change, apply_route=False)

    def route_applied(self, record: RolloutRecord) -> bool:
        """Whether this engine's data plane has ``record``'s desired route (no router: trivially)."""
        return self.router is None or self._applied_route.get(record.name) == record.route.revision

    # ------------------------------------------------------------------ what strategies build records with

    def event(self, record: RolloutRecord, type_: str, message: str, actor: str = "engine",
              **data: Any) -> Event:
        return Event(rollout=record.name, at=self.clock.now(), actor=actor, type=type_, message=message,
                     data=data)

    def set_route(self, record: RolloutRecord, change: Change, **route: Any) -> RolloutRecord:
        """``record`` with its desired route changed (a new revision); applied only once committed."""
        change.route_changed = True
        updated = record.route.model_copy(update={**route, "revision": record.route.revision + 1})
        return record.model_copy(update={"route": updated})

    def judge(self, analysis: AnalysisSpec) -> Judge:
        """One judge per analysis spec, so judges may memoise per-window work across ticks."""
        key = analysis.model_dump_json()
        judge = self._judge_cache.get(key)
        if judge is None:
            if len(self._judge_cache) > 64:
                self._judge_cache.clear()
            judge = self._judge_cache[key] = self.judges(analysis)
        return judge

    # ------------------------------------------------------------------ commit and apply

    def _commit(self, record: RolloutRecord, change: Change, apply_route: bool = True) -> RolloutRecord:
        # A tick that only took a window (no event, no route, not a person's command) need not wait for
        # the disk: lost in a database crash, the next tick takes the same window again (``Store.save``).
        durable = not apply_route or bool(change.events) or change.route_changed
        saved = self.store.save(record, change.events, change.windows, durable=durable)
        if apply_route and change.route_changed:
            # The store holds the desired route and the data plane follows it, never the other way:
            # applied only once committed, a change is never undone by a crash between the two (the
            # next controller would re-apply the older, committed route) or by losing a write race.
            # If the data plane refuses, the tick fails here and every later tick retries the same
            # route in ``_reconcile_route`` before deciding anything else.
            self._follow_committed(saved)
        if self.notifier is not None and change.events:
            for event in self._numbered(saved.name, len(change.events)):
                self.notifier.notify(saved, event)
        if (self.releases is not None or self.incidents is not None) and _ended(change):
            events = self.store.events(saved.name)
            if self.releases is not None:
                remember(self.releases, saved, events)
            if self.incidents is not None:  # a rollback's signature for similar-incident search
                self.incidents.rollout_ended(saved, events)
        return saved

    def _numbered(self, name: str, count: int) -> list[Event]:
        """The last ``count`` events as stored, with the sequence numbers the store gave them."""
        since = self._last_seq.get(name)
        events = self.store.events(name, since or 0)
        if events:
            self._last_seq[name] = events[-1].seq
        return events[-count:]

    def _follow_route(self, record: RolloutRecord) -> RolloutRecord:
        """Bring the data plane to the record's route; a refusal becomes the rollout's ``route_error``.

        The refusal is kept on the record (one event per distinct message, one when the data plane
        follows again), so ``status``, ``explain`` and the dashboard say why the rollout is stuck, not
        only a controller's log. The tick then stops; the next one retries the same route first.
        """
        self._reconcile_route(record)
        failed = record.carry.route_error
        if failed is None:
            return record
        now = self.clock.now()
        change = Change()
        change.events.append(self.event(record, "route-recovered", "the data plane follows the route again after "
                                        f"{format_duration(now - failed.since)} of refusals", error=failed.message))
        updated = record.model_copy(update={"carry": record.carry.but(route_error=None), "updated_at": now})
        return self._commit(updated, change, apply_route=False)

    def _keep_route_error(self, record: RolloutRecord, message: str) -> None:
        current = record.carry.route_error
        if current is not None and current.message == message:
            return
        now = self.clock.now()
        revision = record.route.revision
        failed = RouteFailure(message=message, since=now, revision=revision)
        change = Change()
        change.events.append(self.event(record, "route-error", f"the data plane refused route revision {revision}: "
                                        f"{message}", error=message, revision=revision))
        updated = record.model_copy(update={"carry": record.carry.but(route_error=failed), "updated_at": now})
        with contextlib.suppress(ConflictError):  # someone moved it: the next tick finds out again
            self._commit(updated, change, apply_route=False)

    def _reconcile_route(self, record: RolloutRecord) -> None:
        if self._applied_route.get(record.name) != record.route.revision:
            self._follow_committed(record)

    def _follow_committed(self, record: RolloutRecord) -> None:
        try:
            self._apply_route(record)
        except RouteRejected as exc:
            self._keep_route_error(record, " ".join(str(exc).split()) or type(exc).__name__)
            raise

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

    # ------------------------------------------------------------------ the reconciler

    def _advance(self, record: RolloutRecord, change: Change) -> RolloutRecord | None:
        now = self.clock.now()
        if record.phase == Phase.PENDING:
            return self._begin(record, change, now)
        if record.phase.terminal:
            return self._retire(record, change, now)
        if record.phase == Phase.PAUSED:
            return None
        return strategy_for(record.spec.strategy.kind).advance(self, record, change, now)

    def _begin(self, record: RolloutRecord, change: Change, now: float) -> RolloutRecord:
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
        updated = with_priors(self, self.set_route(record, change, **route), change)
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
            self.event(updated, "phase", f"{spec.versions.canary.name} deployed; rollout progressing",
                       phase=str(Phase.PROGRESSING), upstreams=upstreams)
        )
        return updated

    def _retire(self, record: RolloutRecord, change: Change, now: float) -> RolloutRecord | None:
        """Stop versions no longer routed to, once their rollback window has passed."""
        if self.deployer is None:
            return None
        stopped = set(record.carry.stopped)
        if record.rollback_until is not None and now < record.rollback_until:
            return None
        routed = {record.route.stable, *( [record.route.canary] if record.route.canary_weight > 0 else [])}
        to_stop = [
            ref for ref in (record.spec.versions.stable, record.spec.versions.canary)
            if ref.name not in routed and ref.name not in stopped
        ]
        if not to_stop:
            if record.carry.retired:
                return None
            # Nothing left to stop: say so in the record, so runners stop waking for it (``retire_at``).
            return record.model_copy(update={"carry": record.carry.but(retired=True)})
        for ref in to_stop:
            self.deployer.stop(record.name, ref)
            stopped.add(ref.name)
        upstreams = {k: v for k, v in record.route.upstreams.items() if k not in stopped}
        updated = self.set_route(record, change, upstreams=upstreams)
        updated = updated.model_copy(update={"carry": record.carry.but(stopped=sorted(stopped), retired=True)})
        change.events.append(self.event(updated, "retired", "stopped " + ", ".join(r.name for r in to_stop)))
        return updated


def _wave_groups(spec: RolloutSpec) -> list[tuple[str, list[list[str]]]]:
    canary = spec.strategy.canary
    return [(w.name, w.batches()) for w in (canary.waves or [])] if canary is not None else []


def _ended(change: Change) -> bool:
    """Whether this change ends the rollout (its ``phase`` event names a terminal phase)."""
    return any(e.type == "phase" and e.data.get("phase") in {str(p) for p in Phase if p.terminal}
               for e in change.events)
