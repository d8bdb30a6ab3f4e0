"""Metrics the application pushes itself, per version or flag variant.

A service behind a feature flag knows which variant each request saw; it pushes counters
(`requests`, `errors`, latency buckets `latency_le_<ms>` counted cumulatively, and any business
events such as `visit` and `checkout`) to ``POST /api/v1/rollouts/{name}/kpis``. This source turns
one window of those pushes into the same ``VersionStats`` the Envoy source produces, so the judge
cannot tell a flag rollout from a traffic canary.
"""

from __future__ import annotations

import math

from rollwise.core.model import VersionStats, Window, WindowQuery
from rollwise.core.protocols import Store

LATENCY_PREFIX = "latency_le_"
RESERVED = ("requests", "errors")


def stats_from_pushed(totals: dict[str, float]) -> VersionStats | None:
    if not totals:
        return None
    buckets = []
    kpis = {}
    for key, value in totals.items():
        if key.startswith(LATENCY_PREFIX):
            bound_text = key[len(LATENCY_PREFIX):]
            bound = math.inf if bound_text in ("inf", "+Inf") else float(bound_text)
            buckets.append((bound, int(value)))
        elif key not in RESERVED:
            kpis[key] = value
    buckets.sort()
    requests = int(totals.get("requests", buckets[-1][1] if buckets else 0))
    return VersionStats(requests=requests, errors=int(totals.get("errors", 0)),
                        latency_buckets=tuple(buckets), kpis=kpis)


class PushedMetricSource:
    def __init__(self, store: Store):
        self.store = store

    def collect(self, query: WindowQuery) -> Window:
        baseline = stats_from_pushed(
            self.store.kpi_totals(query.rollout, query.baseline_version, query.start, query.end))
        canary = stats_from_pushed(
            self.store.kpi_totals(query.rollout, query.canary_version, query.start, query.end))
        if baseline is None and canary is None:
            return Window(query.start, query.end, None, None, cursor=query.cursor)
        return Window(query.start, query.end, baseline or VersionStats(), canary or VersionStats(),
                      cursor=query.cursor)
