"""The watch runner: every watched service's metrics, point by point, through the detector; an incident
when an anomaly is confirmed, its culprit named by attribution, and the policy's actions taken.

A service is watched when its latest rollout's spec has a ``watch:`` block; its metrics come from the
same source the judge reads for that rollout (``metrics_for``, built by ``wiring``), one window per
``watch.interval``, summed over the versions that served traffic. What the watch keeps is bounded: one
detector per (service, metric) and the last ``watch.history`` seconds of points. Everything it does goes
through ``WatchStore`` (incidents, the change log), ``Actuator`` (undo, kill a flag, notify) and the
audit log, so it runs the same in ``rollwise serve``, ``rollwise controller`` and ``rollwise watch``.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from rollwise.core.clock import Clock
from rollwise.core.model import RolloutHead, RolloutRecord, VersionStats, Window, WindowQuery
from rollwise.core.protocols import (
    AuditLog,
    IncidentRecorder,
    MetricsError,
    MetricSource,
    RolloutHeads,
    Store,
    WatchStore,
)
from rollwise.spec.models import WatchSpec
from rollwise.watch.attribution import Attribution, attribute, estimate_onset
from rollwise.watch.detector import ALARM_SCORE, DetectorConfig, Direction, SeriesDetector
from rollwise.watch.incidents import OPEN, Action, Incident, IncidentAlreadyOpen
from rollwise.watch.policy import Planned, plan_actions
from rollwise.watch.series import (
    ProcessReader,
    ScalarQuery,
    floor,
    process_values,
    render_query,
    traffic_values,
    watched,
)

log = logging.getLogger(__name__)
WATCH_ACTOR = "rollwise-watch"
CHART_POINTS = 240
WINDOW_LAG_S = 2.0
"""A point's window ends this long before now: backends that lag the traffic (Envoy's stats flush,
Prometheus' scrape) have settled by then, so reading it never waits and never blocks the rollouts
ticked by the same loop."""


Owned = Callable[[list[str]], set[str]]
"""Given the watched services, the ones this process may watch now (a lease per service, ``Leases.claim_watch``)."""


class Actuator(Protocol):
    """What the watch may do to the world; each method raises on failure (the incident records it)."""

    def undo(self, rollout: str, reason: str) -> str: ...

    def kill_flag(self, flag: str, reason: str) -> str: ...

    def notify(self, record: RolloutRecord, incident: Incident, message: str) -> None: ...


#: The watch's detectors learn a service for 20 points (about 3 minutes at a 10 s interval) before they may
#: alarm, not the detector's default 60: a watch starts beside a release, and a release that fails minutes
#: after 100 % must not fall in the warm-up. The material-move floors (``series.FLOORS``) keep the early points
#: honest.
WATCH_DETECTOR = DetectorConfig(warmup=20)


@dataclass
class _Target:
    record: RolloutRecord
    policy: WatchSpec
    detectors: dict[str, SeriesDetector] = field(default_factory=dict)
    points: dict[str, deque[tuple[float, float]]] = field(default_factory=dict)
    streak: dict[str, int] = field(default_factory=dict)
    splits: deque[tuple[float, dict[str, tuple[float, float]]]] = field(default_factory=deque)
    directions: dict[str, Direction] = field(default_factory=dict)
    cpu_last: dict[str, tuple[float, float]] = field(default_factory=dict)
    cursor: dict[str, Any] | None = None
    last_end: float | None = None
    quiet: int = 0
    incident: Incident | None = None

    def reset(self) -> None:
        self.directions = watched(self.record.spec)
        self.detectors = {m: SeriesDetector(WATCH_DETECTOR, direction=d) for m, d in self.directions.items()}
        self.streak = dict.fromkeys(self.directions, 0)


class Watch:
    def __init__(self, store: Store, watch: WatchStore, metrics_for: Callable[[RolloutRecord], MetricSource | None],
                 actuator: Actuator, clock: Clock, audit: AuditLog | None = None, *,
                 processes: ProcessReader | None = None,
                 prometheus_for: Callable[[RolloutRecord], ScalarQuery | None] | None = None,
                 incidents: IncidentRecorder | None = None) -> None:
        """``processes`` reads the CPU and memory of the versions rollwise runs (``cpu``, ``memory``);
        ``prometheus_for`` answers the spec's ``watch.series`` queries; ``incidents`` keeps each resolved
        incident's signature for similar-incident search."""
        self.store, self.watch, self.metrics_for = store, watch, metrics_for
        self.processes, self.prometheus_for = processes, prometheus_for
        self.actuator, self.clock, self.audit = actuator, clock, audit
        self.incidents = incidents
        self.targets: dict[str, _Target] = {}

    def refresh(self, owned: Owned | None = None) -> None:
        """Watch each service's latest rollout that has a ``watch:`` block (a new rollout starts afresh).

        With ``owned`` (several processes on one store), only the services it grants this process: a
        service handed to another process is dropped here, with its detectors, and one granted again later
        starts afresh and adopts the incident its last watcher left open, so no two processes ever score
        the same service or open an incident for it twice."""
        latest: dict[str, RolloutHead] = {}
        for head in self._heads():
            current = latest.get(head.service)
            if current is None or head.created_at > current.created_at:
                latest[head.service] = head
        watched = {service: head for service, head in latest.items() if head.watched}
        mine = set(watched) if owned is None else owned(sorted(watched))
        for service in [s for s in self.targets if s not in watched or s not in mine]:
            del self.targets[service]
        for service, head in watched.items():
            if service not in mine:
                continue
            target = self.targets.get(service)
            if target is not None and (target.record.name, target.record.revision) == (head.name, head.revision):
                continue  # unchanged since the last pass: not loaded again
            record = self.store.get(head.name)
            if record.spec.watch is None:
                continue
            if target is None or (target.record.name, target.record.created_at) != (record.name, record.created_at):
                target = self.targets[service] = _Target(record, record.spec.watch)
                target.reset()
                open_now = self.watch.incidents(service=service, open_only=True)
                target.incident = open_now[-1] if open_now else None
            target.record = record

    def _heads(self) -> list[RolloutHead]:
        """Every rollout's head: from the store's columns when it can (``RolloutHeads``), else from the records."""
        if isinstance(self.store, RolloutHeads):
            return self.store.heads()
        return [RolloutHead(r.name, r.spec.service, r.created_at, r.revision, r.spec.watch is not None)
                for r in self.store.list()]

    def tick(self, owned: Owned | None = None) -> list[Incident]:
        """Take every point that is due (of the services ``owned`` grants, see ``refresh``); returns the
        incidents opened or resolved in this pass."""
        self.refresh(owned)
        changed: list[Incident] = []
        now = self.clock.now()
        for target in list(self.targets.values()):
            if target.last_end is not None and now - target.last_end < target.policy.interval:
                continue
            try:
                incident = self._observe(target, now)
            except MetricsError as exc:
                log.warning("watch: %s: %s", target.record.spec.service, exc)
                continue
            if incident is not None:
                changed.append(incident)
        return changed

    def _observe(self, target: _Target, now: float) -> Incident | None:
        source = self.metrics_for(target.record)
        record = target.record
        end = now - WINDOW_LAG_S
        start = target.last_end if target.last_end is not None else end - target.policy.interval
        sides: dict[str, VersionStats] = {}
        values: dict[str, float] = {}
        if source is not None:  # without one (no router to read), the processes and Prometheus still count
            window = source.collect(WindowQuery(rollout=record.name, service=record.spec.service,
                                                baseline_version=record.stable_version,
                                                canary_version=record.canary_version, start=start, end=end,
                                                cursor=target.cursor))
            target.cursor = window.cursor
            sides = _sides(record, window)
            values = traffic_values(record.spec, list(sides.values()), end - start)
        target.last_end = end
        values.update(self._gauges(target, start, end))
        return self._score(target, now, sides, values)

    def _gauges(self, target: _Target, start: float, end: float) -> dict[str, float]:
        """The processes' CPU and memory and the spec's Prometheus series at the point's end."""
        record, values = target.record, {}
        if self.processes is not None and ("cpu" in target.directions or "memory" in target.directions):
            values.update(process_values(record, self.processes, target.cpu_last, end))
        series = [s for s in target.policy.series if s.name in target.directions]
        prometheus = self.prometheus_for(record) if series and self.prometheus_for is not None else None
        if prometheus is None:
            return values
        for entry in series:
            value = prometheus.scalar(render_query(entry.query, record, end - start), end)
            if value is not None:
                values[entry.name] = value
        return values

    def _score(self, target: _Target, now: float, sides: dict[str, VersionStats],
               values: dict[str, float]) -> Incident | None:
        if not any(metric in values for metric in target.directions):
            return None  # nothing watched was measured (too few requests, no process): not a point, not quiet
        if "errorRate" in values:
            target.splits.append((now, {v: (float(s.errors), float(s.requests)) for v, s in sides.items()}))
        while target.splits and target.splits[0][0] < now - target.policy.history:
            target.splits.popleft()
        alarming: list[str] = []
        for metric, direction in target.directions.items():
            value = values.get(metric)
            if value is None:
                continue
            score = target.detectors[metric].score(now, value)
            points = target.points.setdefault(metric, deque())
            alarm = score >= ALARM_SCORE and floor(metric).material(list(points), value, direction)
            points.append((now, value))
            while points and points[0][0] < now - target.policy.history:
                points.popleft()
            target.streak[metric] = target.streak[metric] + 1 if alarm else 0
            if target.streak[metric] >= target.policy.confirm:
                alarming.append(metric)
        if target.incident is not None:
            return self._maybe_resolve(target, now, bool(alarming))
        if alarming:
            return self._open(target, alarming[0], now)
        return None

    def _maybe_resolve(self, target: _Target, now: float, alarming: bool) -> Incident | None:
        assert target.incident is not None
        target.quiet = 0 if alarming else target.quiet + 1
        if target.quiet < target.policy.resolveAfter:
            return None
        stored = self.watch.incident(target.incident.id)
        if stored is not None and stored.status != OPEN:  # another watcher resolved it: keep it resolved once
            target.incident, target.quiet = None, 0
            target.reset()
            return None
        resolved = target.incident.resolved(now)
        self.watch.save_incident(resolved)
        self._audit("watch.resolve", resolved, {"recovery_s": resolved.recovery_s})
        if self.incidents is not None:
            self.incidents.incident_resolved(resolved)
        target.incident, target.quiet = None, 0
        target.reset()  # the detectors learnt the anomaly's level: start them again from normal
        return resolved

    def _open(self, target: _Target, metric: str, now: float) -> Incident | None:
        record, policy = target.record, target.policy
        points = list(target.points[metric])
        changes = self.watch.changes(service=record.spec.service, since=now - 6 * 3600.0, until=now)
        attribution = attribute(points, changes, service=record.spec.service, depends_on=policy.dependsOn,
                                region=record.spec.region, flags=policy.flags,
                                split=self._split(target, points) if metric == "errorRate" else None)
        onset = attribution.onset.at if attribution.onset else points[-1][0]
        try:
            incident = self.watch.open_incident(Incident(
                service=record.spec.service, opened_at=now, onset=onset, metric=metric, region=record.spec.region,
                culprit=attribution.culprit.to_json() if attribution.culprit else None,
                attribution=attribution.to_json(), series=tuple(points[-CHART_POINTS:])))
        except IncidentAlreadyOpen as taken:  # another watcher opened it first: adopt it, act no second time
            target.incident, target.quiet = taken.incident, 0
            return None
        self._audit("watch.incident", incident, {"metric": metric, "attribution": attribution.to_json()})
        for planned in plan_actions(attribution, policy):
            incident = incident.with_action(self._act(planned, record, incident, attribution, now))
        self.watch.save_incident(incident)
        target.incident, target.quiet = incident, 0
        return incident

    def _split(self, target: _Target, points: list[tuple[float, float]]) -> dict[str, tuple[float, float]]:
        onset = estimate_onset(points)
        since = onset.at if onset else points[-1][0]
        totals: dict[str, tuple[float, float]] = {}
        for at, split in target.splits:
            if at >= since:
                for version, (bad, total) in split.items():
                    old = totals.get(version, (0.0, 0.0))
                    totals[version] = (old[0] + bad, old[1] + total)
        return totals

    def _act(self, planned: Planned, record: RolloutRecord, incident: Incident, attribution: Attribution,
             now: float) -> Action:
        culprit = attribution.culprit
        reason = (f"incident #{incident.id} on {incident.service}: {incident.metric} anomalous since onset; "
                  f"culprit {culprit.id if culprit else 'none'} ({planned.rule})")
        if not planned.allowed:
            return Action(now, planned.kind, planned.target, "skipped", planned.rule)
        try:
            if planned.kind == "notify":
                self.actuator.notify(record, incident, reason)
                detail = "notified"
            elif planned.kind == "undo":
                detail = self.actuator.undo(planned.target.removeprefix("rollout:"), reason)
            else:
                detail = self.actuator.kill_flag(planned.target.removeprefix("flag:"), reason)
            outcome = "done"
        except Exception as exc:  # the incident records a failed action; the watch goes on
            outcome, detail = "failed", " ".join(str(exc).split())[:300]
        action = Action(now, planned.kind, planned.target, outcome, planned.rule, detail)
        self._audit(f"watch.{planned.kind}", incident, {"action": action.to_json(),
                                                        "attribution": attribution.to_json()})
        return action

    def _audit(self, action: str, incident: Incident, evidence: dict[str, Any]) -> None:
        if self.audit is not None:
            self.audit.append(actor=WATCH_ACTOR, role="watch", action=action, target=f"incident:{incident.id}",
                              after={"service": incident.service, **evidence}, reason=None)


def _sides(record: RolloutRecord, window: Window) -> dict[str, VersionStats]:
    sides = {}
    if window.baseline is not None and window.baseline.requests:
        sides[record.stable_version] = window.baseline
    if window.canary is not None and window.canary.requests:
        sides[record.canary_version] = window.canary
    return sides


def without_series(incident: Incident) -> Incident:
    """The incident without its chart points (for short listings)."""
    return replace(incident, series=())
