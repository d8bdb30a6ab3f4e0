"""What ``rollwise controllers`` shows: each controller, whether it is alive, and the rollouts it holds."""

from __future__ import annotations

from typing import Any

from rollwise.core.fleet import EnvoyNode
from rollwise.core.leases import ControllerSeen, Lease


def fleet_view(controllers: list[ControllerSeen], leases: list[Lease], now: float) -> list[dict[str, Any]]:
    """One entry per controller (alive first), with its held leases; unheld due leases under ``None``."""
    held: dict[str | None, list[dict[str, Any]]] = {}
    for lease in leases:
        holder = lease.holder if lease.held_at(now) else None
        held.setdefault(holder, []).append(
            {"rollout": lease.rollout, "token": lease.token, "expires_in": round(lease.expires_at - now, 1)
             if holder else None, "last_holder": lease.holder})
    rows = [
        {"id": c.id, "alive": c.alive_at(now), "seen_ago": round(now - c.seen_at, 1), "ttl": c.ttl,
         "leases": held.get(c.id, [])}
        for c in sorted(controllers, key=lambda c: (not c.alive_at(now), c.id))
    ]
    unheld = held.get(None, [])
    if unheld:
        rows.append({"id": None, "alive": False, "seen_ago": None, "ttl": None, "leases": unheld})
    return rows


def render_fleet(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return ["no controllers have run on this store (or it keeps no leases)"]
    lines = []
    for row in rows:
        names = ", ".join(f"{lease['rollout']}#{lease['token']}" for lease in row["leases"]) or "-"
        if row["id"] is None:
            lines.append(f"{'(unheld)':<28} {'':<6} {'':<10} {names}")
            continue
        state = "alive" if row["alive"] else "gone"
        lines.append(f"{row['id']:<28} {state:<6} seen {row['seen_ago']:>5}s ago  {names}")
    return lines


def envoy_rows(nodes: list[EnvoyNode], now: float) -> list[dict[str, Any]]:
    """What ``rollwise fleet list`` shows per Envoy: live ones first, by region, then node id."""
    ordered = sorted(nodes, key=lambda n: (not n.live_at(now), n.region or "", n.node_id))
    return [{**n.to_dict(now), "seen_ago": round(now - n.seen_at, 1)} for n in ordered]


def render_envoys(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return ["no Envoy has connected to an ADS server of this store (rollwise serve --ads-listen HOST:PORT)"]
    lines = [f"{'NODE':<20} {'REGION':<12} {'ZONE':<10} {'STATE':<12} {'XDS':<6} {'RDS VERSION':<17} "
             "ROUTES (rollout@revision)"]
    for row in rows:
        state = "connected" if row["live"] else "gone" if not row["connected"] else "stale"
        routes = ", ".join(f"{name}@{rev}" for name, rev in sorted(row["confirmed"].items())) or "-"
        lines.append(f"{row['node_id']:<20} {row['region'] or '-':<12} {row['zone'] or '-':<10} {state:<12} "
                     f"{row.get('protocol', 'sotw'):<6} {row['versions'].get('rds', '-'):<17} {routes}")
        if row["nacked"]:
            nacked = ", ".join(f"{name}@{rev}" for name, rev in sorted(row["nacked"].items()))
            lines.append(f"{'':<20} NACK {nacked}: {row['nack_message']}")
    return lines
