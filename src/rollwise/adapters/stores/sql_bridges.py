"""Bridge sessions (``rollwise.bridges``): what an Argo analysis run or a Flagger canary has been
judged on so far, one row per session, in the SQL store's database (table from migration
``bridge_sessions``).

Argo Rollouts and Flagger call every interval from any replica of ``rollwise serve``, so the windows
of one analysis live in the store, not in a process. Writes are optimistic: a row carries a revision,
and a save expecting an older one is refused (``False``), so two concurrent calls cannot both append
their window to the same history. Rows idle for longer than the caller's retention are pruned.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Double,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from rollwise.adapters.stores.sql import JSONColumn, SqlStore

metadata = MetaData()

bridge_sessions_table = Table(
    "bridge_sessions",
    metadata,
    Column("key", String(300), primary_key=True),
    Column("revision", Integer, nullable=False),
    Column("state", JSONColumn, nullable=False),
    Column("updated_at", Double, nullable=False),
    Index("ix_bridge_sessions_updated_at", "updated_at"),  # pruning idle sessions (migration bridge_sessions)
)


class SqlBridgeSessions:
    """Implements ``BridgeSessions`` on the store's database (a private in-memory one for other stores)."""

    def __init__(self, store: Any) -> None:
        self._owned = None if isinstance(store, SqlStore) else SqlStore("sqlite://")
        self._sql: SqlStore = store if self._owned is None else self._owned
        self._lock = threading.RLock() if self._owned is not None else None  # one shared in-memory connection

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        if self._lock is None:
            with self._sql.write() as conn:
                yield conn
            return
        with self._lock, self._sql.write() as conn:
            yield conn

    def load(self, key: str) -> tuple[dict[str, Any] | None, int]:
        """The session's state and revision (``None, 0`` when there is none)."""
        with self._write() as conn:
            row = conn.execute(select(bridge_sessions_table.c.state, bridge_sessions_table.c.revision)
                               .where(bridge_sessions_table.c.key == key)).first()
        return (None, 0) if row is None else (dict(row.state), int(row.revision))

    def save(self, key: str, state: dict[str, Any], at: float, revision: int) -> bool:
        """Store ``state`` if the row is still at ``revision`` (0: not there yet); False if someone was first."""
        table = bridge_sessions_table
        try:
            with self._write() as conn:
                if revision == 0:
                    conn.execute(insert(table).values(key=key, revision=1, state=state, updated_at=at))
                    return True
                result = conn.execute(update(table).where(table.c.key == key, table.c.revision == revision)
                                      .values(revision=revision + 1, state=state, updated_at=at))
                return bool(result.rowcount)
        except IntegrityError:
            return False

    def prune(self, before: float) -> int:
        """Forget sessions not touched since ``before``; how many went."""
        with self._write() as conn:
            result = conn.execute(delete(bridge_sessions_table).where(bridge_sessions_table.c.updated_at < before))
        return int(result.rowcount or 0)

    def close(self) -> None:
        if self._owned is not None:
            self._owned.close()
