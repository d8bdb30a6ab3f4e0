"""The watch's records in the SQL store's database: the change log and incidents (migration ``watch_changes``).

Changes made outside rollwise (and rollwise's flag changes) are rows of ``watch_changes``; rollouts'
own changes are derived from their events when the log is read (``rollwise.watch.changes``), so the
log is this table merged with the rollouts' events. Incidents are rows of ``watch_incidents`` whose
``body`` is the incident's JSON; ``service``, ``status`` and times are columns for the queries.
A store without a database (``memory://``) gets a private in-memory SQLite one, as the audit log does.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Column, Connection, Double, Index, MetaData, String, Table, Text, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from rollwise.adapters.stores.sql import JSONColumn, SerialId, SqlStore
from rollwise.core.model import split_runs
from rollwise.watch.changes import Change, changes_from_rollout, merge
from rollwise.watch.changes import select as select_changes
from rollwise.watch.incidents import OPEN, Incident, IncidentAlreadyOpen

metadata = MetaData()

changes_table = Table(
    "watch_changes", metadata,
    Column("id", SerialId, primary_key=True, autoincrement=True),
    Column("service", String(255), nullable=False),
    Column("at", Double, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("version", String(255), nullable=True),
    Column("previous_version", String(255), nullable=True),
    Column("region", String(255), nullable=True),
    Column("scope", String(255), nullable=True),
    Column("description", Text, nullable=False),
    Column("actor", String(255), nullable=False),
    Column("source", String(255), nullable=False),
    Column("data", JSONColumn, nullable=False),
    Index("ix_watch_changes_service_at", "service", "at"),
    sqlite_autoincrement=True,
)

incidents_table = Table(
    "watch_incidents", metadata,
    Column("id", SerialId, primary_key=True, autoincrement=True),
    Column("service", String(255), nullable=False),
    Column("opened_at", Double, nullable=False),
    Column("status", String(16), nullable=False),
    Column("resolved_at", Double, nullable=True),
    Column("body", JSONColumn, nullable=False),
    Index("ix_watch_incidents_service_status", "service", "status"),
    # At most one open incident per service, whoever writes (migration ``one_open_incident``).
    Index("ux_watch_incidents_open_service", "service", unique=True,
          sqlite_where=text("status = 'open'"), postgresql_where=text("status = 'open'")),
    sqlite_autoincrement=True,
)


class SqlWatchStore:
    """``WatchStore`` on the rollouts' database (or a private in-memory one for a store without a database)."""

    def __init__(self, store: Any) -> None:
        self.rollouts = store
        self._owned = None if isinstance(store, SqlStore) else SqlStore("sqlite://")
        self._sql: SqlStore = store if isinstance(store, SqlStore) else self._owned  # type: ignore[assignment]
        self._lock = threading.RLock() if self._owned is not None else None

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._turn(), self._sql.write() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._turn(), self._sql.engine.connect() as conn:
            yield conn

    @contextmanager
    def _turn(self) -> Iterator[None]:
        if self._lock is None:
            yield
            return
        with self._lock:
            yield

    def close(self) -> None:
        if self._owned is not None:
            self._owned.close()

    # ------------------------------------------------------------ changes

    def record_change(self, change: Change) -> Change:
        row = {k: v for k, v in change.to_json().items() if k != "id"}
        with self._write() as conn:
            new_id = conn.execute(insert(changes_table).values(**row).returning(changes_table.c.id)).scalar_one()
        return Change.from_json({**change.to_json(), "id": f"c{new_id}"})

    def changes(self, service: str | None = None, since: float | None = None,
                until: float | None = None) -> list[Change]:
        """Recorded changes and the rollouts' own (derived from their events), oldest first."""
        query = select(changes_table)
        if since is not None:
            query = query.where(changes_table.c.at >= since)
        with self._read() as conn:
            rows = conn.execute(query.order_by(changes_table.c.at, changes_table.c.id)).mappings().all()
        recorded = [Change.from_json({**dict(r), "id": f"c{r['id']}"}) for r in rows]
        return select_changes(merge(recorded, self._rollout_changes(service)), service=service, since=since,
                              until=until)

    def _rollout_changes(self, service: str | None) -> list[Change]:
        found: list[Change] = []
        for record in self.rollouts.list():
            if service is not None and record.spec.service != service:
                continue
            for run in split_runs(self.rollouts.events(record.name)):
                found.extend(changes_from_rollout(record.spec.service, record.spec.region, run))
        return found

    # ------------------------------------------------------------ incidents

    def open_incident(self, incident: Incident) -> Incident:
        """Store ``incident`` with its id; ``IncidentAlreadyOpen`` if its service has one open already.

        The database enforces the "one open per service" rule (a partial unique index), so two
        watchers racing on one service (a lease that changed hands while its old holder stalled)
        cannot both open one: the second adopts the first's instead of acting again.
        """
        try:
            with self._write() as conn:
                new_id = conn.execute(insert(incidents_table).values(
                    service=incident.service, opened_at=incident.opened_at, status=incident.status,
                    resolved_at=incident.resolved_at, body=incident.to_json(),
                ).returning(incidents_table.c.id)).scalar_one()
                stored = Incident.from_json({**incident.to_json(), "id": int(new_id)})
                conn.execute(update(incidents_table).where(incidents_table.c.id == new_id)
                             .values(body=stored.to_json()))
        except IntegrityError:
            existing = self.incidents(service=incident.service, open_only=True)
            if not existing:
                raise
            raise IncidentAlreadyOpen(existing[-1]) from None
        return stored

    def save_incident(self, incident: Incident) -> None:
        with self._write() as conn:
            conn.execute(update(incidents_table).where(incidents_table.c.id == incident.id).values(
                status=incident.status, resolved_at=incident.resolved_at, body=incident.to_json()))

    def incidents(self, service: str | None = None, open_only: bool = False,
                  since: float | None = None) -> list[Incident]:
        query = select(incidents_table.c.body)
        if service is not None:
            query = query.where(incidents_table.c.service == service)
        if open_only:
            query = query.where(incidents_table.c.status == OPEN)
        if since is not None:
            query = query.where(incidents_table.c.opened_at >= since)
        with self._read() as conn:
            bodies = conn.execute(query.order_by(incidents_table.c.id)).scalars().all()
        return [Incident.from_json(body) for body in bodies]

    def incident(self, incident_id: int) -> Incident | None:
        with self._read() as conn:
            body = conn.execute(select(incidents_table.c.body).where(incidents_table.c.id == incident_id)).scalar()
        return None if body is None else Incident.from_json(body)
