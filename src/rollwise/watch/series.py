"""What the watch watches: each series a service can have, how it is read, which way is bad, and how big a
move must be to count.

Pure: the runner hands in a window's per-version stats (the judge's metric source, pushed KPIs merged in),
the processes' usage (a ``ProcessReader``: CPU seconds and RSS of what rollwise runs) and the answers of the
Prometheus series the spec names (a ``ScalarQuery``); this module turns them into one value per series.

Series: ``errorRate``, ``latencyMean``, ``latencyP99`` (from the histogram, where the source has one),
``requestRate`` (requests per second; a *drop* is the anomaly), ``cpu`` (cores) and ``memory`` (RSS bytes)
of the versions' processes, ``kpi:NAME`` for each KPI metric of the spec's analysis (its ratio, a drop is bad
unless ``higherIsBetter: false``) and each ``watch.series`` entry by its name.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from rollwise.core.model import RolloutRecord, VersionStats
from rollwise.spec.models import MetricSpec, RolloutSpec
from rollwise.watch.detector import Direction

BUILT_IN = ("errorRate", "latencyMean", "latencyP99", "requestRate", "cpu", "memory")
RECENT = 30


@dataclass(frozen=True)
class Floor:
    """The smallest move (the bad way) over a reference median that counts, whatever the detector's score:
    ``max(absolute, relative x |reference|)``. The reference is the median of the last ``RECENT`` points, or of
    the whole kept history for slow series (a leak moves little in five minutes and a lot in two hours)."""

    absolute: float = 0.0
    relative: float = 0.0
    history: bool = False

    def material(self, before: Sequence[tuple[float, float]], value: float, direction: Direction) -> bool:
        if not before:
            return True
        kept = before if self.history else before[-RECENT:]
        reference = statistics.median(v for _, v in kept)
        bar = max(self.absolute, self.relative * abs(reference))
        rise, drop = value - reference, reference - value
        if direction == "up":
            return rise >= bar
        if direction == "down":
            return drop >= bar
        return max(rise, drop) >= bar


FLOORS: dict[str, Floor] = {
    "errorRate": Floor(absolute=0.003),  # 0.3 pp: a quiet service's first stray 500 is not an anomaly
    "latencyMean": Floor(absolute=2.0),  # ms
    "latencyP99": Floor(absolute=5.0, relative=0.2),
    "requestRate": Floor(relative=0.3),  # a third of the traffic gone; diurnal swings are the detector's job
    "cpu": Floor(absolute=0.1, relative=0.5),  # cores
    # RSS 2 % above the median of the kept hours: a leak is a drift that the detector flags within minutes of
    # its start (and then takes as the new level), so the bar must be one the first minutes of a leak clear.
    "memory": Floor(relative=0.02, history=True),
}
KPI_FLOOR = Floor(relative=0.02)  # a KPI 2 % below its recent median (the regression is -5 %)
SERIES_FLOOR = Floor(relative=0.1)  # a Prometheus series named in the spec: 10 % either way it is bad


@dataclass(frozen=True)
class ProcessUsage:
    """One version's processes at one moment: CPU time used so far (seconds) and resident memory (bytes)."""

    cpu_s: float
    rss_bytes: float


class ProcessReader(Protocol):
    def usage(self, rollout: str, version: str) -> ProcessUsage | None:
        """The usage of ``version``'s processes in ``rollout``, or None when rollwise runs none for it."""
        ...


class ScalarQuery(Protocol):
    def scalar(self, promql: str, at: float) -> float | None:
        """The query's value at ``at`` (summed over its series); None when it has none. Raises MetricsError."""
        ...


