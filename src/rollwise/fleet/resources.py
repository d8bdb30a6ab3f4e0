"""What each Envoy of a fleet should hold: listener, clusters and routes, built from the store's routes (pure).

The ADS server (``adapters/xds/``) sends these to Envoys; they are plain dicts in Envoy's JSON form
so they can be tested, diffed and hashed without Envoy or protobuf. Three rules shape them:

* Routes live in RDS, never inlined in the listener, so existing keep-alive connections take a new
  weight at once (measured: ``shared/notes/ads.md``).
* Each Envoy gets the canary weight of *its* region (``RouteState.weight_in``), so region waves
  need nothing else from the data plane.
* The version of a resource set is a hash of its content: a restarted server computes the same
  version from the same store, so no Envoy ever sees a "new" config that is really an old one.

An Envoy with a region also tells its upstreams where a request came in (``x-rollwise-region``,
overwriting whatever the client sent), so a service's logs and faults can be told apart by region.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rollwise.core.model import RolloutRecord, RouteState
from rollwise.envoy_names import cluster_name, header_matchers
from rollwise.spec.models import VersionRef

ROUTER = "envoy-ads"
LISTENER = "rollwise"
ROUTE_CONFIG = "rollwise"
STAT_PREFIX = "ingress"
REGION_HEADER = "x-rollwise-region"  # set by each Envoy on the requests it forwards: its own region

LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"

_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_ROUTER_FILTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"

# Retry only what never reached the application, so a failing canary's own 5xx stay visible.
_RETRY_POLICY = {"retry_on": "connect-failure,reset-before-request", "num_retries": 2}


class ResourceError(ValueError):
    """A rollout's route cannot be turned into Envoy resources (a version without any endpoint)."""


@dataclass(frozen=True)
class Node:
    """One Envoy as it introduced itself (node id and metadata from its bootstrap)."""

    id: str
    region: str | None = None
    zone: str | None = None
    listen_address: str = "127.0.0.1"
    listen_port: int = 10000
    admin: str | None = None  # host:port of its admin API, for metrics
    tls_cert: str | None = None  # paths on the Envoy's own machine
    tls_key: str | None = None

    @classmethod
    def from_metadata(cls, node_id: str, metadata: dict[str, Any]) -> Node:
        """Metadata numbers arrive as doubles (``listen_port: 10000.0``)."""

        def text(key: str) -> str | None:
            value = metadata.get(key)
            return str(value) if value not in (None, "") else None

        port = metadata.get("listen_port", 10000)
        return cls(id=node_id, region=text("region"), zone=text("zone"),
                   listen_address=text("listen_address") or "127.0.0.1", listen_port=int(float(port)),
                   admin=text("admin"), tls_cert=text("tls_cert"), tls_key=text("tls_key"))


@dataclass(frozen=True)
class Served:
    """One rollout an ADS fleet routes: its versions (for endpoints and protocols) and its desired route."""

    name: str
    route: RouteState
    versions: dict[str, VersionRef] = field(default_factory=dict)
    primary: bool = False  # owns the "*" virtual host (the oldest rollout)


def served_rollouts(records: Iterable[RolloutRecord]) -> list[Served]:
    """The rollouts whose spec says ``traffic.router: envoy-ads`` and that have deployed (begun)."""
    chosen = sorted((r for r in records if r.spec.traffic.router == ROUTER and r.step_started_at is not None),
                    key=lambda r: (r.created_at, r.name))
    return [Served(name=r.name, route=r.route, primary=i == 0,
                   versions={v.name: v for v in (r.spec.versions.stable, r.spec.versions.canary)})
            for i, r in enumerate(chosen)]


# ---------------------------------------------------------------- clusters


