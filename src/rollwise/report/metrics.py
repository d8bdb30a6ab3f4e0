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

The DORA performance bands (elite/high/medium/low) live in one table, ``DORA_BANDS``; its docstring
names the source. **Trends** split the window into buckets (a day, a week or 30 days, chosen from the
window's length unless ``bucket_s`` is given) and summarise each bucket's ended runs the same way.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rollwise.core.model import Event, Phase
from rollwise.core.protocols import Store, WatchStore

DAY = 86400.0
WEEK = 7 * DAY
MONTH = 30 * DAY
_TERMINAL = {str(p) for p in Phase if p.terminal}



@dataclass(frozen=True)
class Band:
    """One DORA performance band of one metric: values beyond ``limit`` (towards "better") belong to it."""

    name: str
    description: str
    limit: float | None = None  # None: the last band, every value left
    inclusive: bool = False  # a value equal to the limit is in this band


DORA_BANDS: dict[str, tuple[str, tuple[Band, ...]]] = {
    "deployment_frequency": ("higher", (  # successful releases per day
        Band("elite", "on demand: more than once per day", 1.0),
        Band("high", "once per day to once per week", 1 / 7, inclusive=True),
        Band("medium", "once per week to once per month", 1 / 30, inclusive=True),
        Band("low", "less than once per month"))),
    "lead_time": ("lower", (  # seconds from commit to success
        Band("elite", "less than one day", DAY), Band("high", "one day to one week", WEEK),
        Band("medium", "one week to one month", MONTH), Band("low", "more than one month"))),
    "change_failure_rate": ("lower", (  # failed / ended releases
        Band("elite", "0-5%", 0.05, inclusive=True), Band("high", "5-10%", 0.10, inclusive=True),
        Band("medium", "10-15%", 0.15, inclusive=True), Band("low", "above 15%"))),
    "recovery_time": ("lower", (  # seconds from first user traffic to traffic back on stable
        Band("elite", "less than one hour", 3600.0), Band("high", "less than one day", DAY),
        Band("medium", "one day to one week", WEEK), Band("low", "more than one week"))),
}
"""DORA's performance bands per metric: which direction is better, then the bands from best to worst.

Source: the clusters of the 2023 Accelerate State of DevOps report (DORA, Google Cloud),
https://dora.dev/research/2023/dora-report/ -- deployment frequency elite = on demand (more than once a
day), high = daily to weekly, medium = weekly to monthly, low = less than monthly; lead time elite < 1
day, high < 1 week, medium < 1 month, low beyond; change failure rate elite <= 5 %, high <= 10 %, medium
<= 15 %, low above; recovery time elite < 1 h, high < 1 day, medium < 1 week, low beyond. This is the one
place they live: ``band`` reads it, the API returns its descriptions, the dashboard shows them.
"""

BANDS: dict[str, list[tuple[str, str]]] = {
    metric: [(b.name, b.description) for b in bands] for metric, (_, bands) in DORA_BANDS.items()}


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


def band(metric: str, value: float | None) -> str | None:
    """The DORA band ``value`` falls in for ``metric`` (a key of ``DORA_BANDS``); None without a value."""
    if value is None:
        return None
    better, bands = DORA_BANDS[metric]
    for b in bands:
        if b.limit is None:
            return b.name
        beyond = value > b.limit if better == "higher" else value < b.limit
        if beyond or (b.inclusive and value == b.limit):
            return b.name
    raise AssertionError(f"{metric}: the last band has no limit")


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
            "deployment_frequency": band("deployment_frequency", deploy_per_day),
            "lead_time": band("lead_time", lead_median),
            "change_failure_rate": band("change_failure_rate", cfr),
            "recovery_time": band("recovery_time", mttr_median),
        },
    }


def bucket_size(window_s: float) -> float:
    """A trend's bucket: a day up to a month of history, a week up to half a year, then 30 days,
    so a chart has between a handful and a few dozen points."""
    if window_s <= 31 * DAY:
        return DAY
    return WEEK if window_s <= 26 * WEEK else MONTH


