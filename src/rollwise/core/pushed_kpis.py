"""A metric source that adds what applications pushed (``POST …/kpis``) to another source's windows.

A service can push business events (``visit``, ``checkout``) per version while Envoy or Prometheus
measures its traffic; the judge sees both in one ``VersionStats.kpis``. The merge is pure: the
pushed totals come from a ``PushedKpis`` (the store), and ``wiring.py`` wraps every source with it,
so the engine knows nothing about pushed KPIs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from rollwise.core.model import VersionStats, Window, WindowQuery
from rollwise.core.protocols import BaselineHistory, MetricSource


class PushedKpis(Protocol):
    def kpi_totals(self, rollout: str, version: str, start: float, end: float) -> dict[str, float]:
        """What was pushed for ``version`` of ``rollout`` over [start, end), summed per metric."""
        ...


@runtime_checkable
class PushedKpisByVersion(Protocol):
    def kpi_totals_by_version(self, rollout: str, versions: Sequence[str], start: float,
                              end: float) -> dict[str, dict[str, float]]:
        """``kpi_totals`` of several versions in one read (the SQL store: one query per window, not two)."""
        ...


class WithPushedKpis:
    """``source``'s windows with the pushed KPI totals of each side that has data merged into its kpis."""

    def __init__(self, source: MetricSource, pushed: PushedKpis):
        self.source = source
        self.pushed = pushed

    def collect(self, query: WindowQuery) -> Window:
        window = self.source.collect(query)  # a backend failure propagates: the engine reports it
        sides: dict[str, VersionStats | None] = {"baseline": window.baseline, "canary": window.canary}
        versions = {"baseline": query.baseline_version, "canary": query.canary_version}
        totals = self._totals(query.rollout, [versions[s] for s, stats in sides.items() if stats is not None],
                              window.start, window.end)
        for side, version in versions.items():
            stats = sides[side]
            if stats is None:
                continue
            pushed = totals.get(version)
            if pushed:
                sides[side] = VersionStats(
                    requests=stats.requests, errors=stats.errors, latency_buckets=stats.latency_buckets,
                    latency_sum_ms=stats.latency_sum_ms, kpis={**stats.kpis, **pushed}, extra=stats.extra,
                )
        return Window(start=window.start, end=window.end, baseline=sides["baseline"],
                      canary=sides["canary"], cursor=window.cursor)

    def _totals(self, rollout: str, versions: list[str], start: float, end: float) -> dict[str, dict[str, float]]:
        if not versions:
            return {}
        if isinstance(self.pushed, PushedKpisByVersion):
            return self.pushed.kpi_totals_by_version(rollout, versions, start, end)
        return {version: self.pushed.kpi_totals(rollout, version, start, end) for version in versions}


class WithPushedKpisAndHistory(WithPushedKpis):
    """The same, for a source that is also a ``BaselineHistory`` (the engine checks by type)."""

    source: BaselineHistory  # type: ignore[assignment]

    def baseline_history(self, query: WindowQuery) -> VersionStats | None:
        return self.source.baseline_history(query)


def with_pushed_kpis(source: MetricSource, pushed: PushedKpis) -> WithPushedKpis:
    """Wrap ``source``, keeping its ``BaselineHistory`` ability when it has one."""
    if isinstance(source, BaselineHistory):
        return WithPushedKpisAndHistory(source, pushed)
    return WithPushedKpis(source, pushed)
