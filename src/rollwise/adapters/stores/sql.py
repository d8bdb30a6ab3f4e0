"""The durable ``Store``: SQLite file by default, PostgreSQL by URL, both through SQLAlchemy Core.

Why it is shaped like this:

* Every ``save`` is one database transaction, so a writer killed with ``kill -9`` leaves either the
  whole save (record + events + windows) or none of it; the database's own recovery does the rest.
* Two processes (say the CLI and the API server) may drive the same rollout. A ``revision`` column
  turns a lost update into a ``ConflictError``: ``UPDATE ... WHERE name = ? AND revision = ?``
  touching no row means someone else saved first. The per-rollout event ``seq`` is allocated while
  that row is held, so it is gap-free and strictly increasing whoever writes.
* SQLite runs in WAL mode (readers never wait for the writer) and every write transaction starts
  with ``BEGIN IMMEDIATE``: a writer takes the write lock up front and waits ``busy_timeout`` for it,
  instead of failing half-way when it upgrades a read lock.
* The schema is owned by Alembic migrations shipped inside the package and applied on open, so an
  installed ``rollwise`` upgrades its own database; PostgreSQL serialises concurrent openers with an
  advisory lock, SQLite with the immediate write lock.

Re-creating a finished rollout (a new release under the same name) keeps its event history: the
new run's events continue the ``seq`` numbering after the old ones (the caller's ``started`` event
marks where the new run begins), the revision counter continues too, so a stale writer of the old
run can never match a revision of the new one, and ``windows()`` only returns the new run's
windows (rows carry a ``generation``).
"""

from __future__ import annotations

import builtins
import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.util.exc import CommandError as AlembicError
from pydantic_core import to_jsonable_python
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    Double,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError, IntegrityError, SQLAlchemyError
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.elements import ColumnElement

from rollwise.core.model import AppliedRoute, Event, Phase, RolloutHead, RolloutRecord, Window
from rollwise.core.protocols import ConflictError, NotFoundError, StageWindow, StoreMissing, StoreUnavailable

DEFAULT_STORE_PATH = "~/.rollwise/rollwise.db"
MIGRATIONS = "rollwise.adapters.stores:migrations"
VERSION_TABLE = "rollwise_schema_version"
SQLITE_BUSY_TIMEOUT_S = 30.0
_MIGRATION_LOCK_KEY = 0x726F6C6C77697365  # "rollwise" as a 64-bit advisory lock key
_TERMINAL_PHASES = [phase.value for phase in Phase if phase.terminal]

# ---------------------------------------------------------------- schema (mirrors the migrations)

JSONColumn = JSON().with_variant(JSONB(), "postgresql")
SerialId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER keys only

metadata = MetaData()

