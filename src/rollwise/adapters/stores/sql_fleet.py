"""The Envoys of an ADS fleet in the SQL store: one row per node id (``EnvoyFleet``).

JSON maps are kept as text so the same statements run on SQLite and PostgreSQL; rows are small and
written only on an ACK, a NACK, a (dis)connect, or a heartbeat (one ``UPDATE`` per server per second).
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Boolean, Column, Double, String, Table, Text, cast, delete, insert, select, update

from rollwise.adapters.stores.sql import SqlStore, metadata, rollouts_table
from rollwise.core.fleet import EnvoyNode

envoy_nodes_table = Table(
    "envoy_nodes",
    metadata,
    Column("node_id", String(255), primary_key=True),
    Column("region", String(255), nullable=True),
    Column("zone", String(255), nullable=True),
    Column("admin", String(255), nullable=True),
    Column("listen", String(255), nullable=True),
    Column("server", String(255), nullable=True),
    Column("connected", Boolean, nullable=False),
    Column("seen_at", Double, nullable=False),
    Column("versions", Text, nullable=False),
    Column("confirmed", Text, nullable=False),
    Column("nacked", Text, nullable=False),
    Column("nack_message", Text, nullable=True),
    Column("nack_at", Double, nullable=True),
    Column("clusters", Text, nullable=True),
    Column("protocol", String(16), nullable=True),  # migration envoy_protocol; NULL: state of the world
)


class SqlEnvoyFleet:
    """``EnvoyFleet`` beside the rollouts in ``store``'s database."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store

    def record_nodes(self, nodes: Sequence[EnvoyNode]) -> None:
        if not nodes:
            return
        rows: list[dict[str, Any]] = [{
            "node_id": node.node_id, "region": node.region, "zone": node.zone, "admin": node.admin,
            "listen": node.listen, "server": node.server, "connected": node.connected, "seen_at": node.seen_at,
            "versions": json.dumps(node.versions), "confirmed": json.dumps(node.confirmed),
            "nacked": json.dumps(node.nacked), "nack_message": node.nack_message, "nack_at": node.nack_at,
            "clusters": json.dumps(node.acked_clusters) if node.acked_clusters is not None else None,
            "protocol": node.protocol,
        } for node in nodes]
        with self.store.write() as conn:  # delete + insert: the same on both databases, in one transaction
            conn.execute(delete(envoy_nodes_table).where(envoy_nodes_table.c.node_id.in_([r["node_id"] for r in rows])))
            conn.execute(insert(envoy_nodes_table), rows)

    def heartbeat(self, server: str, node_ids: Sequence[str], at: float) -> None:
        if not node_ids:
            return
        with self.store.write() as conn:
            conn.execute(update(envoy_nodes_table)
                         .where(envoy_nodes_table.c.server == server, envoy_nodes_table.c.node_id.in_(list(node_ids)))
                         .values(seen_at=at))

    def nodes(self) -> builtins.list[EnvoyNode]:
        columns = [c for c in envoy_nodes_table.c if c.name != "clusters"]
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(*columns).order_by(envoy_nodes_table.c.region,
                                                                   envoy_nodes_table.c.node_id)).all()
        return [EnvoyNode(node_id=r.node_id, region=r.region, zone=r.zone, admin=r.admin, listen=r.listen,
                          server=r.server, connected=bool(r.connected), seen_at=float(r.seen_at),
                          versions=json.loads(r.versions), confirmed=json.loads(r.confirmed),
                          nacked=json.loads(r.nacked), nack_message=r.nack_message, nack_at=r.nack_at,
                          protocol=r.protocol or "sotw")
                for r in rows]

    def acked_clusters(self, node_id: str) -> dict[str, Any] | None:
        with self.store.engine.connect() as conn:
            raw = conn.execute(select(envoy_nodes_table.c.clusters)
                               .where(envoy_nodes_table.c.node_id == node_id)).scalar_one_or_none()
        return json.loads(raw) if raw else None

    def route_marks(self) -> dict[str, int]:
        """Revisions of the rollouts whose spec names the ``envoy-ads`` router (a text match on the stored spec,
        the same on SQLite and PostgreSQL), so the ADS server never loads the other rollouts' records."""
        ads_only = cast(rollouts_table.c.spec, Text).like('%"envoy-ads"%')
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(rollouts_table.c.name, rollouts_table.c.revision).where(ads_only)).all()
        return {r.name: int(r.revision) for r in rows}