def _endpoints(served: Served, version: str) -> list[str]:
    ref = served.versions.get(version)
    if ref is not None and ref.addresses:
        return list(ref.addresses)
    address = served.route.upstreams.get(version) or (ref.address if ref is not None else None)
    if not address:
        raise ResourceError(f"{served.name}: version {version!r} has no address")
    return [address]


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def cluster(name: str, addresses: list[str], ref: VersionRef | None = None) -> dict[str, Any]:
    """One version's cluster: its endpoints (a pool), protocol, active health check and outlier detection."""
    hosts = [_split(a) for a in addresses]
    protocol = ref.protocol if ref is not None else "http1"
    h2 = protocol in ("http2", "grpc")
    http: dict[str, Any] = {"http2_protocol_options": {}} if h2 else {"http_protocol_options": {}}
    resource: dict[str, Any] = {
        "name": name,
        "type": "STATIC" if all(_is_ip(h) for h, _ in hosts) else "STRICT_DNS",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": h, "port_value": p}}}} for h, p in hosts]}]},
        # Close idle upstream connections before any sane server does (a classic source of rare 503s).
        "typed_extension_protocol_options": {_HTTP_OPTIONS: {
            "@type": f"type.googleapis.com/{_HTTP_OPTIONS}",
            "common_http_protocol_options": {"idle_timeout": "3s"},
            "explicit_http_config": http,
        }},
    }
    if ref is not None and ref.healthCheck is not None:
        check = ref.healthCheck
        http_check: dict[str, Any] = {"path": check.path}
        if protocol in ("http2", "grpc"):
            http_check["codec_client_type"] = "HTTP2"
        resource["health_checks"] = [{
            "timeout": _duration(check.timeout), "interval": _duration(check.interval),
            "unhealthy_threshold": check.unhealthyThreshold, "healthy_threshold": check.healthyThreshold,
            "http_health_check": http_check,
        }]
    if ref is not None and ref.outlierDetection is not None:
        outlier = ref.outlierDetection
        resource["outlier_detection"] = {
            "consecutive_5xx": outlier.consecutive5xx, "interval": _duration(outlier.interval),
            "base_ejection_time": _duration(outlier.baseEjectionTime),
            "max_ejection_percent": outlier.maxEjectionPercent,
        }
    return resource


def _duration(seconds: float) -> str:
    return f"{seconds:g}s"


def rollout_clusters(served: Served) -> dict[str, dict[str, Any]]:
    """Cluster name -> cluster for every version the rollout's route refers to."""
    route = served.route
    versions = [route.stable] + ([route.canary] if route.canary else [])
    clusters = {cluster_name(served.name, v): cluster(cluster_name(served.name, v), _endpoints(served, v),
                                                      served.versions.get(v)) for v in versions}
    if route.mirror_to and route.mirror_percent > 0 and route.mirror_to not in versions:
        name = cluster_name(served.name, route.mirror_to)
        clusters[name] = cluster(name, _endpoints(served, route.mirror_to), served.versions.get(route.mirror_to))
    return clusters


# ---------------------------------------------------------------- routes


def _route_action(served: Served, region: str | None) -> dict[str, Any]:
    route = served.route
    stable = cluster_name(served.name, route.stable)
    action: dict[str, Any] = {"timeout": "30s", "retry_policy": _RETRY_POLICY}
    if route.canary is None:
        action["cluster"] = stable
    else:
        # Basis points, so 0.5 % survives; zero weights are fine while the total is positive.
        canary_bp = max(0, min(10000, round(route.weight_in(region) * 100)))
        action["weighted_clusters"] = {"clusters": [
            {"name": stable, "weight": 10000 - canary_bp},
            {"name": cluster_name(served.name, route.canary), "weight": canary_bp},
        ]}
        if route.sticky_header:
            action["weighted_clusters"]["use_hash_policy"] = True
    if route.sticky_header:
        action["hash_policy"] = [{"header": {"header_name": route.sticky_header.lower()}}]
    if route.mirror_to and route.mirror_percent > 0:
        action["request_mirror_policies"] = [{
            "cluster": cluster_name(served.name, route.mirror_to),
            "runtime_fraction": {"default_value": {"numerator": round(route.mirror_percent * 10000),
                                                   "denominator": "MILLION"}},
            "disable_shadow_host_suffix_append": True,
        }]
    return action


