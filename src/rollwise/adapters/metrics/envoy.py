"""Per-window observations straight from Envoy's admin ``/stats/prometheus``.

Envoy exposes cumulative counters and histograms since it started. A window is the difference
between two scrapes, so the previous scrape travels in ``Window.cursor``: the engine persists it
with the rollout and hands it back, which keeps the diff exact across controller restarts.

Two Envoy facts shape this module (see shared/notes/envoy.md):
- error rate = Δ``upstream_rq_xx{class="5"}`` / ΣΔ``upstream_rq_xx``; ``upstream_rq_total``
  misses Envoy's own 503s (connect failures), which are exactly the errors that matter.
- counters are live but histograms only move at each stats flush, so a window is read one flush
  interval (plus a little) after it ends, else the last second's latencies land in the next one.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from rollwise import envoy_names
from rollwise.adapters.metrics import SettlingSource
from rollwise.core.model import VersionStats, Window, WindowQuery
from rollwise.core.protocols import MetricsError

ClusterSnapshot = dict[str, Any]  # {"xx": {"2": n}, "buckets": [[le, n]], "sum": ms, "count": n}


def parse_cluster_stats(text: str, clusters: set[str]) -> dict[str, ClusterSnapshot]:
    """Pick request classes and the latency histogram of ``clusters`` out of Prometheus text."""
    snapshots: dict[str, ClusterSnapshot] = {}

    def snap(name: str) -> ClusterSnapshot:
        return snapshots.setdefault(name, {"xx": {}, "buckets": {}, "sum": 0.0, "count": 0})

    for family in text_string_to_metric_families(text):
        if family.name not in ("envoy_cluster_upstream_rq_xx", "envoy_cluster_upstream_rq_time"):
            continue
        for sample in family.samples:
            cluster = sample.labels.get("envoy_cluster_name")
            if cluster not in clusters:
                continue
            entry = snap(cluster)
            if family.name == "envoy_cluster_upstream_rq_xx":  # samples may carry a "_total" suffix
                entry["xx"][sample.labels["envoy_response_code_class"]] = int(sample.value)
            elif sample.name.endswith("_bucket"):
                le = sample.labels["le"]
                entry["buckets"][le] = int(sample.value)
            elif sample.name.endswith("_sum"):
                entry["sum"] = float(sample.value)
            elif sample.name.endswith("_count"):
                entry["count"] = int(sample.value)
    for entry in snapshots.values():
        buckets = sorted(((float(le), n) for le, n in entry["buckets"].items() if le != "+Inf"), key=lambda b: b[0])
        buckets.append((float("inf"), int(entry["buckets"].get("+Inf", entry["count"]))))
        entry["buckets"] = [[_json_bound(le), n] for le, n in buckets]
    return snapshots


def _json_bound(bound: float) -> float | str:
    return "+Inf" if bound == float("inf") else bound


def _bound(raw: float | str) -> float:
    return float("inf") if raw == "+Inf" else float(raw)


def _delta(now: float, before: float) -> float:
    """Counter increase; a smaller value means the counter restarted (Envoy restarted)."""
    return now - before if now >= before else now


def diff_cluster(now: ClusterSnapshot, before: ClusterSnapshot | None) -> VersionStats:
    before = before or {"xx": {}, "buckets": [], "sum": 0.0, "count": 0}
    xx = {cls: int(_delta(n, before["xx"].get(cls, 0))) for cls, n in now["xx"].items()}
    histogram_reset = now["count"] < before["count"]
    old_buckets = {} if histogram_reset else {_bound(b): n for b, n in before["buckets"]}
    # +Inf stays out: Window must be JSON (stores use JSONB), and the route timeout (30 s) keeps
    # every request under the last finite bound (60 s).
    buckets = tuple(
        (_bound(bound), max(0, n - old_buckets.get(_bound(bound), 0))) for bound, n in now["buckets"] if bound != "+Inf"
    )
    latency_sum = now["sum"] if histogram_reset else max(0.0, now["sum"] - before["sum"])
    return VersionStats(
        requests=sum(xx.values()),
        errors=xx.get("5", 0),
        latency_buckets=buckets,
        latency_sum_ms=latency_sum,
    )


def _failure(exc: httpx.HTTPError, admin_url: str, shadow_url: str | None) -> str:
    """One line naming what failed: Envoy's admin or the shadow comparator, where, and why."""
    url = str(exc.request.url) if _has_request(exc) else admin_url
    what = "shadow comparator stats" if shadow_url and url.startswith(shadow_url) else "Envoy admin"
    where = str(httpx.URL(url).copy_with(userinfo=b"", query=None, fragment=None))
    if isinstance(exc, httpx.HTTPStatusError):
        return f"{what} at {where} answered HTTP {exc.response.status_code}"
    cause = " ".join((str(exc) or type(exc).__name__).split())[:300]
    return f"{what} at {where} unreachable: {cause}"


def _has_request(exc: httpx.HTTPError) -> bool:
    try:
        exc.request  # noqa: B018 - raises RuntimeError when the error has no request
    except RuntimeError:
        return False
    return True


