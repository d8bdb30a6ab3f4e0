"""The Envoy fleet's rows in the store (SQLite and PostgreSQL): replaced whole, heartbeats by server, the
clusters a node last ACKed kept aside, and only the rollouts that name the envoy-ads router marked."""

from __future__ import annotations

from rollwise.adapters.stores.sql import SqlStore
from rollwise.adapters.stores.sql_fleet import SqlEnvoyFleet
from rollwise.core.fleet import EnvoyNode
from rollwise.core.model import RolloutRecord, RouteState
from rollwise.spec.loader import load_spec_text

SPEC = """
name: {name}
service: s
versions:
  stable: {{name: v1, address: 127.0.0.1:9001}}
  canary: {{name: v2, address: 127.0.0.1:9002}}
traffic: {{router: {router}}}
strategy:
  canary:
    steps: [{{setWeight: 5}}]
"""


def test_nodes_are_replaced_whole_and_heartbeats_touch_only_the_servers_own(store_url: str) -> None:
    store = SqlStore(store_url)
    try:
        fleet = SqlEnvoyFleet(store)
        fleet.record_nodes([
            EnvoyNode("e1", region="eu", server="s1", connected=True, seen_at=10.0, versions={"rds": "abc"},
                      confirmed={"shop": 3}, acked_clusters={"version": "c1", "resources": {"shop-v1": {"name": "x"}}}),
            EnvoyNode("e2", region="us", server="s2", connected=True, seen_at=10.0),
        ])
        fleet.record_nodes([EnvoyNode("e1", region="eu", server="s1", connected=True, seen_at=11.0,
                                      confirmed={"shop": 4}, nacked={"cart": 2}, nack_message="bad regex")])
        fleet.heartbeat("s2", ["e1", "e2"], 20.0)
        nodes = {n.node_id: n for n in fleet.nodes()}
        assert nodes["e1"].confirmed == {"shop": 4} and nodes["e1"].versions == {}  # replaced, not merged
        assert nodes["e1"].nacked == {"cart": 2} and nodes["e1"].nack_message == "bad regex"
        assert nodes["e1"].seen_at == 11.0 and nodes["e2"].seen_at == 20.0  # s2 vouches only for its own
        assert fleet.acked_clusters("e1") is None and fleet.acked_clusters("nobody") is None
        fleet.record_nodes([EnvoyNode("e2", acked_clusters={"version": "c9", "resources": {}})])
        assert fleet.acked_clusters("e2") == {"version": "c9", "resources": {}}
        assert nodes["e1"].live_at(12.0) and not nodes["e1"].live_at(20.0)

        for name, router in (("shop", "envoy-ads"), ("other", "none")):
            spec = load_spec_text(SPEC.format(name=name, router=router))
            store.create(RolloutRecord(name=name, spec=spec, created_at=1, updated_at=1,
                                       route=RouteState(stable="v1")), [])
        assert fleet.route_marks() == {"shop": 1}
    finally:
        store.close()
