"""``traffic.router: envoy-ads``: every Envoy of an ADS fleet routes the rollout as the store says.

The engine commits the route before it applies it, and the ADS server (``adapters/xds/server.py``,
in this process or another) serves the store's routes. So ``apply`` writes nothing: it waits, bounded,
until every live Envoy has confirmed a revision at least as new as the route's (the server records
that in the store per Envoy), and raises ``RouterError`` with Envoy's own message if one rejected it,
so a NACK becomes the rollout's error. An Envoy whose server died (no heartbeat) is not waited for:
it keeps serving its last config, and it is brought up to date when it reconnects.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rollwise.core.fleet import STALE_S, EnvoyNode
from rollwise.core.model import RouteState
from rollwise.core.protocols import EnvoyFleet, RouteRejected


class RouterError(RouteRejected, RuntimeError):
    """An Envoy refused the route, or the fleet did not confirm it in time; the previous state still serves."""


class EnvoyAdsRouter:
    """Implements ``TrafficRouter`` by waiting for the fleet's ACKs in the store."""

    def __init__(self, fleet: EnvoyFleet, *, poke: Callable[[], None] | None = None, timeout_s: float = 10.0,
                 poll_s: float = 0.005, stale_s: float = STALE_S, clock: Callable[[], float] = time.time) -> None:
        self.fleet = fleet
        self.poke = poke
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.stale_s = stale_s
        self._clock = clock

    def apply(self, rollout: str, route: RouteState) -> None:
        if self.poke is not None:
            self.poke()  # the server in this process reloads now instead of at its next poll
        deadline = time.monotonic() + self.timeout_s
        delay = self.poll_s
        while True:
            waiting = self.waiting_for(rollout, route.revision)
            if not waiting:
                return
            if time.monotonic() > deadline:
                names = ", ".join(f"{n.node_id} ({n.region or 'no region'})" for n in waiting)
                raise RouterError(f"{rollout}: route revision {route.revision} not confirmed within "
                                  f"{self.timeout_s:g}s by {names}")
            time.sleep(delay)
            delay = min(delay * 1.2, 0.02)

    def waiting_for(self, rollout: str, revision: int) -> list[EnvoyNode]:
        """Live Envoys that have not confirmed ``revision`` yet; raises on a NACK of it (or a newer one)."""
        now = self._clock()
        waiting = []
        for node in self.fleet.nodes():
            if not node.live_at(now, self.stale_s):
                continue
            if node.confirmed.get(rollout, -1) >= revision:
                continue
            if node.nacked.get(rollout, -1) >= revision:
                raise RouterError(f"Envoy {node.node_id} ({node.region or 'no region'}) rejected {rollout} "
                                  f"route revision {node.nacked[rollout]}: {node.nack_message}")
            waiting.append(node)
        return waiting
