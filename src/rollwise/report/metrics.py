"""Software-delivery metrics from rollwise's own history, beside DORA's performance bands.

Everything is computed from the append-only event log, so re-created rollouts (the same name
released again) count once per run. A *run* starts at a ``created`` event and ends at its first
terminal ``phase`` event (Succeeded, RolledBack, Aborted) or at an ``undo`` command, which turns a
success into a rollback. A run belongs to the window ``[now - since_s, now]`` when it *ended* in
it. Definitions:

* **Deployment frequency**: successful runs (``Succeeded`` and not undone) per day over the window
  (DORA counts successful releases). Without ``since_s`` the window starts at the first run's start.
* **Change failure rate**: failed runs (RolledBack or Aborted, including undone successes) divided
  by ended runs. A canary rolled back at 5 % still reached production users, so it counts.
* **Failed-deployment recovery time** (DORA's renamed MTTR): for each failed run, from the moment
  the failing version first served users (the first step that gave it traffic: a weight above 0,
  a preview mirror or a cut-over; for an undo, the success that released it) to the moment traffic
  was back on the stable version (the RolledBack/Aborted phase event, or the undo command; the
  engine applies the route before it commits that event). Median and mean are reported; the band
  uses the median. A run that failed before any user traffic recovers in 0 s.
* **Rollback frequency**: RolledBack runs per day and per week over the window (aborts by people
  are excluded here; they are in the change failure rate).
* **Lead time for changes**: ``commit_time`` to success, for runs whose record carries a commit
  time (only the latest run of each name keeps its record); median reported.
* **Release observability**: the share of ended runs in which every judged stage had telemetry to
  decide: each stage (by the decisions' ``stage``) saw at least one verdict other than ``hold``,
  there was at least one such verdict if users got canary traffic, and the run was never paused or
  aborted for missing metrics.

DORA bands follow the 2023 Accelerate State of DevOps report's clusters: deployment frequency
elite = on demand (more than once a day), high = daily to weekly, medium = weekly to monthly,
low = less than monthly; lead time elite < 1 day, high < 1 week, medium < 1 month, low beyond;
change failure rate elite ≤ 5 %, high ≤ 10 %, medium ≤ 15 %, low above; recovery time elite < 1 h,
high < 1 day, medium < 1 week, low beyond.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rollwise.core.model import Event, Phase
from rollwise.core.protocols import Store

DAY = 86400.0
WEEK = 7 * DAY
MONTH = 30 * DAY
_TERMINAL = {str(p) for p in Phase if p.terminal}

BANDS: dict[str, list[tuple[str, str]]] = {
    "deployment_frequency": [("elite", "on demand: more than once per day"), ("high", "once per day to once per week"),
                             ("medium", "once per week to once per month"), ("low", "less than once per month")],
    "lead_time": [("elite", "less than one day"), ("high", "one day to one week"),
                  ("medium", "one week to one month"), ("low", "more than one month")],
    "change_failure_rate": [("elite", "0-5%"), ("high", "5-10%"), ("medium", "10-15%"), ("low", "above 15%")],
    "recovery_time": [("elite", "less than one hour"), ("high", "less than one day"),
                      ("medium", "one day to one week"), ("low", "more than one week")],
}


@dataclass
class Run:
    """One release attempt reconstructed from the event log."""

    rollout: str
    service: str
    started_at: float
    ended_at: float | None = None
    outcome: str | None = None  # Succeeded | RolledBack | Aborted
    first_traffic_at: float | None = None
    succeeded_at: float | None = None
    commit_time: float | None = None
    events: list[Event] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.outcome in (str(Phase.ROLLED_BACK), str(Phase.ABORTED))

    @property
    def recovery_s(self) -> float | None:
        if not self.failed or self.ended_at is None:
            return None
        exposed = self.first_traffic_at if self.first_traffic_at is not None else self.ended_at
        return max(0.0, self.ended_at - exposed)

    @property
    def lead_time_s(self) -> float | None:
        if self.outcome != str(Phase.SUCCEEDED) or self.commit_time is None or self.ended_at is None:
            return None
        return max(0.0, self.ended_at - self.commit_time)

    @property
    def observable(self) -> bool:
        decisions = [e for e in self.events if e.type == "decision"]
        for e in self.events:
            if e.type == "phase" and e.data.get("phase") in (str(Phase.PAUSED), str(Phase.ABORTED)) \
                    and "no metrics" in e.message:
                return False
        stages: dict[Any, bool] = {}
        for d in decisions:
            stage = d.data.get("stage")
            stages[stage] = stages.get(stage, False) or d.data.get("action") != "hold"
        if not all(stages.values()):
            return False
        return not (self.first_traffic_at is not None and not any(stages.values()))


def reconstruct_runs(events: Sequence[Event], services: dict[str, str],
                     commit_times: dict[str, tuple[float, float | None]]) -> list[Run]:
    """Split each rollout's event log into runs. ``commit_times``: name -> (created_at, commit_time)."""
    by_rollout: dict[str, list[Event]] = {}
    for e in events:
        by_rollout.setdefault(e.rollout, []).append(e)
    runs: list[Run] = []
    for name, evs in by_rollout.items():
        evs.sort(key=lambda e: (e.seq, e.at))
        current: Run | None = None
        for e in evs:
            if e.type == "created" or current is None:
                current = Run(rollout=name, service=services.get(name, name), started_at=e.at)
                runs.append(current)
                created, commit = commit_times.get(name, (None, None))
                if created is not None and abs(created - e.at) < 1e-6:
                    current.commit_time = commit
            current.events.append(e)
            if e.type == "step" and current.first_traffic_at is None and (
                    float(e.data.get("weight") or 0) > 0 or e.data.get("kind") in ("setMirror", "preview")):
                current.first_traffic_at = e.at
            if e.type == "phase" and e.data.get("phase") in _TERMINAL and current.outcome is None:
                current.outcome, current.ended_at = str(e.data["phase"]), e.at
                if current.outcome == str(Phase.SUCCEEDED):
                    current.succeeded_at = e.at
            elif e.type == "command" and e.data.get("command") == "undo" and current.outcome == str(Phase.SUCCEEDED):
                # an undo turns a release into a failed change, exposed from its success to the undo
                current.outcome, current.ended_at = str(Phase.ROLLED_BACK), e.at
                current.first_traffic_at = current.succeeded_at
    return runs


