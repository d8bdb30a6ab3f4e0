"""The fleet's pure parts: resources per region, content versions, and the rules of one Envoy's stream."""

from __future__ import annotations

from typing import Any

import pytest

from rollwise.core.model import RouteState
from rollwise.fleet.bootstrap import ads_bootstrap
from rollwise.fleet.resources import (
    CLUSTER_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    Desired,
    Node,
    Served,
    cluster,
    content_version,
    listener,
    resource_version,
)
from rollwise.fleet.session import Session
from rollwise.spec.models import HeaderMatch, HeaderRouteSpec, HealthCheckSpec, OutlierDetectionSpec, VersionRef

UPSTREAMS = {"v1": "127.0.0.1:9001", "v2": "127.0.0.1:9002"}


def served(weight: float, revision: int, **route: Any) -> Desired:
    state = RouteState(stable="v1", canary="v2", canary_weight=weight, upstreams=UPSTREAMS, revision=revision, **route)
    return Desired((Served("shop", state, primary=True),))


def weights(vhost: dict[str, Any]) -> list[int]:
    default = vhost["routes"][-1]["route"]
    return [c["weight"] for c in default["weighted_clusters"]["clusters"]]


def test_each_region_gets_its_own_canary_weight() -> None:
    desired = served(10, 3, region_weights={"eu": 50.0})
    eu, us = desired.virtual_host("shop", "eu"), desired.virtual_host("shop", "us")
    assert eu is not None and us is not None
    assert weights(eu) == [5000, 5000]
    assert weights(us) == [10000, 0]  # a region not named in region_weights serves stable only


