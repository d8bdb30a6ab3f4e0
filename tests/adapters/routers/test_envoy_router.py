"""EnvoyRouter against a real Envoy and real upstream processes, under real load."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter, defaultdict

import httpx
import pytest

from rollwise.adapters.routers.envoy import EnvoyRouter, RouterError
from rollwise.core.model import RouteState
from rollwise.demo.load import LoadGenerator
from rollwise.envoy_names import cluster_name
from rollwise.spec.models import HeaderMatch, HeaderRouteSpec
from support.processes import ServiceFactory

pytestmark = [pytest.mark.envoy, pytest.mark.timeout(120)]


def versions_seen(url: str, n: int, headers: dict[str, str] | None = None) -> Counter[str]:
    with httpx.Client(base_url=url, timeout=5) as client:
        return Counter(client.get(f"/item/{i}", headers=headers).headers.get("x-version", "-") for i in range(n))


def test_canary_weight_splits_traffic(envoy_router: EnvoyRouter, start_service: ServiceFactory) -> None:
    v1, v2 = start_service("v1"), start_service("v2")
    envoy_router.register("shop", "v1", v1.address)
    envoy_router.register("shop", "v2", v2.address)

    envoy_router.apply("shop", RouteState(stable="v1", canary="v2", canary_weight=25))
    seen = versions_seen(envoy_router.listen_url, 400)

    assert set(seen) == {"v1", "v2"}
    assert 50 <= seen["v2"] <= 150  # 25 % of 400 = 100; binomial sd ≈ 8.7
    envoy_router.apply("shop", RouteState(stable="v1", canary="v2", canary_weight=0))
    assert versions_seen(envoy_router.listen_url, 50) == Counter({"v1": 50})


def test_zero_failed_requests_across_weight_changes_cutovers_and_removal(
    envoy_router: EnvoyRouter, start_service: ServiceFactory
) -> None:
    blue = start_service("blue", latency_ms=2, latency_p99_ms=8)
    green = start_service("green", latency_ms=2, latency_p99_ms=8)
    envoy_router.register("shop", "blue", blue.address)
    envoy_router.register("shop", "green", green.address)
    envoy_router.apply("shop", RouteState(stable="blue", canary="green", canary_weight=0))

    load = LoadGenerator(envoy_router.listen_url, rate=250, duration_s=8).start()
    weight_changes = cutovers = 0
    try:
        time.sleep(0.3)
        for step in range(50):
            weight = (step * 7) % 101
            envoy_router.apply("shop", RouteState(stable="blue", canary="green", canary_weight=weight, revision=step))
            weight_changes += 1
            time.sleep(0.03)
        for _ in range(5):
            envoy_router.apply("shop", RouteState(stable="blue", canary="green", canary_weight=100))
            time.sleep(0.15)
            envoy_router.apply("shop", RouteState(stable="blue", canary="green", canary_weight=0))
            time.sleep(0.15)
            cutovers += 1
        # Rollout done: green becomes the only version and blue's cluster is removed, under load.
        envoy_router.apply("shop", RouteState(stable="green"))
        time.sleep(0.3)
    finally:
        summary = load.wait()

    assert weight_changes == 50 and cutovers == 5
    assert summary.sent >= 1500
    assert summary.failures == 0, summary.error_examples
    assert summary.by_version.get("blue", 0) > 0 and summary.by_version.get("green", 0) > 0
    clusters = httpx.get(f"{envoy_router.admin_url}/clusters", params={"format": "json"}).json()
    names = {c["name"] for c in clusters.get("cluster_statuses", [])}
    assert cluster_name("shop", "green") in names
    assert cluster_name("shop", "blue") not in names


def test_rejected_config_raises_and_previous_routes_keep_serving(
    envoy_router: EnvoyRouter, start_service: ServiceFactory
) -> None:
    v1, v2 = start_service("v1"), start_service("v2")
    envoy_router.register("shop", "v1", v1.address)
    envoy_router.register("shop", "v2", v2.address)
    envoy_router.apply("shop", RouteState(stable="v1", canary="v2", canary_weight=0))

    invalid_regex = HeaderRouteSpec(name="bad", headers=[HeaderMatch(name="x-beta", regex="(unclosed")])
    with pytest.raises(RouterError, match="rejected"):
        envoy_router.apply(
            "shop", RouteState(stable="v1", canary="v2", canary_weight=100, header_routes=[invalid_regex])
        )

    assert versions_seen(envoy_router.listen_url, 30) == Counter({"v1": 30})
    on_disk = json.loads(envoy_router.rds_path.read_text())
    assert "unclosed" not in json.dumps(on_disk)  # a restart would not load the refused file
    assert envoy_router.routes()["shop"].canary_weight == 0
    envoy_router.apply("shop", RouteState(stable="v1", canary="v2", canary_weight=100))
    assert versions_seen(envoy_router.listen_url, 30) == Counter({"v2": 30})


def test_route_to_unregistered_version_raises_before_touching_envoy(envoy_router: EnvoyRouter) -> None:
    with pytest.raises(RouterError, match="'v9' has no upstream address"):
        envoy_router.apply("shop", RouteState(stable="v9"))


def test_killed_envoy_is_restarted_with_last_state_within_two_seconds(
    envoy_router: EnvoyRouter, start_service: ServiceFactory
) -> None:
    v1, v2 = start_service("v1"), start_service("v2")
    envoy_router.register("shop", "v1", v1.address)
    envoy_router.register("shop", "v2", v2.address)
    envoy_router.apply("shop", RouteState(stable="v1", canary="v2", canary_weight=100))
    old_pid = envoy_router.pid
    assert old_pid is not None

    os.kill(old_pid, signal.SIGKILL)
    killed_at = time.monotonic()
    answered_by = None
    while time.monotonic() - killed_at < 2.0:
        try:
            answered_by = httpx.get(f"{envoy_router.listen_url}/x", timeout=0.2).headers.get("x-version")
            if answered_by:
                break
        except httpx.HTTPError:
            time.sleep(0.02)

    assert answered_by == "v2"  # back within 2 s, with the last applied weights
    assert envoy_router.pid not in (None, old_pid)
    counted_by = time.monotonic() + 2.0  # the supervisor counts the restart once the new Envoy is ready
    while envoy_router.restarts == 0 and time.monotonic() < counted_by:
        time.sleep(0.01)
    assert envoy_router.restarts == 1
    envoy_router.apply("shop", RouteState(stable="v1", canary="v2", canary_weight=0))
    assert versions_seen(envoy_router.listen_url, 20) == Counter({"v1": 20})


def test_header_and_cookie_routes_send_matching_requests_to_canary(
    envoy_router: EnvoyRouter, start_service: ServiceFactory
) -> None:
    v1, v2 = start_service("v1"), start_service("v2")
    envoy_router.register("shop", "v1", v1.address)
    envoy_router.register("shop", "v2", v2.address)
    routes = [
        HeaderRouteSpec(name="testers", headers=[HeaderMatch(name="X-Beta", exact="yes")]),
        HeaderRouteSpec(name="cohort", cookie={"group": "beta"}),
    ]
    envoy_router.apply("shop", RouteState(stable="v1", canary="v2", canary_weight=0, header_routes=routes))
    url = envoy_router.listen_url

    assert versions_seen(url, 20, {"x-beta": "yes"}) == Counter({"v2": 20})
    assert versions_seen(url, 20, {"x-beta": "no"}) == Counter({"v1": 20})
    assert versions_seen(url, 20, {"cookie": "session=1; group=beta; theme=dark"}) == Counter({"v2": 20})
    assert versions_seen(url, 20, {"cookie": "group=beta"}) == Counter({"v2": 20})
    assert versions_seen(url, 20, {"cookie": "group=betamax"}) == Counter({"v1": 20})
    assert versions_seen(url, 20) == Counter({"v1": 20})


def test_sticky_header_keeps_each_user_on_one_version_and_canary_users_stay(
    envoy_router: EnvoyRouter, start_service: ServiceFactory
) -> None:
    v1, v2 = start_service("v1"), start_service("v2")
    envoy_router.register("shop", "v1", v1.address)
    envoy_router.register("shop", "v2", v2.address)

    def assignment() -> dict[str, set[str]]:
        seen: dict[str, set[str]] = defaultdict(set)
        with httpx.Client(base_url=envoy_router.listen_url, timeout=5) as client:
            for round_ in range(3):
                for user in range(60):
                    response = client.get(f"/item/{round_}", headers={"x-user": f"u{user}"})
                    seen[f"u{user}"].add(response.headers["x-version"])
        return seen

    envoy_router.apply("shop", RouteState(stable="v1", canary="v2", canary_weight=30, sticky_header="x-user"))
    first = assignment()
    assert all(len(versions) == 1 for versions in first.values())
    canary_users = {u for u, versions in first.items() if versions == {"v2"}}
    assert 0 < len(canary_users) < 60

    envoy_router.apply("shop", RouteState(stable="v1", canary="v2", canary_weight=60, sticky_header="x-user"))
    second = assignment()
    assert all(len(versions) == 1 for versions in second.values())
    assert all(second[u] == {"v2"} for u in canary_users)  # raising the weight moved no canary user back
    assert len([u for u, v in second.items() if v == {"v2"}]) > len(canary_users)


def test_mirrored_failing_shadow_never_reaches_the_client(
    envoy_router: EnvoyRouter, start_service: ServiceFactory
) -> None:
    v1, shadow = start_service("v1"), start_service("v2", error_rate=1.0)
    envoy_router.register("shop", "v1", v1.address)
    envoy_router.register("shop", "v2", shadow.address)
    envoy_router.apply("shop", RouteState(stable="v1", mirror_to="v2", mirror_percent=100))

    summary = LoadGenerator(envoy_router.listen_url, rate=150, duration_s=2).run()

    assert summary.failures == 0, summary.error_examples
    assert summary.by_version == {"v1": summary.sent}
    stats = httpx.get(
        f"{envoy_router.admin_url}/stats",
        params={"filter": rf"^cluster\.{cluster_name('shop', 'v2')}\.upstream_rq_5xx$"},
    ).text
    shadow_errors = int(stats.split(":")[1])
    assert shadow_errors >= summary.sent * 0.9  # the shadow did get (and fail) the mirrored copies


def test_mirror_percentage_mirrors_about_that_share(envoy_router: EnvoyRouter, start_service: ServiceFactory) -> None:
    v1, v2 = start_service("v1"), start_service("v2")
    envoy_router.register("shop", "v1", v1.address)
    envoy_router.register("shop", "v2", v2.address)
    envoy_router.apply("shop", RouteState(stable="v1", mirror_to="v2", mirror_percent=20))

    versions_seen(envoy_router.listen_url, 400)
    time.sleep(0.2)
    stats = httpx.get(
        f"{envoy_router.admin_url}/stats",
        params={"filter": rf"^cluster\.{cluster_name('shop', 'v2')}\.upstream_rq_2xx$"},
    ).text
    mirrored = int(stats.split(":")[1])
    assert 40 <= mirrored <= 130  # 20 % of 400 = 80; binomial sd = 8


def test_route_upstreams_need_no_register_and_a_retired_canary_drops_out(
    envoy_router: EnvoyRouter, start_service: ServiceFactory
) -> None:
    v1, v2 = start_service("v1"), start_service("v2")
    upstreams = {"v1": v1.address, "v2": v2.address}
    envoy_router.apply("shop", RouteState(stable="v1", canary="v2", canary_weight=100, upstreams=upstreams))
    assert versions_seen(envoy_router.listen_url, 10) == Counter({"v2": 10})

    # Rolled back and v2 stopped: the engine drops v2 from upstreams, weight 0.
    envoy_router.apply("shop", RouteState(stable="v1", canary="v2", canary_weight=0, upstreams={"v1": v1.address}))
    assert versions_seen(envoy_router.listen_url, 10) == Counter({"v1": 10})
    with pytest.raises(RouterError, match="'v2' has no upstream"):
        envoy_router.apply("shop", RouteState(stable="v1", canary="v2", canary_weight=5, upstreams={"v1": v1.address}))


def test_a_listener_that_cannot_bind_fails_the_start_loudly() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RouterError, match=f"could not listen on 127.0.0.1:{port}"):
            EnvoyRouter(listen=f"127.0.0.1:{port}")