def _band(metric: str, value: float | None) -> str | None:
    if value is None:
        return None
    if metric == "deployment_frequency":  # per day
        return "elite" if value > 1 else "high" if value >= 1 / 7 else "medium" if value >= 1 / 30 else "low"
    if metric == "lead_time":
        return "elite" if value < DAY else "high" if value < WEEK else "medium" if value < MONTH else "low"
    if metric == "change_failure_rate":
        return "elite" if value <= 0.05 else "high" if value <= 0.10 else "medium" if value <= 0.15 else "low"
    if metric == "recovery_time":
        return "elite" if value < 3600 else "high" if value < DAY else "medium" if value < WEEK else "low"
    raise ValueError(metric)


def _summarise(runs: list[Run], window_s: float) -> dict[str, Any]:
    ended = [r for r in runs if r.outcome is not None]
    succeeded = [r for r in ended if r.outcome == str(Phase.SUCCEEDED)]
    failed = [r for r in ended if r.failed]
    rolled_back = [r for r in ended if r.outcome == str(Phase.ROLLED_BACK)]
    aborted = [r for r in ended if r.outcome == str(Phase.ABORTED)]
    days = window_s / DAY if window_s > 0 else None
    recoveries = [r.recovery_s for r in failed if r.recovery_s is not None]
    leads = [r.lead_time_s for r in succeeded if r.lead_time_s is not None]
    deploy_per_day = len(succeeded) / days if days else None
    cfr = len(failed) / len(ended) if ended else None
    mttr_median = statistics.median(recoveries) if recoveries else None
    lead_median = statistics.median(leads) if leads else None
    observable = [r for r in ended if r.observable]
    return {
        "window_days": days,
        "releases_ended": len(ended),
        "succeeded": len(succeeded),
        "rolled_back": len(rolled_back),
        "aborted": len(aborted),
        "failed": len(failed),
        "deployment_frequency_per_day": deploy_per_day,
        "deployment_frequency_per_week": deploy_per_day * 7 if deploy_per_day is not None else None,
        "change_failure_rate": cfr,
        "recovery_time_s": {"median": mttr_median, "mean": statistics.fmean(recoveries) if recoveries else None,
                            "count": len(recoveries), "values": recoveries},
        "rollback_frequency_per_day": len(rolled_back) / days if days else None,
        "rollback_frequency_per_week": len(rolled_back) / days * 7 if days else None,
        "lead_time_s": {"median": lead_median, "mean": statistics.fmean(leads) if leads else None,
                        "count": len(leads)},
        "release_observability": len(observable) / len(ended) if ended else None,
        "dora": {
            "deployment_frequency": _band("deployment_frequency", deploy_per_day),
            "lead_time": _band("lead_time", lead_median),
            "change_failure_rate": _band("change_failure_rate", cfr),
            "recovery_time": _band("recovery_time", mttr_median),
        },
    }


def delivery_metrics(store: Store, service: str | None = None, since_s: float | None = None,
                     now: float | None = None) -> dict[str, Any]:
    """Delivery metrics per service and overall; see the module docstring for the definitions."""
    now = time.time() if now is None else now
    records = store.list()
    services = {r.name: r.spec.service for r in records}
    commit_times = {r.name: (r.created_at, r.commit_time) for r in records}
    runs = reconstruct_runs(store.events(), services, commit_times)
    if service is not None:
        runs = [r for r in runs if r.service == service]
    start = now - since_s if since_s is not None else min((r.started_at for r in runs), default=now)
    in_window = [r for r in runs if r.ended_at is not None and start <= r.ended_at <= now]
    window_s = now - start
    per_service: dict[str, Any] = {}
    for name in sorted({r.service for r in in_window}):
        per_service[name] = _summarise([r for r in in_window if r.service == name], window_s)
    return {
        "generated_at": now,
        "since": start,
        "until": now,
        "service": service,
        "overall": _summarise(in_window, window_s),
        "services": per_service,
        "in_progress": sum(1 for r in runs if r.outcome is None),
        "bands": {k: dict(v) for k, v in BANDS.items()},
        "definitions": {
            "deployment_frequency": "successful releases per day in the window",
            "change_failure_rate": "(rolled back + aborted) / ended releases",
            "recovery_time": "failed release: first user traffic on the failing version -> traffic back on stable",
            "rollback_frequency": "rolled-back releases per day (and week) in the window",
            "lead_time": "commit_time -> success, where the record has a commit time",
            "release_observability": "share of ended releases where every judged stage had data to decide",
            "source": "DORA 2023 Accelerate State of DevOps performance clusters",
        },
    }
