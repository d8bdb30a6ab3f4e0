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
import statistics
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from rollwise.core.clock import Clock
from rollwise.core.model import RolloutRecord, VersionStats, Window, WindowQuery
from rollwise.core.protocols import AuditLog, MetricsError, MetricSource, Store, WatchStore
from rollwise.spec.models import WatchSpec
from rollwise.watch.attribution import Attribution, attribute, estimate_onset
from rollwise.watch.detector import ALARM_SCORE, DetectorConfig, SeriesDetector
from rollwise.watch.incidents import Action, Incident
from rollwise.watch.policy import Planned, plan_actions

log = logging.getLogger(__name__)
WATCH_ACTOR = "rollwise-watch"
CHART_POINTS = 240
WINDOW_LAG_S = 2.0
"""A point's window ends this long before now: backends that lag the traffic (Envoy's stats flush,
Prometheus' scrape) have settled by then, so reading it never waits and never blocks the rollouts
ticked by the same loop."""


class Actuator(Protocol):
    """What the watch may do to the world; each method raises on failure (the incident records it)."""

    def undo(self, rollout: str, reason: str) -> str: ...

    def kill_flag(self, flag: str, reason: str) -> str: ...

    def notify(self, record: RolloutRecord, incident: Incident, message: str) -> None: ...


def error_rate(stats: list[VersionStats]) -> float | None:
    requests = sum(s.requests for s in stats)
    return sum(s.errors for s in stats) / requests if requests else None


def latency_mean(stats: list[VersionStats]) -> float | None:
    requests = sum(s.requests for s in stats)
    return sum(s.latency_sum_ms for s in stats) / requests if requests else None


FLOORS = {"errorRate": 0.003, "latencyMean": 2.0}
#: The watch's detectors learn a service for 20 points (about 3 minutes at a 10 s interval) before they may
#: alarm, not the detector's default 60: a watch starts beside a release, and a release that fails minutes
#: after 100 % must not fall in the warm-up. The material-rise floors above keep the early points honest.
WATCH_DETECTOR = DetectorConfig(warmup=20)
"""The smallest rise over the recent median that counts as an anomaly (0.3 pp of errors, 2 ms), whatever the
detector's score: a quiet service whose error rate sits at 0 would otherwise call its first stray 500 one."""
RECENT = 30


def material(recent: Sequence[tuple[float, float]], value: float, floor: float) -> bool:
    """Whether ``value`` is at least ``floor`` above the median of the ``recent`` points before it."""
    if not recent:
        return True
    return value - statistics.median(v for _, v in recent[-RECENT:]) >= floor

METRICS: dict[str, Callable[[list[VersionStats]], float | None]] = {"errorRate": error_rate,
                                                                    "latencyMean": latency_mean}


@dataclass
class _Target:
    record: RolloutRecord
    policy: WatchSpec
    detectors: dict[str, SeriesDetector] = field(default_factory=dict)
    points: dict[str, deque[tuple[float, float]]] = field(default_factory=dict)
    streak: dict[str, int] = field(default_factory=dict)
    splits: deque[tuple[float, dict[str, tuple[float, float]]]] = field(default_factory=deque)
    cursor: dict[str, Any] | None = None
    last_end: float | None = None
    quiet: int = 0
    incident: Incident | None = None

    def reset(self) -> None:
        self.detectors = {m: SeriesDetector(WATCH_DETECTOR, direction="up") for m in self.policy.metrics}
        self.streak = dict.fromkeys(self.policy.metrics, 0)


class Watch:
    def __init__(self, store: Store, watch: WatchStore, metrics_for: Callable[[RolloutRecord], MetricSource | None],
                 actuator: Actuator, clock: Clock, audit: AuditLog | None = None) -> None:
        self.store, self.watch, self.metrics_for = store, watch, metrics_for
        self.actuator, self.clock, self.audit = actuator, clock, audit
        self.targets: dict[str, _Target] = {}

    def refresh(self) -> None:
        """Watch each service's latest rollout that has a ``watch:`` block (a new rollout starts afresh)."""
        latest: dict[str, RolloutRecord] = {}
        for record in self.store.list():
            current = latest.get(record.spec.service)
            if current is None or record.created_at > current.created_at:
                latest[record.spec.service] = record
        for service, record in latest.items():
            if record.spec.watch is None:
                self.targets.pop(service, None)
                continue
            target = self.targets.get(service)
            if target is None or (target.record.name, target.record.created_at) != (record.name, record.created_at):
                target = self.targets[service] = _Target(record, record.spec.watch)
                target.reset()
                open_now = self.watch.incidents(service=service, open_only=True)
                target.incident = open_now[-1] if open_now else None
            target.record = record

    def tick(self) -> list[Incident]:
        """Take every point that is due; returns the incidents opened or resolved in this pass."""
        self.refresh()
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
        if source is None:
            return None
        record = target.record
        end = now - WINDOW_LAG_S
        start = target.last_end if target.last_end is not None else end - target.policy.interval
        window = source.collect(WindowQuery(rollout=record.name, service=record.spec.service,
                                            baseline_version=record.stable_version,
                                            canary_version=record.canary_version, start=start, end=end,
                                            cursor=target.cursor))
        target.cursor, target.last_end = window.cursor, end
        sides = _sides(record, window)
        if sum(s.requests for s in sides.values()) < target.policy.minRequests:
            return None
        return self._score(target, now, sides)

    def _score(self, target: _Target, now: float, sides: dict[str, VersionStats]) -> Incident | None:
        target.splits.append((now, {v: (float(s.errors), float(s.requests)) for v, s in sides.items()}))
        while target.splits and target.splits[0][0] < now - target.policy.history:
            target.splits.popleft()
        alarming: list[str] = []
        for metric in target.policy.metrics:
            value = METRICS[metric](list(sides.values()))
            if value is None:
                continue
            score = target.detectors[metric].score(now, value)
            points = target.points.setdefault(metric, deque())
            alarm = score >= ALARM_SCORE and material(list(points)[-RECENT:], value, FLOORS[metric])
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
        resolved = target.incident.resolved(now)
        self.watch.save_incident(resolved)
        self._audit("watch.resolve", resolved, {"recovery_s": resolved.recovery_s})
        target.incident, target.quiet = None, 0
        target.reset()  # the detectors learnt the anomaly's level: start them again from normal
        return resolved

    def _open(self, target: _Target, metric: str, now: float) -> Incident:
        record, policy = target.record, target.policy
        points = list(target.points[metric])
        changes = self.watch.changes(service=record.spec.service, since=now - 6 * 3600.0, until=now)
        attribution = attribute(points, changes, service=record.spec.service, depends_on=policy.dependsOn,
                                region=record.spec.region, flags=policy.flags,
                                split=self._split(target, points) if metric == "errorRate" else None)
        onset = attribution.onset.at if attribution.onset else points[-1][0]
        incident = self.watch.open_incident(Incident(
            service=record.spec.service, opened_at=now, onset=onset, metric=metric, region=record.spec.region,
            culprit=attribution.culprit.to_json() if attribution.culprit else None,
            attribution=attribution.to_json(), series=tuple(points[-CHART_POINTS:])))
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