def virtual_host(served: Served, region: str | None) -> dict[str, Any]:
    """The rollout's virtual host as an Envoy in ``region`` routes it (header routes first)."""
    route = served.route
    routes: list[dict[str, Any]] = []
    for spec in route.header_routes:
        if route.canary is None:
            raise ResourceError(f"{served.name}: header route {spec.name!r} needs a canary version")
        routes.append({"name": spec.name, "match": {"prefix": "/", "headers": header_matchers(spec)},
                       "route": {"cluster": cluster_name(served.name, route.canary), "timeout": "30s",
                                 "retry_policy": _RETRY_POLICY}})
    routes.append({"name": "default", "match": {"prefix": "/"}, "route": _route_action(served, region)})
    domains = ["*"] if served.primary else [served.name, f"{served.name}:*"]
    host: dict[str, Any] = {"name": served.name, "domains": domains, "routes": routes}
    if region is not None:
        host["request_headers_to_add"] = [{"header": {"key": REGION_HEADER, "value": region},
                                           "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]
    return host


def route_configuration(virtual_hosts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    return {"name": ROUTE_CONFIG, "validate_clusters": True,
            "virtual_hosts": sorted(virtual_hosts, key=lambda v: str(v["name"]))}


# ---------------------------------------------------------------- listener


def listener(node: Node) -> dict[str, Any]:
    """The node's one HTTP listener (port from its metadata), with routes over ADS and optional TLS."""
    hcm = {
        "@type": _HCM,
        "stat_prefix": STAT_PREFIX,
        "codec_type": "AUTO",  # HTTP/1.1 and HTTP/2 (gRPC clients) on the same port
        "rds": {"route_config_name": ROUTE_CONFIG, "config_source": {"ads": {}, "resource_api_version": "V3"}},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": _ROUTER_FILTER}}],
    }
    chain: dict[str, Any] = {"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                          "typed_config": hcm}]}
    if node.tls_cert and node.tls_key:
        chain["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": _TLS,
            "common_tls_context": {
                "tls_certificates": [{"certificate_chain": {"filename": node.tls_cert},
                                      "private_key": {"filename": node.tls_key}}],
                "alpn_protocols": ["h2", "http/1.1"],
            }}}
    return {"name": LISTENER, "address": {"socket_address": {"address": node.listen_address,
                                                             "port_value": node.listen_port}},
            "filter_chains": [chain]}


# ---------------------------------------------------------------- one node's view


def content_version(resources: Any) -> str:
    """A version named by content: the same resources always get the same version, in any process."""
    body = json.dumps(resources, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def resource_version(resource: dict[str, Any]) -> str:
    """One resource's version on an incremental (Delta xDS) stream: named by its content, like the sets'."""
    return content_version(resource)


@dataclass(frozen=True)
class Desired:
    """What the store wants, per rollout: its clusters, its virtual host per region, and its revision."""

    served: tuple[Served, ...]
    errors: dict[str, str] = field(default_factory=dict)  # rollout -> why it cannot be served

    def clusters(self, name: str) -> dict[str, dict[str, Any]]:
        served = self._get(name)
        return rollout_clusters(served) if served is not None else {}

    def _get(self, name: str) -> Served | None:
        return next((s for s in self.served if s.name == name), None)

    def names(self) -> list[str]:
        return [s.name for s in self.served]

    def revision(self, name: str) -> int:
        served = self._get(name)
        return served.route.revision if served is not None else 0

    def virtual_host(self, name: str, region: str | None) -> dict[str, Any] | None:
        served = self._get(name)
        return virtual_host(served, region) if served is not None else None


def desired_state(records: Iterable[RolloutRecord]) -> Desired:
    """The fleet's desired state from the store's records; a rollout that cannot be rendered is left out
    (and said why), so one broken rollout never takes the others' routes down."""
    good: list[Served] = []
    errors: dict[str, str] = {}
    for served in served_rollouts(records):
        try:
            rollout_clusters(served)
            virtual_host(served, None)
        except ResourceError as exc:
            errors[served.name] = str(exc)
            continue
        good.append(served)
    return Desired(tuple(good), errors)
