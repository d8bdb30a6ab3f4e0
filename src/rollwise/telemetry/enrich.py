"""What another metric source's windows lack for the RCA, added beside its counts.

A rollout judged from Envoy or Prometheus counts is still debugged from what its services export over OTLP
and from the processes rollwise runs for it. Two wrappers, both pure (they read through small protocols)
and built by ``wiring.py`` around every source, as ``core/pushed_kpis.py`` is:

- ``WithTelemetryDetail``: each side's OTLP detail for the window (per-route split, log template counts,
  exemplar traces, reported saturation: ``SpanAggregates.detail``) merged into its ``extra``. The judge
  still decides on the source's own counts; these keys are read by the RCA only.
- ``WithProcessUsage``: CPU (cores busy since the previous window) and resident memory of each version's
  processes (``ProcessReader``, ``/proc`` in ``adapters/metrics/process.py``) as ``sat.cpu_cores`` and
  ``sat.memory_bytes``, when rollwise deployed them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from rollwise.core.model import VersionStats, Window, WindowQuery
from rollwise.core.protocols import BaselineHistory, MetricSource
from rollwise.telemetry.saturation import CPU_CORES, MEMORY_BYTES
from rollwise.watch.series import ProcessReader


class TelemetryDetail(Protocol):
    def detail(self, service: str, version: str, start: float, end: float) -> dict[str, float]:
        """The RCA's keys for ``version`` of ``service`` over [start, end); empty when nothing arrived."""
        ...


def _with_extra(stats: VersionStats | None, extra: dict[str, float]) -> VersionStats | None:
    if stats is None or not extra:
        return stats
    return VersionStats(requests=stats.requests, errors=stats.errors, latency_buckets=stats.latency_buckets,
                        latency_sum_ms=stats.latency_sum_ms, kpis=stats.kpis, extra={**extra, **stats.extra})


class _Wrapper:
    def __init__(self, source: MetricSource) -> None:
        self.source = source

    def collect(self, query: WindowQuery) -> Window:
        window = self.source.collect(query)  # a backend failure propagates: the engine reports it
        baseline = _with_extra(window.baseline, self.extra(query, query.baseline_version, window))
        canary = _with_extra(window.canary, self.extra(query, query.canary_version, window))
        return Window(start=window.start, end=window.end, baseline=baseline, canary=canary, cursor=window.cursor)

    def extra(self, query: WindowQuery, version: str, window: Window) -> dict[str, float]:
        raise NotImplementedError


class WithTelemetryDetail(_Wrapper):
    """``source``'s windows with each side's OTLP detail (``flag``: versions are ``<flag>:<variant>``)."""

    def __init__(self, source: MetricSource, telemetry: TelemetryDetail, flag: str | None = None) -> None:
        super().__init__(source)
        self.telemetry = telemetry
        self.flag = flag

    def extra(self, query: WindowQuery, version: str, window: Window) -> dict[str, float]:
        name = f"{self.flag}:{version}" if self.flag else version
        return self.telemetry.detail(query.service, name, window.start, window.end)


class WithProcessUsage(_Wrapper):
    """``source``'s windows with the CPU and memory of each version's processes, where rollwise runs them."""

    def __init__(self, source: MetricSource, processes: ProcessReader, clock: Callable[[], float]) -> None:
        super().__init__(source)
        self.processes = processes
        self.clock = clock
        self._last: dict[tuple[str, str], tuple[float, float]] = {}  # (rollout, version) -> (at, cpu seconds)

    def extra(self, query: WindowQuery, version: str, window: Window) -> dict[str, float]:
        usage = self.processes.usage(query.rollout, version)
        if usage is None:
            return {}
        now, key = self.clock(), (query.rollout, version)
        found = {MEMORY_BYTES: usage.rss_bytes}
        last = self._last.get(key)
        if last is not None and now > last[0] and usage.cpu_s >= last[1]:
            found[CPU_CORES] = (usage.cpu_s - last[1]) / (now - last[0])
        self._last[key] = (now, usage.cpu_s)
        return found


class _WithHistory:
    """Keeps a wrapped source's ``BaselineHistory`` ability (the engine checks by type)."""

    source: MetricSource

    def baseline_history(self, query: WindowQuery) -> VersionStats | None:
        assert isinstance(self.source, BaselineHistory)
        return self.source.baseline_history(query)


class _DetailWithHistory(_WithHistory, WithTelemetryDetail):
    pass


class _UsageWithHistory(_WithHistory, WithProcessUsage):
    pass


def with_telemetry_detail(source: MetricSource, telemetry: TelemetryDetail, flag: str | None = None
                          ) -> WithTelemetryDetail:
    if isinstance(source, BaselineHistory):
        return _DetailWithHistory(source, telemetry, flag)
    return WithTelemetryDetail(source, telemetry, flag)


def with_process_usage(source: MetricSource, processes: ProcessReader, clock: Callable[[], float]
                       ) -> WithProcessUsage:
    if isinstance(source, BaselineHistory):
        return _UsageWithHistory(source, processes, clock)
    return WithProcessUsage(source, processes, clock)
