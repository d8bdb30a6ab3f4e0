"""Bridge sessions in the store (SQLite and PostgreSQL): migrated in, optimistic saves, pruning."""

from __future__ import annotations

from rollwise.adapters.stores.sql import SqlStore
from rollwise.adapters.stores.sql_bridges import SqlBridgeSessions
from rollwise.core.memory_store import MemoryStore


def test_sessions_save_optimistically_and_prune(store_url: str) -> None:
    store = SqlStore(store_url)
    try:
        sessions = SqlBridgeSessions(store)
        assert sessions.load("argo:run-1") == (None, 0)
        assert sessions.save("argo:run-1", {"verdict": "continue", "windows": [1]}, 100.0, 0)
        assert not sessions.save("argo:run-1", {"verdict": "other"}, 100.0, 0)  # a second first writer loses
        state, revision = sessions.load("argo:run-1")
        assert state == {"verdict": "continue", "windows": [1]} and revision == 1
        assert sessions.save("argo:run-1", {"verdict": "rollback"}, 200.0, 1)
        assert not sessions.save("argo:run-1", {"verdict": "continue"}, 200.0, 1)  # stale revision
        assert sessions.load("argo:run-1") == ({"verdict": "rollback"}, 2)
        assert sessions.save("flagger:test/podinfo:1", {}, 50.0, 0)
        assert sessions.prune(before=150.0) == 1
        assert sessions.load("flagger:test/podinfo:1") == (None, 0)
        assert SqlBridgeSessions(SqlStore(store_url)).load("argo:run-1")[1] == 2  # another opener sees it
    finally:
        store.close()


def test_a_store_without_a_database_gets_a_private_one() -> None:
    sessions = SqlBridgeSessions(MemoryStore())
    assert sessions.save("k", {"a": 1}, 1.0, 0) and sessions.load("k") == ({"a": 1}, 1)
    sessions.close()