rollouts_table = Table(
    "rollouts",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("revision", Integer, nullable=False),
    Column("generation", Integer, nullable=False),
    Column("phase", String(32), nullable=False),
    Column("spec", JSONColumn, nullable=False),
    Column("state", JSONColumn, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    # What a runner must act on, readable without loading the state (``due``): the desired route
    # revision, the one the data plane confirmed (written by runners, outside ``revision``), and
    # when an ended rollout's unrouted versions are to be stopped.
    Column("route_revision", Integer, nullable=False, server_default="0"),
    Column("applied_route_revision", Integer, nullable=True),
    Column("applied_route_at", Double, nullable=True),
    Column("retire_at", Double, nullable=True),
)

events_table = Table(
    "events",
    metadata,
    Column("id", SerialId, primary_key=True, autoincrement=True),
    Column("rollout", String(255), ForeignKey("rollouts.name"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("at", Double, nullable=False),
    Column("actor", String(255), nullable=False),
    Column("type", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Column("data", JSONColumn, nullable=False),
    UniqueConstraint("rollout", "seq", name="uq_events_rollout_seq"),
    sqlite_autoincrement=True,
)

windows_table = Table(
    "windows",
    metadata,
    Column("id", SerialId, primary_key=True, autoincrement=True),
    Column("rollout", String(255), ForeignKey("rollouts.name"), nullable=False),
    Column("generation", Integer, nullable=False),
    Column("stage", Integer, nullable=False),
    Column("start", Double, nullable=False),
    Column("end", Double, nullable=False),
    Column("data", JSONColumn, nullable=False),
    Index("ix_windows_rollout_generation_stage", "rollout", "generation", "stage"),
)

kpi_samples_table = Table(
    "kpi_samples",
    metadata,
    Column("id", SerialId, primary_key=True, autoincrement=True),
    Column("rollout", String(255), nullable=False),
    Column("version", String(255), nullable=False),
    Column("metric", String(255), nullable=False),
    Column("value", Double, nullable=False),
    Column("at", Double, nullable=False),
    Index("ix_kpi_samples_rollout_version_at", "rollout", "version", "at"),
)

# Tables other parts of rollwise (API, notifiers, reports) read and write through their own code.

audit_log_table = Table(
    "audit_log",
    metadata,
    Column("id", SerialId, primary_key=True, autoincrement=True),
    Column("at", Double, nullable=False),
    Column("actor", String(255), nullable=False),
    Column("role", String(64), nullable=False),
    Column("action", String(255), nullable=False),
    Column("target", String(255), nullable=False),
    Column("before", JSONColumn, nullable=True),
    Column("after", JSONColumn, nullable=True),
    Column("reason", Text, nullable=True),
    Column("prev_hash", String(128), nullable=True),
    Column("hash", String(128), nullable=False, unique=True),
    sqlite_autoincrement=True,
)

api_tokens_table = Table(
    "api_tokens",
    metadata,
    Column("id", SerialId, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False),
    Column("role", String(64), nullable=False),
    Column("token_hash", String(128), nullable=False, unique=True),
    Column("created_at", Double, nullable=False),
    Column("revoked_at", Double, nullable=True),
)

notifications_table = Table(
    "notifications",
    metadata,
    Column("id", SerialId, primary_key=True, autoincrement=True),
    Column("rollout", String(255), nullable=False),
    Column("event_seq", Integer, nullable=False),
    Column("channel", String(64), nullable=False),
    Column("status", String(32), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("response", Text, nullable=True),
    Column("at", Double, nullable=False),
    Index("ix_notifications_rollout_event_seq", "rollout", "event_seq"),
)


# ---------------------------------------------------------------- URLs


def default_store_url() -> str:
    """``ROLLWISE_STORE`` if set, else a SQLite file in ``~/.rollwise`` (created on first write)."""
    configured = os.environ.get("ROLLWISE_STORE", "").strip()
    return normalize_store_url(configured or DEFAULT_STORE_PATH)


def normalize_store_url(value: str) -> str:
    """Accept what a person types: a plain file path, ``~`` in SQLite paths, ``postgresql://``.

    Plain ``postgresql://`` would make SQLAlchemy look for psycopg2; rollwise ships psycopg 3.
    Raises ``StoreUnavailable`` for anything that is neither SQLite nor PostgreSQL.
    """
    value = value.strip()
    if "://" not in value:
        value = "sqlite:///" + value
    try:
        url = make_url(value)
    except ArgumentError:
        raise StoreUnavailable(f"{value.split('://')[0]}://…: not a store URL; {_URL_HINT}") from None
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise StoreUnavailable(f"unknown store scheme {url.drivername!r}; {_URL_HINT}")
    if _sqlite_file(url) is not None:
        url = url.set(database=str(_sqlite_file(url)))
    return url.render_as_string(hide_password=False)


_URL_HINT = "use a file path, sqlite:///PATH or postgresql://USER@HOST:PORT/DB"


def sqlite_path(url: str) -> Path | None:
    """The SQLite file a store URL names (None for PostgreSQL or an in-memory database)."""
    return _sqlite_file(make_url(normalize_store_url(url)))


def _sqlite_file(url: URL) -> Path | None:
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database).expanduser()


def _create_private_file(path: Path) -> None:
    """A new SQLite file readable by its owner only, in a folder only the owner can enter.

    SQLite gives its -wal and -shm files the database file's mode, so they stay private too. An
    existing folder or file keeps the mode its owner chose.
    """
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def _why(exc: BaseException) -> str:
    """The first line of a driver's error, without SQLAlchemy's background link."""
    original = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    return lines[0] if lines else type(original).__name__


def _finite(value: Any) -> Any:
    """JSON has no NaN/Infinity (PostgreSQL rejects them): store them as null, as pydantic does."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _json_dumps(value: Any) -> str:
    plain = to_jsonable_python(value)
    text = json.dumps(plain, separators=(",", ":"))
    if "NaN" not in text and "Infinity" not in text:  # a record mostly: nothing to clean, no walk over every value
        return text
    return json.dumps(_finite(plain), allow_nan=False, separators=(",", ":"))


def _record_json(record: RolloutRecord) -> dict[str, Any]:
    """The record as plain JSON values that ``RolloutRecord.model_validate`` turns back into it.

    Python-mode dumps, not mode="json": the spec's JSON serializer rounds durations for humans
    ("1.5s" -> "2s"). The spec drops its unset options (every optional spec field defaults to
    None), because a canary step written back with all five step kinds as keys fails validation.
    """
    dumped: dict[str, Any] = to_jsonable_python(record.model_dump(mode="python", exclude={"spec"}))
    dumped["spec"] = to_jsonable_python(record.spec.model_dump(mode="python", exclude_none=True))
    return dumped


# ---------------------------------------------------------------- the store


class SqlStore:
    """``Store`` on SQLAlchemy. ``SqlStore(default_store_url())`` or ``SqlStore("postgresql://...")``."""

    def __init__(self, url: str, *, migrate: bool = True, create: bool = True) -> None:
        """Open (and migrate) the store; with ``create=False`` a missing SQLite file raises ``StoreMissing``.

        Every failure to open is a ``StoreUnavailable`` with one line naming the store and why.
        """
        self.url = normalize_store_url(url)
        shown = make_url(self.url).render_as_string(hide_password=True)
        path = _sqlite_file(make_url(self.url))
        if path is not None and not path.exists():
            if not create:
                raise StoreMissing(f"no store at {path} yet")
            try:
                _create_private_file(path)
            except OSError as exc:
                raise StoreUnavailable(f"cannot create store {path}: {exc.strerror or exc}") from None
        try:
            self.engine = _create_engine(self.url)
            self._is_postgres = self.engine.dialect.name == "postgresql"
            if migrate:
                self.migrate()
        except (SQLAlchemyError, AlembicError) as exc:
            raise StoreUnavailable(f"cannot open store {shown}: {_why(exc)}") from None

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ schema

    def migrate(self) -> None:
        """Bring the schema to the newest migration; safe to run from many processes at once."""
        config = Config()
        config.set_main_option("script_location", MIGRATIONS)
        with self.write() as conn:
            if self._is_postgres:
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            config.attributes["connection"] = conn
            command.upgrade(config, "heads")  # capabilities add their tables on their own branches

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reads. On PostgreSQL it runs in autocommit: each statement sees its own
        snapshot, exactly what READ COMMITTED gives a statement inside a transaction, without the
        BEGIN before it and the ROLLBACK when the connection goes back to the pool (two of a read's
        three round trips; a controller's tick is mostly reads)."""
        with self.engine.connect() as conn:
            if self._is_postgres:
                conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A connection inside a write transaction (``BEGIN IMMEDIATE`` on SQLite); commits on exit."""
        with self.engine.connect() as conn:
            conn.execution_options(rollwise_write=True)
            with conn.begin():
                yield conn

    # ------------------------------------------------------------ rollouts

    def create(self, record: RolloutRecord, events: Sequence[Event]) -> RolloutRecord:
        _check_events(record.name, events)
        try:
            with self.write() as conn:
                query = select(
                    rollouts_table.c.revision, rollouts_table.c.generation, rollouts_table.c.phase
                ).where(rollouts_table.c.name == record.name)
                existing = conn.execute(query.with_for_update()).first()
                if existing is None:
                    stored = record.model_copy(update={"revision": 1})
                    conn.execute(insert(rollouts_table).values(**self._row(stored), **_UNCONFIRMED, generation=1))
                    generation = 1
                else:
                    if not Phase(existing.phase).terminal:
                        raise ConflictError(f"rollout {record.name!r} exists and is {existing.phase}")
                    stored = record.model_copy(update={"revision": existing.revision + 1})
                    generation = existing.generation + 1
                    conn.execute(
                        update(rollouts_table)
                        .where(rollouts_table.c.name == record.name)
                        .values(**self._row(stored), **_UNCONFIRMED, generation=generation)
                    )
                self._append_events(conn, record.name, events)
        except IntegrityError as exc:  # another process inserted the same name first
            raise ConflictError(f"rollout {record.name!r} was created concurrently") from exc
        return stored

    def get(self, name: str) -> RolloutRecord:
        with self.read() as conn:
            state = conn.execute(
                select(rollouts_table.c.state).where(rollouts_table.c.name == name)
            ).scalar_one_or_none()
        if state is None:
            raise NotFoundError(name)
        return RolloutRecord.model_validate(state)

    def save(
        self, record: RolloutRecord, events: Sequence[Event] = (), windows: Sequence[StageWindow] = (),
        durable: bool = True,
    ) -> RolloutRecord:
        """One transaction: the record at ``revision + 1``, its events with the next seqs, its windows."""
        with self.write() as conn:
            return self.save_in(conn, record, events, windows, durable)

    def save_in(
        self, conn: Connection, record: RolloutRecord, events: Sequence[Event] = (),
        windows: Sequence[StageWindow] = (), durable: bool = True,
    ) -> RolloutRecord:
        """``save`` inside the caller's write transaction (a fenced save checks its lease in it first).

        Not ``durable`` on PostgreSQL: this transaction commits without waiting for its WAL to reach disk
        (``SET LOCAL synchronous_commit = off``; the server still writes it within ``wal_writer_delay``
        × 3). That wait was 3–6 ms of every judged tick here, half a controller's time at 1,000 rollouts,
        and a window-only save is the one thing a crash may lose: nothing was routed or announced on it.
        """
        if not durable and self._is_postgres:
            conn.execute(text("SET LOCAL synchronous_commit = off"))
        _check_events(record.name, events)
        stored = record.model_copy(update={"revision": record.revision + 1})
        generation = conn.execute(
            update(rollouts_table)
            .where(rollouts_table.c.name == record.name, rollouts_table.c.revision == record.revision)
            .values(**self._row(stored))
            .returning(rollouts_table.c.generation)
        ).scalar_one_or_none()
        if generation is None:
            current = conn.execute(
                select(rollouts_table.c.revision).where(rollouts_table.c.name == record.name)
            ).scalar_one_or_none()
            if current is None:
                raise NotFoundError(record.name)
            raise ConflictError(
                f"rollout {record.name!r} changed (revision {current}, had {record.revision})"
            )
        self._append_events(conn, record.name, events)
        if windows:
            conn.execute(
                insert(windows_table),
                [
                    {
                        "rollout": record.name,
                        "generation": generation,
                        "stage": stage,
                        "start": window.start,
                        "end": window.end,
                        "data": window.to_dict(),
                    }
                    for stage, window in windows
                ],
            )
        return stored

    def list(self, active_only: bool = False) -> list[RolloutRecord]:
        query = select(rollouts_table.c.state).order_by(rollouts_table.c.created_at, rollouts_table.c.name)
        if active_only:
            query = query.where(rollouts_table.c.phase.not_in(_TERMINAL_PHASES))
        with self.read() as conn:
            return [RolloutRecord.model_validate(state) for state in conn.execute(query).scalars()]

    def heads(self) -> builtins.list[RolloutHead]:
        """Every rollout's head (``RolloutHeads``), read from columns and two keys of the spec, not parsed."""
        table = rollouts_table.c
        query = (select(table.name, table.spec["service"].as_string(), table.created_at, table.revision,
                        table.spec["watch"]).order_by(table.created_at, table.name))
        with self.read() as conn:
            rows = conn.execute(query).all()
        return [RolloutHead(name=name, service=service, created_at=created, revision=revision,
                            watched=watch is not None)
                for name, service, created, revision, watch in rows]

    def confirm_route(self, name: str, revision: int, at: float) -> None:
        """Outside the record's ``revision``: a confirmation never conflicts with a command."""
        with self.write() as conn:
            self.confirm_route_in(conn, name, revision, at)

    @staticmethod
    def confirm_route_in(conn: Connection, name: str, revision: int, at: float) -> None:
        """``confirm_route`` inside the caller's write transaction."""
        confirmed = rollouts_table.c.applied_route_revision
        conn.execute(
            update(rollouts_table)
            .where(rollouts_table.c.name == name, rollouts_table.c.route_revision >= revision,
                   or_(confirmed.is_(None), confirmed < revision))
            .values(applied_route_revision=revision, applied_route_at=at)
        )

    def applied_route(self, name: str) -> AppliedRoute | None:
        query = select(rollouts_table.c.applied_route_revision, rollouts_table.c.applied_route_at).where(
            rollouts_table.c.name == name)
        with self.read() as conn:
            row = conn.execute(query).first()
        if row is None or row.applied_route_revision is None:
            return None
        return AppliedRoute(revision=row.applied_route_revision, at=row.applied_route_at)

    def due(self, now: float) -> builtins.list[str]:
        table = rollouts_table.c
        query = select(table.name).where(due_condition(now)).order_by(table.created_at, table.name)
        with self.read() as conn:
            return list(conn.execute(query).scalars())

    # ------------------------------------------------------------ history

    def events(self, name: str | None = None, since_seq: int = 0) -> builtins.list[Event]:
        """Events with ``seq > since_seq``: one rollout's in seq order, or all in the order written."""
        query = select(events_table).where(events_table.c.seq > since_seq)
        if name is not None:
            query = query.where(events_table.c.rollout == name).order_by(events_table.c.seq)
        else:
            query = query.order_by(events_table.c.id)
        with self.read() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            Event(
                rollout=row["rollout"],
                seq=row["seq"],
                at=row["at"],
                actor=row["actor"],
                type=row["type"],
                message=row["message"],
                data=row["data"],
            )
            for row in rows
        ]

    def windows(self, name: str, stage: int | None = None) -> builtins.list[StageWindow]:
        """The current run's windows, in the order they were saved."""
        if stage is not None:  # a judged tick's read: the statement built once
            with self.read() as conn:
                rows = conn.execute(_STAGE_WINDOWS, {"name": name, "stage": stage}).all()
            return [(row.stage, Window.from_dict(row.data)) for row in rows]
        current = select(rollouts_table.c.generation).where(rollouts_table.c.name == name).scalar_subquery()
        query = (
            select(windows_table.c.stage, windows_table.c.data)
            .where(windows_table.c.rollout == name, windows_table.c.generation == current)
            .order_by(windows_table.c.id)
        )
        if stage is not None:
            query = query.where(windows_table.c.stage == stage)
        with self.read() as conn:
            return [(row.stage, Window.from_dict(row.data)) for row in conn.execute(query)]

    def record_notification(
        self, rollout: str, event_seq: int, channel: str, status: str, attempts: int, response: str | None,
        at: float,
    ) -> None:
        """One notifier delivery outcome (the delivery log calls this from its worker thread)."""
        with self.write() as conn:
            conn.execute(notifications_table.insert().values(
                rollout=rollout, event_seq=event_seq, channel=channel, status=status, attempts=attempts,
                response=response, at=at,
            ))

    def notifications(self, rollout: str | None = None) -> builtins.list[dict[str, Any]]:
        query = select(notifications_table).order_by(notifications_table.c.id)
        if rollout is not None:
            query = query.where(notifications_table.c.rollout == rollout)
        with self.read() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def push_kpi(self, rollout: str, version: str, metric: str, value: float, at: float) -> None:
        with self.write() as conn:
            conn.execute(
                insert(kpi_samples_table).values(
                    rollout=rollout, version=version, metric=metric, value=value, at=at
                )
            )

    def kpi_totals(self, rollout: str, version: str, start: float, end: float) -> dict[str, float]:
        """Sum of each KPI metric's samples with ``start <= at < end``."""
        query = (
            select(kpi_samples_table.c.metric, func.sum(kpi_samples_table.c.value))
            .where(
                kpi_samples_table.c.rollout == rollout,
                kpi_samples_table.c.version == version,
                kpi_samples_table.c.at >= start,
                kpi_samples_table.c.at < end,
            )
            .group_by(kpi_samples_table.c.metric)
        )
        with self.read() as conn:
            return {metric: float(total) for metric, total in conn.execute(query)}

    def kpi_totals_by_version(self, rollout: str, versions: Sequence[str], start: float,
                              end: float) -> dict[str, dict[str, float]]:
        """``kpi_totals`` of several versions in one query (a judged window reads both sides)."""
        params = {"rollout": rollout, "versions": list(versions), "start": start, "end": end}
        totals: dict[str, dict[str, float]] = {version: {} for version in versions}
        with self.read() as conn:
            for version, metric, total in conn.execute(_KPI_TOTALS_BY_VERSION, params):
                totals[version][metric] = float(total)
        return totals

    # ------------------------------------------------------------ helpers

    @staticmethod
    def _row(record: RolloutRecord) -> dict[str, Any]:
        state = _record_json(record)
        return {
            "name": record.name,
            "revision": record.revision,
            "phase": record.phase.value,
            "spec": state["spec"],
            "state": state,
            "created_at": record.created_at,
            "updated_at": record.updated_at,
            "route_revision": record.route.revision,
            "retire_at": record.retire_at,
        }

    @staticmethod
    def _append_events(conn: Connection, name: str, events: Sequence[Event]) -> None:
        """Next seqs for ``name``; the caller holds the rollout's row, so no one else allocates them."""
        if not events:
            return
        last = conn.execute(
            select(func.coalesce(func.max(events_table.c.seq), 0)).where(events_table.c.rollout == name)
        ).scalar_one()
        conn.execute(
            insert(events_table),
            [
                {
                    "rollout": name,
                    "seq": last + offset,
                    "at": item.at,
                    "actor": item.actor,
                    "type": item.type,
                    "message": item.message,
                    "data": item.data,
                }
                for offset, item in enumerate(events, start=1)
            ],
        )


_kpi = kpi_samples_table.c
_KPI_TOTALS_BY_VERSION = (  # built once: a statement reused is not compiled nor keyed again on each window
    select(_kpi.version, _kpi.metric, func.sum(_kpi.value))
    .where(_kpi.rollout == bindparam("rollout"), _kpi.version.in_(bindparam("versions", expanding=True)),
           _kpi.at >= bindparam("start"), _kpi.at < bindparam("end"))
    .group_by(_kpi.version, _kpi.metric)
)
_STAGE_WINDOWS = (
    select(windows_table.c.stage, windows_table.c.data)
    .where(windows_table.c.rollout == bindparam("name"), windows_table.c.stage == bindparam("stage"),
           windows_table.c.generation == select(rollouts_table.c.generation)
           .where(rollouts_table.c.name == bindparam("name")).scalar_subquery())
    .order_by(windows_table.c.id)
)


def due_condition(now: float) -> ColumnElement[bool]:
    """Which ``rollouts`` rows a runner must tick at ``now`` (``Store.due``; lease claims reuse it)."""
    table = rollouts_table.c
    return or_(
        table.phase.not_in(_TERMINAL_PHASES),
        table.applied_route_revision.is_(None),
        table.applied_route_revision < table.route_revision,
        table.retire_at <= now,
    )


_UNCONFIRMED = {"applied_route_revision": None, "applied_route_at": None}  # a new run: nothing applied yet


def _check_events(name: str, events: Sequence[Event]) -> None:
    for item in events:
        if item.rollout != name:
            raise ValueError(f"event {item.type!r} belongs to rollout {item.rollout!r}, not {name!r}")


PING_AFTER_IDLE_S = 2.0


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled PostgreSQL connection before handing it out only if it sat idle ``PING_AFTER_IDLE_S``.

    What ``pool_pre_ping`` is for (a server restarted or a firewall dropped the connection while it
    slept in the pool) happens to idle connections; pinging every checkout doubled the round trips
    of a busy controller, whose connections are back in use within milliseconds. A dead connection
    found here is replaced before use (``DisconnectionError``: the pool retries with a new one); one
    that died in the last two seconds fails its statement once, and SQLAlchemy then discards the pool.
    """

    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["rollwise_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("rollwise_idle_since")
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_S:
            return  # new, or back in use at once
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError(_why(exc)) from exc
        if not alive:
            raise DisconnectionError("connection lost while idle")


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        engine = create_engine(url, json_serializer=_json_dumps)
        _ping_when_idle(engine)
        return engine
    in_memory = parsed.database in (None, "", ":memory:")
    engine = create_engine(
        url,
        json_serializer=_json_dumps,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
        # One shared connection, or every checkout would see its own empty in-memory database.
        poolclass=StaticPool if in_memory else None,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module; the "begin" hook below issues it.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        if not in_memory:
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("rollwise_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine
