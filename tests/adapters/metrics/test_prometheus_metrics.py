"""PrometheusMetricSource against a real Prometheus scraping a real Envoy under load."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from rollwise.adapters.metrics.prometheus import LocalPrometheus, PrometheusMetricSource
from rollwise.adapters.routers.envoy import EnvoyRouter
from rollwise.core.model import RouteState, WindowQuery
from rollwise.demo.load import LoadGenerator
from support.processes import ServiceFactory

pytestmark = [pytest.mark.envoy, pytest.mark.prometheus, pytest.mark.timeout(120)]


@pytest.fixture
def prometheus(envoy_router: EnvoyRouter, prometheus_binary: str) -> Iterator[LocalPrometheus]:
    """A Prometheus scraping ``envoy_router``'s admin every second (reuse it for PromQL rollouts)."""
    server = LocalPrometheus(targets=[f"127.0.0.1:{envoy_router.admin_port}"], binary=prometheus_binary)
    server.start()
    try:
        server.wait_for_scrape()
        yield server
    finally:
        server.stop()


def test_promql_windows_match_the_load(
    envoy_router: EnvoyRouter, prometheus: LocalPrometheus, start_service: ServiceFactory
) -> None:
    v1 = start_service("v1", latency_ms=2)
    v2 = start_service("v2", error_rate=0.25, latency_ms=30, latency_p99_ms=60)
    envoy_router.register("shop", "v1", v1.address)
    envoy_router.register("shop", "v2", v2.address)
    envoy_router.apply("shop", RouteState(stable="v1", canary="v2", canary_weight=50))
    time.sleep(2.5)  # a few scrapes of the fresh (zero) counters before the load starts

    start = time.time()
    # 8 s of load: a class's counter is born at its first response and increase() extrapolates it back by
    # up to half a scrape (1 s) of traffic; over 4 s that edge alone reached +21 % on a loaded CI machine.
    summary = LoadGenerator(envoy_router.listen_url, rate=100, duration_s=8).run()
    time.sleep(1.5)  # flat counters after the load, so the window's edges are quiet
    end = time.time()
    source = PrometheusMetricSource(prometheus.url)
    window = source.collect(WindowQuery("shop", "shop", "v1", "v2", start - 1, end))
    history = source.baseline_history(WindowQuery("shop", "shop", "v1", "v2", start - 1, end))
    source.close()
    assert history is not None and window.baseline is not None
    assert abs(history.requests - window.baseline.requests) <= 0.05 * window.baseline.requests

    assert window.baseline is not None and window.canary is not None
    # increase() extrapolates to the window's edges: close to the client's counts, not exact.
    for seen, stats in ((summary.by_version["v1"], window.baseline), (summary.by_version["v2"], window.canary)):
        assert seen * 0.85 <= stats.requests <= seen * 1.2
    assert window.baseline.errors == 0
    canary_error_rate = window.canary.errors / window.canary.requests
    seen_error_rate = summary.errors_by_version["v2"] / summary.by_version["v2"]
    # Envoy creates a class's counter at its first request, so increase() misses that first
    # count and extrapolates the series from mid-window: rates agree loosely, not exactly.
    assert abs(canary_error_rate - seen_error_rate) < 0.08
    assert window.canary.count_above(20) / window.canary.latency_buckets[-1][1] > 0.6  # median 30 ms
    assert window.baseline.count_above(20) / window.baseline.latency_buckets[-1][1] < 0.4


def test_missing_versions_are_no_data_and_bad_promql_is_reported(prometheus: LocalPrometheus) -> None:
    source = PrometheusMetricSource(prometheus.url, settle_s=0)
    now = time.time()
    window = source.collect(WindowQuery("nothing", "nothing", "a", "b", now - 10, now))
    assert window.baseline is None and window.canary is None and not window.has_data

    from rollwise.adapters.metrics.prometheus import PrometheusError

    with pytest.raises(PrometheusError, match="bad_data"):
        source.query("sum(rate(", now)
    source.close()
