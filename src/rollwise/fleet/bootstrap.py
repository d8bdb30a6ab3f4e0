"""An Envoy bootstrap for rollwise's ADS server (what ``rollwise fleet bootstrap`` writes; pure).

Every line here is a measured necessity (``shared/notes/ads.md``): the ``xds`` cluster must speak
HTTP/2 (without it Envoy waits ~30 s and comes up with no listener), a node id and cluster are
required, and a short retry back-off (0.1 s to 1 s) brings every Envoy back within about a second
of a restarted control plane. Region, zone, the listener's port and the admin address travel as
node metadata, which is how the server tells Envoys apart. Several Envoys on one host need
distinct ``--base-id`` values on their command lines.
"""

from __future__ import annotations

from typing import Any

from rollwise.envoy_names import LATENCY_BUCKETS_MS


def _socket(address: str) -> dict[str, Any]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"address {address!r} must be host:port")
    return {"socket_address": {"address": host.strip("[]"), "port_value": int(port)}}


def ads_bootstrap(node_id: str, *, ads: str, listen: str, admin: str, region: str | None = None,
                  zone: str | None = None, cluster: str = "rollwise", tls_cert: str | None = None,
                  tls_key: str | None = None, stats_flush_interval_s: float = 1.0,
                  delta: bool = False) -> dict[str, Any]:
    """The bootstrap of one Envoy: node identity and metadata, admin, and ADS at ``ads`` (host:port).

    ``delta`` asks for incremental xDS (``DELTA_GRPC``): updates carry only the resources that changed,
    which matters when an Envoy holds many rollouts' routes and clusters; the server speaks both."""
    if bool(tls_cert) != bool(tls_key):
        raise ValueError("give both tls_cert and tls_key, or neither")
    listen_socket = _socket(listen)["socket_address"]
    _socket(admin)
    metadata: dict[str, Any] = {"listen_address": listen_socket["address"],
                                "listen_port": listen_socket["port_value"], "admin": admin}
    for key, value in (("region", region), ("zone", zone), ("tls_cert", tls_cert), ("tls_key", tls_key)):
        if value:
            metadata[key] = value
    source = {"ads": {}, "resource_api_version": "V3"}
    return {
        "node": {"id": node_id, "cluster": cluster, "metadata": metadata,
                 **({"locality": {"region": region, "zone": zone or ""}} if region else {})},
        "admin": {"address": _socket(admin)},
        "dynamic_resources": {
            "ads_config": {"api_type": "DELTA_GRPC" if delta else "GRPC", "transport_api_version": "V3",
                           "grpc_services": [
                {"envoy_grpc": {"cluster_name": "rollwise_xds", "retry_policy": {
                    "retry_back_off": {"base_interval": "0.1s", "max_interval": "1s"}}}}]},
            "lds_config": source,
            "cds_config": source,
        },
        "static_resources": {"clusters": [{
            "name": "rollwise_xds", "type": "STATIC", "connect_timeout": "1s",
            "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}}},
            "load_assignment": {"cluster_name": "rollwise_xds", "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": _socket(ads)}}]}]},
        }]},
        "stats_flush_interval": f"{stats_flush_interval_s:g}s",
        "stats_config": {"histogram_bucket_settings": [
            {"match": {"prefix": "cluster."}, "buckets": list(LATENCY_BUCKETS_MS)}]},
    }