def kpi_metrics(spec: RolloutSpec) -> list[MetricSpec]:
    """The KPI metrics of every analysis in ``spec`` (one per name)."""
    strategy = spec.strategy
    analyses = [spec.analysis()]
    if strategy.blueGreen is not None:
        analyses.append(strategy.blueGreen.postPromotionAnalysis)
    found: dict[str, MetricSpec] = {}
    for analysis in analyses:
        for metric in analysis.metrics if analysis is not None else []:
            if metric.type == "kpi":
                found.setdefault(metric.name, metric)
    return list(found.values())


def directions(spec: RolloutSpec) -> dict[str, Direction]:
    """Every series this spec's service can have, with the way that is bad."""
    assert spec.watch is not None
    known: dict[str, Direction] = {"errorRate": "up", "latencyMean": "up", "latencyP99": "up",
                                   "requestRate": "down", "cpu": "up", "memory": "up"}
    for metric in kpi_metrics(spec):
        known[f"kpi:{metric.name}"] = "up" if metric.higherIsBetter is False else "down"
    for series in spec.watch.series:
        known[series.name] = series.direction
    return known


def watched(spec: RolloutSpec) -> dict[str, Direction]:
    """The series the watch scores for this spec: ``watch.metrics`` if given, else every one it can have."""
    assert spec.watch is not None
    known = directions(spec)
    chosen = spec.watch.metrics
    return known if chosen is None else {name: known[name] for name in chosen if name in known}


def floor(name: str) -> Floor:
    if name in FLOORS:
        return FLOORS[name]
    return KPI_FLOOR if name.startswith("kpi:") else SERIES_FLOOR


def traffic_values(spec: RolloutSpec, stats: list[VersionStats], seconds: float) -> dict[str, float]:
    """The traffic series of one window (summed over the versions that served): whichever have data."""
    requests = sum(s.requests for s in stats)
    values: dict[str, float] = {"requestRate": requests / seconds if seconds > 0 else 0.0}
    if requests and spec.watch is not None and requests >= spec.watch.minRequests:
        values["errorRate"] = sum(s.errors for s in stats) / requests
        values["latencyMean"] = sum(s.latency_sum_ms for s in stats) / requests
        p99 = VersionStats.merge(stats).quantile(0.99) if any(s.latency_buckets for s in stats) else None
        if p99 is not None:
            values["latencyP99"] = p99
    for metric in kpi_metrics(spec):
        assert metric.numerator and metric.denominator
        trials = sum(s.kpis.get(metric.denominator, 0.0) for s in stats)
        if trials > 0:
            values[f"kpi:{metric.name}"] = sum(s.kpis.get(metric.numerator, 0.0) for s in stats) / trials
    return values


def process_values(record: RolloutRecord, reader: ProcessReader,
                   last: dict[str, tuple[float, float]], now: float) -> dict[str, float]:
    """``cpu`` (cores, from the CPU seconds since the previous reading kept in ``last``, updated here) and
    ``memory`` (RSS bytes), summed over the versions rollwise runs a process for."""
    cpu, rss, seen, complete = 0.0, 0.0, 0, True
    for version in dict.fromkeys((record.stable_version, record.canary_version)):
        usage = reader.usage(record.name, version)
        if usage is None:
            last.pop(version, None)
            continue
        seen += 1
        rss += usage.rss_bytes
        before = last.get(version)
        last[version] = (now, usage.cpu_s)
        if before is not None and now > before[0] and usage.cpu_s >= before[1]:
            cpu += (usage.cpu_s - before[1]) / (now - before[0])
        else:
            complete = False  # a first reading (or a restarted process): no rate yet
    if not seen:
        return {}
    return {"memory": rss, "cpu": cpu} if complete else {"memory": rss}


def render_query(template: str, record: RolloutRecord, seconds: float) -> str:
    """A ``watch.series`` query with ``{service}``, ``{rollout}`` and ``{window}`` (e.g. ``10s``) filled in."""
    values = {"service": record.spec.service, "rollout": record.name, "window": f"{max(1, round(seconds))}s"}
    for key, value in values.items():
        template = template.replace("{" + key + "}", value)
    return template