def test_an_envoy_names_its_region_to_the_upstreams_and_a_client_cannot_forge_it() -> None:
    desired = served(10, 3)
    eu, nowhere = desired.virtual_host("shop", "eu"), desired.virtual_host("shop", None)
    assert eu is not None and nowhere is not None
    assert eu["request_headers_to_add"] == [{"header": {"key": "x-rollwise-region", "value": "eu"},
                                             "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]
    assert "request_headers_to_add" not in nowhere


def test_versions_are_named_by_content_so_a_restarted_server_computes_the_same() -> None:
    one, two = served(20, 4), served(20, 4)
    assert content_version(one.virtual_host("shop", "eu")) == content_version(two.virtual_host("shop", "eu"))
    assert content_version(served(21, 5).virtual_host("shop", "eu")) != content_version(one.virtual_host("shop", "eu"))


def test_a_pool_with_health_checks_outlier_detection_and_grpc() -> None:
    ref = VersionRef(name="v2", addresses=["10.0.0.1:80", "10.0.0.2:80"], protocol="grpc",
                     healthCheck=HealthCheckSpec(path="/ready"),
                     outlierDetection=OutlierDetectionSpec(consecutive5xx=3))
    built = cluster("shop-v2", ref.addresses, ref)
    endpoints = built["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert [e["endpoint"]["address"]["socket_address"]["address"] for e in endpoints] == ["10.0.0.1", "10.0.0.2"]
    options = built["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "http2_protocol_options" in options["explicit_http_config"]
    assert built["health_checks"][0]["http_health_check"] == {"path": "/ready", "codec_client_type": "HTTP2"}
    assert built["outlier_detection"]["consecutive_5xx"] == 3
    assert cluster("shop-v1", ["db.internal:80"])["type"] == "STRICT_DNS"


def test_tls_on_the_listener_only_when_the_node_names_cert_and_key() -> None:
    plain = listener(Node("e1", listen_port=10001))
    assert "transport_socket" not in plain["filter_chains"][0]
    tls = listener(Node("e1", listen_port=10001, tls_cert="/c.pem", tls_key="/k.pem"))
    context = tls["filter_chains"][0]["transport_socket"]["typed_config"]["common_tls_context"]
    assert context["tls_certificates"][0]["private_key"] == {"filename": "/k.pem"}
    with pytest.raises(ValueError, match="tls_cert and tls_key"):
        ads_bootstrap("e1", ads="127.0.0.1:18000", listen="127.0.0.1:1", admin="127.0.0.1:2", tls_cert="/c.pem")


def test_node_metadata_arrives_with_numbers_as_doubles() -> None:
    node = Node.from_metadata("e1", {"region": "eu", "listen_port": 10002.0, "admin": "127.0.0.1:9901"})
    assert (node.region, node.listen_port, node.admin) == ("eu", 10002, "127.0.0.1:9901")


def _subscribe_all(session: Session, desired: Desired) -> None:
    for type_url in (CLUSTER_TYPE, LISTENER_TYPE):
        session.subscribe(type_url, [], "", desired)
    session.subscribe(ROUTE_TYPE, ["rollwise"], "", desired)


def _ack_everything(session: Session, desired: Desired) -> None:
    for _ in range(5):
        pushes = session.pending(desired)
        if not pushes:
            return
        for i, push in enumerate(pushes):
            session.sent(push, f"n{push.type_url}{push.version}{i}")
            session.ack(push.type_url, f"n{push.type_url}{push.version}{i}")


def test_routes_wait_for_their_clusters_and_removals_wait_for_the_routes() -> None:
    session = Session(Node("e1", region="eu"))
    desired = served(0, 1)
    _subscribe_all(session, desired)
    first = session.pending(desired)
    assert [p.type_url for p in first] == [CLUSTER_TYPE, LISTENER_TYPE]  # no routes before their clusters
    for push in first:
        session.sent(push, push.type_url)
        session.ack(push.type_url, push.type_url)
    routes = session.pending(desired)
    assert [p.type_url for p in routes] == [ROUTE_TYPE]
    session.sent(routes[0], "r1")
    session.ack(ROUTE_TYPE, "r1")
    assert session.confirmed(desired) == {"shop": 1}

    moved = Desired((Served("shop", RouteState(stable="v2", canary="v3", canary_weight=0, revision=2,
                                                upstreams={"v2": "127.0.0.1:9002", "v3": "127.0.0.1:9003"}),
                           primary=True),))
    grow = session.pending(moved)
    assert [p.type_url for p in grow] == [CLUSTER_TYPE]
    assert {r["name"] for r in grow[0].resources} == {"shop-v1", "shop-v2", "shop-v3"}  # grow first
    session.sent(grow[0], "c2")
    session.ack(CLUSTER_TYPE, "c2")
    routes = session.pending(moved)
    session.sent(routes[0], "r2")
    session.ack(ROUTE_TYPE, "r2")
    shrink = session.pending(moved)
    assert {r["name"] for r in shrink[0].resources} == {"shop-v2", "shop-v3"}  # then shrink
    session.sent(shrink[0], "c3")
    session.ack(CLUSTER_TYPE, "c3")
    assert session.confirmed(moved) == {"shop": 2}


def test_a_nack_holds_only_the_rollout_that_caused_it() -> None:
    session = Session(Node("e1", region="eu"))
    good = Served("cart", RouteState(stable="v1", canary="v2", canary_weight=10, upstreams=UPSTREAMS, revision=1))
    shop = Served("shop", RouteState(stable="v1", canary="v2", canary_weight=10, upstreams=UPSTREAMS, revision=1),
                  primary=True)
    desired = Desired((good, shop))
    _subscribe_all(session, desired)
    _ack_everything(session, desired)
    assert session.confirmed(desired) == {"cart": 1, "shop": 1}

    bad_route = shop.route.model_copy(update={"revision": 2, "header_routes": [
        HeaderRouteSpec(headers=[HeaderMatch(name="x-t", regex="(?=x)")])]})
    desired = Desired((good, Served("shop", bad_route, primary=True)))
    [push] = session.pending(desired)
    session.sent(push, "bad")
    session.nack(ROUTE_TYPE, "bad", "invalid perl operator: (?=")
    assert session.nacked == {"shop": 2}
    assert session.pending(desired) == []  # the held routes are what the Envoy already runs: nothing to resend

    cart_moves = good.route.model_copy(update={"canary_weight": 40, "revision": 2})
    desired = Desired((Served("cart", cart_moves), Served("shop", bad_route, primary=True)))
    [push] = session.pending(desired)
    vhosts = {v["name"]: v for v in push.resources[0]["virtual_hosts"]}
    assert len(vhosts["shop"]["routes"]) == 1  # shop held at what was accepted (no header route)
    session.sent(push, "ok")
    session.ack(ROUTE_TYPE, "ok")
    assert session.confirmed(desired) == {"cart": 2}
    assert session.nacked == {"shop": 2} and session.nack_message == "invalid perl operator: (?="


def test_a_reconnecting_envoy_that_presents_the_current_version_gets_nothing_new() -> None:
    desired = served(30, 7)
    first = Session(Node("e1", region="eu"))
    _subscribe_all(first, desired)
    _ack_everything(first, desired)
    again = Session(Node("e1", region="eu"))
    for type_url in (CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE):
        names = ["rollwise"] if type_url == ROUTE_TYPE else []
        again.subscribe(type_url, names, first.acked_version[type_url], desired)
    assert again.pending(desired) == []
    assert again.confirmed(desired) == {"shop": 7}


def test_an_envoy_reconnecting_behind_the_store_keeps_its_clusters_until_the_new_routes_are_acked() -> None:
    before = served(30, 7)
    first = Session(Node("e1", region="eu"))
    _subscribe_all(first, before)
    _ack_everything(first, before)
    moved = Desired((Served("shop", RouteState(stable="v2", canary="v3", canary_weight=0, revision=9,
                                                upstreams={"v2": "127.0.0.1:9002", "v3": "127.0.0.1:9003"}),
                           primary=True),))
    again = Session(Node("e1", region="eu"))  # a restarted server, the store moved on meanwhile
    again.recall(CLUSTER_TYPE, first.acked_version[CLUSTER_TYPE], first.acked[CLUSTER_TYPE])
    again.subscribe(CLUSTER_TYPE, [], first.acked_version[CLUSTER_TYPE], moved)
    again.subscribe(ROUTE_TYPE, ["rollwise"], first.acked_version[ROUTE_TYPE], moved)
    [grow] = again.pending(moved)
    assert {r["name"] for r in grow.resources} == {"shop-v1", "shop-v2", "shop-v3"}  # v1 kept: its routes still run


def test_an_incremental_stream_sends_only_what_changed_and_names_what_to_remove() -> None:
    session = Session(Node("e1", region="eu"))
    desired = served(0, 1)
    for type_url in (CLUSTER_TYPE, LISTENER_TYPE):
        session.subscribe_delta(type_url, [], {}, desired)
    session.subscribe_delta(ROUTE_TYPE, ["rollwise"], {}, desired)
    _ack_everything(session, desired)
    assert session.confirmed(desired) == {"shop": 1}

    moved = Desired((Served("shop", RouteState(stable="v2", canary="v3", canary_weight=0, revision=2,
                                                upstreams={"v2": "127.0.0.1:9002", "v3": "127.0.0.1:9003"}),
                           primary=True),))
    (grow,) = session.pending(moved)
    changed, removed = session.difference(grow)
    assert [r["name"] for r in changed] == ["shop-v3"] and removed == []  # v1 and v2 are held as they are
    session.sent(grow, "c2")
    session.ack(CLUSTER_TYPE, "c2")
    (routes,) = session.pending(moved)
    assert session.difference(routes)[0] == routes.resources  # the one route configuration changed
    session.sent(routes, "r2")
    session.ack(ROUTE_TYPE, "r2")
    (shrink,) = session.pending(moved)
    assert session.difference(shrink) == ([], ["shop-v1"])  # removed once the routes without it are ACKed


def test_an_incremental_reconnect_presenting_current_versions_is_sent_nothing() -> None:
    """What a restarted server tells an Envoy that presents ``initial_resource_versions``: nothing when they
    are what the store wants; only the resource that differs otherwise."""
    desired = served(20, 3)
    first = Session(Node("e1", region="eu"))
    for type_url in (CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE):
        first.subscribe_delta(type_url, [], {}, desired)
    _ack_everything(first, desired)
    held = {t: {n: resource_version(r) for n, r in first.acked[t].items()} for t in first.acked}

    again = Session(Node("e1", region="eu"))
    for type_url in (CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE):
        again.subscribe_delta(type_url, [], held[type_url], desired)
    assert again.pending(desired) == []
    assert again.confirmed(desired) == {"shop": 3}

    stale = {**held[CLUSTER_TYPE], "shop-v2": "0123456789abcdef", "shop-old": "fedcba9876543210"}
    behind = Session(Node("e1", region="eu"))
    behind.subscribe_delta(CLUSTER_TYPE, [], stale, desired)
    (push,) = behind.pending(desired)
    changed, removed = behind.difference(push)
    assert [r["name"] for r in changed] == ["shop-v2"] and removed == []  # shop-old goes once routes are current