class EnvoyMetricSource(SettlingSource):
    """Implements ``MetricSource`` by scraping one Envoy's admin API.

    ``shadow_stats_url`` points at a ShadowComparator's stats; its compared/mismatch counters are
    diffed the same way and reported in the canary's ``extra``.
    """

    def __init__(
        self,
        admin_url: str,
        *,
        flush_interval_s: float = 1.0,
        settle_s: float | None = None,
        shadow_stats_url: str | None = None,
        cluster_name: Callable[[str, str], str] = envoy_names.cluster_name,
        timeout_s: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(settle_s=flush_interval_s + 0.3 if settle_s is None else settle_s,
                         cluster_name=cluster_name, timeout_s=timeout_s, sleep=sleep, clock=clock)
        self.admin_url = admin_url.rstrip("/")
        self.shadow_stats_url = shadow_stats_url

    def snapshot(self, rollout: str, versions: list[str]) -> dict[str, ClusterSnapshot]:
        names = [self._cluster_name(rollout, v) for v in versions]
        clusters = set(names) | {name + envoy_names.MIRROR_SUFFIX for name in names}
        pattern = "|".join(re.escape(c) for c in sorted(clusters))
        response = self._http.get(
            f"{self.admin_url}/stats/prometheus",
            params={"filter": rf"^cluster\.({pattern})\.(upstream_rq_[1-5]xx|upstream_rq_time)$"},
        )
        response.raise_for_status()
        return parse_cluster_stats(response.text, clusters)

    def _shadow_counters(self) -> dict[str, float] | None:
        if not self.shadow_stats_url:
            return None
        response = self._http.get(self.shadow_stats_url)
        response.raise_for_status()
        return {k: float(v) for k, v in response.json().items() if isinstance(v, int | float)}

    def collect(self, query: WindowQuery) -> Window:
        self._wait_until_settled(query)  # let the last flush of the window's histograms land
        previous = query.cursor or {}
        try:
            clusters = self.snapshot(query.rollout, [query.baseline_version, query.canary_version])
            shadow = self._shadow_counters()
        except httpx.HTTPError as exc:
            # Envoy unreachable (restarting): a backend error, not no data; the engine keeps the old
            # cursor, so the next diff stays exact.
            raise MetricsError(_failure(exc, self.admin_url, self.shadow_stats_url)) from None
        cursor: dict[str, Any] = {"source": "envoy", "at": self._clock(), "clusters": clusters}
        if shadow is not None:
            cursor["shadow"] = shadow
        if "clusters" not in previous:
            return Window(query.start, query.end, None, None, cursor=cursor)  # first look: baseline only

        def stats(version: str) -> VersionStats | None:
            name = self._cluster_name(query.rollout, version)
            if name not in clusters:
                # Only mirrored (shadow) traffic: its cluster points at a comparator that answers
                # with the shadow's status, so that cluster's stats are the shadow's.
                name += envoy_names.MIRROR_SUFFIX
            if name not in clusters:
                return None
            # A cluster missing from the previous scrape was created since: it started at zero.
            return diff_cluster(clusters[name], previous["clusters"].get(name))

        baseline = stats(query.baseline_version)
        canary = stats(query.canary_version)
        if canary is not None and shadow is not None:
            old = previous.get("shadow") or {}
            extra = {key: _delta(value, float(old.get(key, 0.0))) for key, value in shadow.items()}
            canary = VersionStats(
                requests=canary.requests,
                errors=canary.errors,
                latency_buckets=canary.latency_buckets,
                latency_sum_ms=canary.latency_sum_ms,
                extra=extra,
            )
        return Window(query.start, query.end, baseline, canary, cursor=cursor)


class EnvoyFleetMetricSource(SettlingSource):
    """Implements ``MetricSource`` over an ADS fleet: each Envoy's admin stats, diffed per Envoy, summed
    over the Envoys of the query's regions (``WindowQuery.regions``; empty: every Envoy).

    The cursor keeps each Envoy's last scrape under its node id, so an Envoy that joins starts from its
    own baseline and one that restarted is diffed as a reset counter. An Envoy that cannot be read
    fails the window (``MetricsError``): a partial sum would look like a traffic drop.
    """

    def __init__(self, fleet: Any, *, flush_interval_s: float = 1.0, settle_s: float | None = None,
                 timeout_s: float = 5.0, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(settle_s=flush_interval_s + 0.3 if settle_s is None else settle_s,
                         cluster_name=envoy_names.cluster_name, timeout_s=timeout_s, sleep=sleep, clock=clock)
        self.fleet = fleet  # rollwise.core.protocols.EnvoyFleet

    def _admins(self, regions: tuple[str, ...]) -> dict[str, str]:
        now = self._clock()
        return {n.node_id: f"http://{n.admin}" for n in self.fleet.nodes()
                if n.admin and n.live_at(now) and (not regions or n.region in regions)}

    def collect(self, query: WindowQuery) -> Window:
        self._wait_until_settled(query)
        previous = (query.cursor or {}).get("nodes")
        names = {v: self._cluster_name(query.rollout, v) for v in (query.baseline_version, query.canary_version)}
        pattern = "|".join(re.escape(c) for c in sorted(names.values()))
        scraped: dict[str, dict[str, ClusterSnapshot]] = {}
        for node_id, admin in self._admins(query.regions).items():
            try:
                response = self._http.get(f"{admin}/stats/prometheus", params={
                    "filter": rf"^cluster\.({pattern})\.(upstream_rq_[1-5]xx|upstream_rq_time)$"})
                response.raise_for_status()
            except httpx.HTTPError as exc:
                raise MetricsError(f"Envoy {node_id}: " + _failure(exc, admin, None)) from None
            scraped[node_id] = parse_cluster_stats(response.text, set(names.values()))
        cursor: dict[str, Any] = {"source": "envoy-fleet", "at": self._clock(), "nodes": scraped}
        if previous is None:
            return Window(query.start, query.end, None, None, cursor=cursor)

        def stats(version: str) -> VersionStats | None:
            name = names[version]
            parts = [diff_cluster(clusters[name], (previous.get(node_id) or {}).get(name))
                     for node_id, clusters in scraped.items() if name in clusters]
            return VersionStats.merge(parts) if parts else None

        return Window(query.start, query.end, stats(query.baseline_version), stats(query.canary_version),
                      cursor=cursor)
