"""One Envoy of an ADS fleet as the store remembers it: who it is, where, and what it accepted (pure values).

The ADS server writes these rows (``adapters/xds/``) and the ``envoy-ads`` router reads them, so the
two may run in different processes (``rollwise serve`` and ``rollwise controller``): an ACK or a NACK
reaches the router through the store, never through memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STALE_S = 5.0
"""A connected Envoy whose server has not vouched for it for this long is treated as gone (its server died)."""


@dataclass(frozen=True)
class EnvoyNode:
    node_id: str
    region: str | None = None
    zone: str | None = None
    admin: str | None = None  # host:port of the Envoy's admin API
    listen: str | None = None  # host:port of its listener
    server: str | None = None  # which ADS server holds (or last held) its stream
    connected: bool = False
    seen_at: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)  # xDS type (cds/lds/rds) -> version it ACKed
    confirmed: dict[str, int] = field(default_factory=dict)  # rollout -> route revision it serves
    nacked: dict[str, int] = field(default_factory=dict)  # rollout -> route revision it rejected
    nack_message: str | None = None
    nack_at: float | None = None
    protocol: str = "sotw"  # its stream's xDS flavour: "sotw" (state of the world) or "delta" (incremental)
    # The clusters it last ACKed ({"version": v, "resources": {name: cluster}}): written, never listed, and read
    # back by a restarted server (``EnvoyFleet.acked_clusters``) so a reconnecting Envoy's clusters are known.
    acked_clusters: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def live_at(self, now: float, stale_s: float = STALE_S) -> bool:
        """Connected, and its server vouched for it recently (a SIGKILLed server leaves ``connected`` set)."""
        return self.connected and now - self.seen_at <= stale_s

    def to_dict(self, now: float | None = None) -> dict[str, Any]:
        data = {
            "node_id": self.node_id, "region": self.region, "zone": self.zone, "admin": self.admin,
            "listen": self.listen, "server": self.server, "connected": self.connected, "seen_at": self.seen_at,
            "versions": dict(self.versions), "confirmed": dict(self.confirmed), "nacked": dict(self.nacked),
            "nack_message": self.nack_message, "nack_at": self.nack_at, "protocol": self.protocol,
        }
        if now is not None:
            data["live"] = self.live_at(now)
        return data
