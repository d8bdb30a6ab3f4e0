"""EnvoyMetricSource and ShadowComparator: what the windows say must equal what clients saw."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from rollwise.adapters.metrics.envoy import EnvoyMetricSource, diff_cluster
from rollwise.adapters.routers.envoy import EnvoyRouter
from rollwise.adapters.shadow.comparator import ShadowComparator
from rollwise.core.model import RouteState, Window, WindowQuery
from rollwise.demo.load import LoadGenerator
from support.processes import ServiceFactory


def query(start: float, end: float, cursor: dict[str, object] | None = None) -> WindowQuery:
    return WindowQuery("shop.eu", "shop", "v1", "v2", start, end, cursor)


def test_diff_treats_a_smaller_counter_as_an_envoy_restart() -> None:
    before = {
        "xx": {"2": 100, "5": 10},
        "buckets": [[10.0, 90], [20.0, 110], ["+Inf", 110]],
        "sum": 900.0,
        "count": 110,
    }
    after_restart = {"xx": {"2": 7, "5": 1}, "buckets": [[10.0, 6], [20.0, 8], ["+Inf", 8]], "sum": 50.0, "count": 8}
    stats = diff_cluster(after_restart, before)
    assert (stats.requests, stats.errors) == (8, 1)
    assert stats.latency_buckets == ((10.0, 6), (20.0, 8))
    assert stats.latency_sum_ms == 50.0

    grown = {
        "xx": {"2": 150, "5": 12},
        "buckets": [[10.0, 130], [20.0, 162], ["+Inf", 162]],
        "sum": 1400.0,
        "count": 162,
    }
    stats = diff_cluster(grown, before)
    assert (stats.requests, stats.errors) == (52, 2)
    assert stats.latency_buckets == ((10.0, 40), (20.0, 52))


@pytest.mark.envoy
@pytest.mark.timeout(90)
def test_windows_count_exactly_what_the_load_generator_saw_across_a_controller_restart(
    envoy_router: EnvoyRouter, start_service: ServiceFactory
) -> None:
    v1 = start_service("v1", latency_ms=3, latency_p99_ms=10)
    v2 = start_service("v2", error_rate=0.2, latency_ms=20, latency_p99_ms=40)
    envoy_router.register("shop.eu", "v1", v1.address)
    envoy_router.register("shop.eu", "v2", v2.address)
    envoy_router.apply("shop.eu", RouteState(stable="v1", canary="v2", canary_weight=40))
    source = EnvoyMetricSource(envoy_router.admin_url, flush_interval_s=envoy_router.stats_flush_interval_s)

    start = time.time()
    first = source.collect(query(start - 1, start))
    assert not first.has_data and first.cursor is not None  # first look only sets the baseline

    summary = LoadGenerator(envoy_router.listen_url, rate=150, duration_s=2).run()
    end = time.time()
    # The controller restarts: a new source gets the cursor back from the store as JSON.
    cursor = json.loads(json.dumps(first.cursor))
    restarted = EnvoyMetricSource(envoy_router.admin_url, flush_interval_s=envoy_router.stats_flush_interval_s)
    window = restarted.collect(query(start, end, cursor))

    assert window.baseline is not None and window.canary is not None
    assert summary.failures == summary.errors_by_version.get("v2", 0)  # only v2's own 500s
    assert window.baseline.requests == summary.by_version["v1"]
    assert window.canary.requests == summary.by_version["v2"]
    assert window.baseline.errors == 0
    assert window.canary.errors == summary.errors_by_version["v2"] > 0
    for stats in (window.baseline, window.canary):
        assert stats.latency_buckets[-1][1] == stats.requests  # histogram caught up after the flush
    # v2's median is 20 ms, v1's 3 ms: the buckets must tell them apart (shares, as the box is shared).
    assert window.canary.count_above(14) / window.canary.requests > 0.5
    assert (
        window.canary.latency_sum_ms / window.canary.requests
        > window.baseline.latency_sum_ms / window.baseline.requests
    )
    assert Window.from_dict(json.loads(json.dumps(window.to_dict()))).canary == window.canary

    quiet = restarted.collect(query(end, time.time(), window.cursor))
    assert quiet.baseline is not None and quiet.canary is not None
    assert (quiet.baseline.requests, quiet.canary.requests) == (0, 0)
    source.close()
    restarted.close()


@pytest.mark.envoy
@pytest.mark.timeout(90)
def test_shadow_comparator_counts_mismatches_and_users_never_see_the_shadow(
    envoy_router: EnvoyRouter, start_service: ServiceFactory
) -> None:
    primary = start_service("v1")
    shadow = start_service("v2", mismatch_rate=0.5, error_rate=0.1)
    with ShadowComparator(primary.address, shadow.address) as comparator:
        envoy_router.register("shop.eu", "v1", primary.address)
        envoy_router.register("shop.eu", "v2", shadow.address)
        envoy_router.register_mirror_target("shop.eu", "v2", comparator.address)
        envoy_router.apply("shop.eu", RouteState(stable="v1", mirror_to="v2", mirror_percent=100))
        source = EnvoyMetricSource(envoy_router.admin_url, shadow_stats_url=comparator.stats_url, settle_s=0)
        first = source.collect(query(time.time() - 1, time.time()))

        summary = LoadGenerator(envoy_router.listen_url, rate=100, duration_s=2).run()
        deadline = time.monotonic() + 10
        while comparator.stats()["mirrored"] < summary.sent and time.monotonic() < deadline:
            time.sleep(0.05)
        # The comparator counts a copy when it arrives; Envoy counts the mirror's answer when it is back.
        window = source.collect(query(time.time() - 3, time.time(), first.cursor))
        while (window.canary is None or window.canary.requests < summary.sent) and time.monotonic() < deadline:
            time.sleep(0.1)
            window = source.collect(query(time.time() - 3, time.time(), first.cursor))
        source.close()
        mismatch_examples = httpx.get(f"http://{comparator.address}/__shadow__/mismatches").json()

    assert summary.failures == 0 and summary.by_version == {"v1": summary.sent}
    stats = comparator.stats()
    assert stats["mirrored"] == stats["compared"] == summary.sent
    assert 0.3 * summary.sent < stats["mismatches"] < 0.85 * summary.sent
    assert 0 < stats["shadow_errors"] < 0.3 * summary.sent
    assert window.canary is not None
    assert window.canary.extra["compared"] == summary.sent
    assert window.canary.extra["mismatches"] == stats["mismatches"]
    # The mirror cluster's stats are the shadow's answers, relayed by the comparator.
    assert window.canary.requests == summary.sent and window.canary.errors == stats["shadow_errors"]
    assert mismatch_examples and {"path", "differ"} <= set(mismatch_examples[0])


@pytest.mark.timeout(30)
def test_identical_versions_do_not_mismatch_despite_different_version_labels(start_service: ServiceFactory) -> None:
    primary, shadow = start_service("v1"), start_service("v2")
    with ShadowComparator(primary.address, shadow.address) as comparator, httpx.Client() as client:
        for n in range(20):
            client.get(f"http://{comparator.address}/item/{n}")
    assert comparator.stats() == {
        "mirrored": 20,
        "compared": 20,
        "mismatches": 0,
        "shadow_errors": 0,
        "primary_errors": 0,
    }
