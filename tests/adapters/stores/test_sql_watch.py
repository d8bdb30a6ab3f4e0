"""The watch's change log and incidents in the SQL store, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from rollwise.adapters.stores.memory import MemoryStore
from rollwise.adapters.stores.sql import SqlStore
from rollwise.adapters.stores.sql_watch import SqlWatchStore
from rollwise.core.model import Event
from rollwise.watch.changes import ANY_SERVICE, Change, outside_change
from rollwise.watch.incidents import Action, Incident, IncidentAlreadyOpen
from support.migrations import migrate
from support.store import make_record


def test_recorded_changes_come_back_by_service_and_time(store_url: str) -> None:
    with SqlStore(store_url) as store:
        watch = SqlWatchStore(store)
        first = watch.record_change(outside_change(service="web", kind="deploy", at=100.0, version="v7",
                                                   region="eu", description="hotfix", actor="ana"))
        watch.record_change(outside_change(service="db", kind="config", at=200.0, description="pool 50"))
        watch.record_change(Change(service=ANY_SERVICE, at=300.0, kind="flag", scope="flag:checkout"))
        assert first.id == "c1"
        web = watch.changes(service="web")
        assert [(c.kind, c.service) for c in web] == [("deploy", "web"), ("flag", "*")]
        assert web[0].version == "v7" and web[0].region == "eu" and web[0].actor == "ana"
        assert [c.kind for c in watch.changes(since=150.0)] == ["config", "flag"]
        assert [c.kind for c in watch.changes(until=250.0)] == ["deploy", "config"]


def test_incidents_round_trip_with_actions_and_resolution(store_url: str) -> None:
    with SqlStore(store_url) as store:
        watch = SqlWatchStore(store)
        opened = watch.open_incident(Incident(service="web", opened_at=1000.0, onset=960.0, metric="error_rate",
                                              culprit={"id": "c1", "kind": "deploy"}, series=((950.0, 0.01),)))
        assert opened.id == 1 and watch.incident(1) == opened
        acted = opened.with_action(Action(at=1001.0, kind="undo", target="rollout:web", outcome="done",
                                          rule="confidence 0.9 >= 0.8")).resolved(1060.0)
        watch.save_incident(acted)
        watch.open_incident(Incident(service="db", opened_at=2000.0, onset=1990.0, metric="latency_p99"))
        back = watch.incident(1)
        assert back is not None and back.status == "resolved" and back.recovery_s == 60.0
        assert back.actions[0]["kind"] == "undo" and back.series == ((950.0, 0.01),)
        assert [i.service for i in watch.incidents(open_only=True)] == ["db"]
        assert [i.id for i in watch.incidents(service="web")] == [1]
        assert watch.incident(99) is None


def test_rollout_changes_are_derived_from_their_events() -> None:
    store = MemoryStore()
    record = make_record("web-release")
    name = record.name
    store.create(record, [Event(rollout=name, at=10.0, type="created", actor="ana",
                                message="rollout of checkout v1 -> v2 created (canary)")])
    store.save(store.get(name), [
        Event(rollout=name, at=20.0, type="step", message="weight 0% -> 10% (v2)", data={"weight": 10.0}),
        Event(rollout=name, at=30.0, type="phase", message="Succeeded", data={"phase": "Succeeded"}),
        Event(rollout=name, at=40.0, type="command", message="undo by ana", actor="ana",
              data={"command": "undo"}),
    ])
    kinds = [(c.kind, c.version, c.previous_version) for c in SqlWatchStore(store).changes(service=record.spec.service)]
    assert kinds == [("rollout-start", "v2", "v1"), ("rollout-step", "v2", "v1"), ("promotion", "v2", "v1"),
                     ("undo", "v1", "v2")]


def test_a_service_has_at_most_one_open_incident(store_url: str) -> None:
    with SqlStore(store_url) as store:
        watch = SqlWatchStore(store)
        first = watch.open_incident(Incident(service="web", opened_at=1000.0, onset=990.0, metric="errorRate"))
        with pytest.raises(IncidentAlreadyOpen) as taken:
            watch.open_incident(Incident(service="web", opened_at=1001.0, onset=991.0, metric="latency"))
        assert taken.value.incident == first
        other = watch.open_incident(Incident(service="db", opened_at=1001.0, onset=991.0, metric="errorRate"))
        watch.save_incident(first.resolved(1100.0))
        again = watch.open_incident(Incident(service="web", opened_at=1200.0, onset=1190.0, metric="errorRate"))
        assert len({first.id, other.id, again.id}) == 3
        assert [i.id for i in watch.incidents(open_only=True)] == [other.id, again.id]


def test_the_migration_keeps_the_newest_of_several_open_incidents(store_url: str) -> None:
    """Open duplicates written before the rule: the newest stays open, the older are resolved (with a note)."""
    with SqlStore(store_url, migrate=False) as old:
        migrate(old, "watch_changes")
        with old.write() as conn:
            for at in (100.0, 200.0, 300.0):
                body = json.dumps(Incident(service="web", opened_at=at, onset=at, metric="errorRate").to_json())
                conn.execute(text("INSERT INTO watch_incidents (service, opened_at, status, body) "
                                  "VALUES ('web', :at, 'open', :body)"), {"at": at, "body": body})
    with SqlStore(store_url) as upgraded:
        watch = SqlWatchStore(upgraded)
        assert [(i.opened_at, i.status) for i in watch.incidents(service="web")] == [
            (100.0, "resolved"), (200.0, "resolved"), (300.0, "open")]
        assert watch.incidents(service="web")[0].resolved_at == 300.0
        with pytest.raises(IncidentAlreadyOpen):
            watch.open_incident(Incident(service="web", opened_at=400.0, onset=400.0, metric="errorRate"))