def trend(runs: list[Run], start: float, now: float, bucket_s: float) -> list[dict[str, Any]]:
    """The window cut into buckets that end at ``now``, oldest first, each summarised on its own.

    A run belongs to the bucket its end falls in (the same rule as the window); the first bucket may
    reach back before ``start`` so that every bucket has the same length.
    """
    count = max(1, math.ceil((now - start) / bucket_s - 1e-9))
    points = []
    for k in range(count):
        lo, hi = now - (count - k) * bucket_s, now - (count - k - 1) * bucket_s
        inside = [r for r in runs if r.ended_at is not None
                  and (lo < r.ended_at <= hi or (k == 0 and r.ended_at == lo))]
        m = _summarise(inside, bucket_s)
        points.append({
            "start": lo, "end": hi, "releases_ended": m["releases_ended"], "succeeded": m["succeeded"],
            "failed": m["failed"], "deployment_frequency_per_day": m["deployment_frequency_per_day"],
            "change_failure_rate": m["change_failure_rate"], "lead_time_median_s": m["lead_time_s"]["median"],
            "recovery_time_median_s": m["recovery_time_s"]["median"],
        })
    return points


def incident_metrics(watch: WatchStore, service: str | None, start: float, now: float) -> dict[str, Any]:
    """The watch's incidents opened in the window: how many, how many a change caused, time to restore
    (onset to resolution, the incident's own MTTR), and how many were ended by the watch's own undo/kill."""
    incidents = [i for i in watch.incidents(service=service) if start <= i.opened_at <= now]
    restored = [i.resolved_at - i.onset for i in incidents if i.resolved_at is not None]
    caused = [i for i in incidents if i.culprit is not None]
    acted = [i for i in incidents if any(a.get("kind") in ("undo", "kill-flag") and a.get("outcome") == "done"
                                         for a in i.actions)]
    return {
        "opened": len(incidents),
        "open_now": sum(1 for i in incidents if i.resolved_at is None),
        "caused_by_a_change": len(caused),
        "undone_or_killed_by_the_watch": len(acted),
        "time_to_restore_s": {"median": statistics.median(restored) if restored else None,
                              "mean": statistics.fmean(restored) if restored else None, "count": len(restored)},
        "band": band("recovery_time", statistics.median(restored) if restored else None),
    }


def delivery_metrics(store: Store, service: str | None = None, since_s: float | None = None,
                     now: float | None = None, bucket_s: float | None = None,
                     watch: WatchStore | None = None) -> dict[str, Any]:
    """Delivery metrics per service and overall, each with its trend; see the module docstring.

    With ``watch``, the post-release watch's incidents too (``incidents``): a release undone by the watch
    already counts as a failed change (its run ends RolledBack); the incidents add its time to restore."""
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
    bucket_s = bucket_s if bucket_s is not None else bucket_size(window_s)
    per_service: dict[str, Any] = {}
    for name in sorted({r.service for r in in_window}):
        mine = [r for r in in_window if r.service == name]
        per_service[name] = {**_summarise(mine, window_s), "trend": trend(mine, start, now, bucket_s)}
    return {
        "generated_at": now,
        "since": start,
        "until": now,
        "service": service,
        "bucket_s": bucket_s,
        "overall": {**_summarise(in_window, window_s), "trend": trend(in_window, start, now, bucket_s)},
        "services": per_service,
        "in_progress": sum(1 for r in runs if r.outcome is None),
        **({"incidents": incident_metrics(watch, service, start, now)} if watch is not None else {}),
        "bands": {k: dict(v) for k, v in BANDS.items()},
        "definitions": {
            "deployment_frequency": "successful releases per day in the window",
            "change_failure_rate": "(rolled back + aborted) / ended releases",
            "recovery_time": "failed release: first user traffic on the failing version -> traffic back on stable",
            "rollback_frequency": "rolled-back releases per day (and week) in the window",
            "lead_time": "commit time -> success, where the record has a commit time",
            "release_observability": "share of ended releases where every judged stage had data to decide",
            "source": "DORA 2023 Accelerate State of DevOps performance clusters",
        },
    }
