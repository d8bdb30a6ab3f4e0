"""Rollout leases with fencing tokens in the SQL store, so several controllers can share one database.

Why it is shaped like this (the rules are in ``core/leases.py``):

* One pass of a controller is one transaction (``claim``): heartbeat, renew its own leases, hand
  back what is no longer due or beyond its fair share, then take free or expired leases with
  ``FOR UPDATE SKIP LOCKED``, so controllers claiming at the same moment never wait on each other
  nor take the same row. Taking a lease adds one to its token; rows are never deleted, so a
  rollout's token only grows, across holders and across runs.
* A holder's writes go through ``FencedStore``: the save (record, events, windows) or route
  confirmation runs in the same transaction as a ``FOR SHARE`` read of the lease row, and is refused
  (``LeaseLost``) if the token there is not the holder's. The shared lock makes a claim wait until
  such a write commits, so "newer token" and "write accepted" can never interleave.
* SQLite is one machine's store: the same statements run, ``BEGIN IMMEDIATE`` serialises them and
  the row locks are no-ops (SQLAlchemy renders no ``FOR UPDATE`` there).
* Lease times are the controllers' clocks: hosts must agree to well within a ``ttl`` (NTP does).
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Double,
    Index,
    Integer,
    String,
    Table,
    bindparam,
    case,
    func,
    literal,
    null,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from rollwise.adapters.stores.sql import JSONColumn, SqlStore, due_condition, metadata, rollouts_table
from rollwise.core.leases import ControllerSeen, Lease, LeaseLost, fair_share
from rollwise.core.model import AppliedRoute, Event, RolloutRecord
from rollwise.core.protocols import NotFoundError, StageWindow

leases_table = Table(
    "rollout_leases",
    metadata,
    Column("rollout", String(255), primary_key=True),
    Column("holder", String(255), nullable=True),
    Column("token", Integer, nullable=False),
    Column("expires_at", Double, nullable=False),
    Column("acquired_at", Double, nullable=False),
    Index("ix_rollout_leases_holder", "holder"),
)

watch_leases_table = Table(
    "watch_leases",
    metadata,
    Column("service", String(255), primary_key=True),
    Column("holder", String(255), nullable=True),
    Column("token", Integer, nullable=False),
    Column("expires_at", Double, nullable=False),
    Column("acquired_at", Double, nullable=False),
    Index("ix_watch_leases_holder", "holder"),
)

controllers_table = Table(
    "rollwise_controllers",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("started_at", Double, nullable=False),
    Column("seen_at", Double, nullable=False),
    Column("ttl", Double, nullable=False),
)


class SqlLeases:
    """``Leases`` kept beside the rollouts in ``store``'s database."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self._insert = postgresql.insert if store.engine.dialect.name == "postgresql" else sqlite.insert

    def claim(self, holder: str, now: float, ttl: float) -> dict[str, int]:
        leases = leases_table.c
        due = select(rollouts_table.c.name).where(due_condition(now))
        with self.store.write() as conn:
            self._heartbeat(conn, holder, now, ttl)
            live = conn.execute(select(func.count()).where(controllers_table.c.seen_at + controllers_table.c.ttl > now)
                                ).scalar_one()
            due_names = set(conn.execute(due).scalars())
            conn.execute(self._insert(leases_table).from_select(
                ["rollout", "holder", "token", "expires_at", "acquired_at"],
                select(rollouts_table.c.name, null(), literal(0), literal(0.0), literal(0.0)).where(due_condition(now)),
            ).on_conflict_do_nothing())
            renewed = conn.execute(  # renewing locks our own rows first; claims below never wait
                update(leases_table).where(leases.holder == holder).values(expires_at=now + ttl)
                .returning(leases.rollout, leases.token))
            held = {row.rollout: row.token for row in renewed}
            share = fair_share(len(due_names), live)
            keep = sorted(name for name in held if name in due_names)[:share]
            self._hand_back(conn, holder, [name for name in held if name not in keep])
            held = {name: held[name] for name in keep}
            if len(held) < share:
                held.update(self._take(conn, holder, now, ttl, due, share - len(held)))
        return held

    def _heartbeat(self, conn: Connection, holder: str, now: float, ttl: float) -> None:
        upsert = self._insert(controllers_table).values(id=holder, started_at=now, seen_at=now, ttl=ttl)
        conn.execute(upsert.on_conflict_do_update(index_elements=["id"], set_={"seen_at": now, "ttl": ttl}))

    @staticmethod
    def _hand_back(conn: Connection, holder: str, names: builtins.list[str]) -> None:
        if names:
            conn.execute(update(leases_table).where(leases_table.c.rollout.in_(names), leases_table.c.holder == holder)
                         .values(holder=None, expires_at=0.0))

    @staticmethod
    def _take(conn: Connection, holder: str, now: float, ttl: float, due: Any, count: int) -> dict[str, int]:
        leases = leases_table.c
        free = conn.execute(
            select(leases.rollout)
            .where(leases.rollout.in_(due), (leases.holder.is_(None)) | (leases.expires_at <= now))
            .order_by(leases.rollout).limit(count).with_for_update(skip_locked=True)
        ).scalars().all()
        if not free:
            return {}
        taken = conn.execute(
            update(leases_table).where(leases.rollout.in_(free))
            .values(holder=holder, token=leases.token + 1, expires_at=now + ttl, acquired_at=now)
            .returning(leases.rollout, leases.token)
        )
        return {row.rollout: row.token for row in taken}

    def claim_watch(self, holder: str, services: Sequence[str], now: float, ttl: float) -> set[str]:
        """The watched services ``holder`` watches this pass, in one transaction like ``claim``: renew its
        own, hand back what is no longer watched or beyond its fair share, take free or expired ones
        (``SKIP LOCKED``) up to that share. The share counts the controllers' heartbeats (``claim``)."""
        leases = watch_leases_table.c
        wanted = sorted(set(services))
        with self.store.write() as conn:
            if wanted:
                conn.execute(self._insert(watch_leases_table).values(
                    [{"service": s, "holder": None, "token": 0, "expires_at": 0.0, "acquired_at": 0.0} for s in wanted]
                ).on_conflict_do_nothing())
            live = conn.execute(select(func.count()).where(controllers_table.c.seen_at + controllers_table.c.ttl > now)
                                ).scalar_one()
            renewed = conn.execute(update(watch_leases_table).where(leases.holder == holder)
                                   .values(expires_at=now + ttl).returning(leases.service)).scalars().all()
            share = fair_share(len(wanted), live) if wanted else 0
            held = set(sorted(s for s in renewed if s in set(wanted))[:share])
            gone = [s for s in renewed if s not in held]
            if gone:
                conn.execute(update(watch_leases_table).where(leases.service.in_(gone), leases.holder == holder)
                             .values(holder=None, expires_at=0.0))
            if len(held) < share:
                free = conn.execute(
                    select(leases.service)
                    .where(leases.service.in_(wanted), leases.holder.is_(None) | (leases.expires_at <= now))
                    .order_by(leases.service).limit(share - len(held)).with_for_update(skip_locked=True)
                ).scalars().all()
                if free:
                    held.update(conn.execute(
                        update(watch_leases_table).where(leases.service.in_(free))
                        .values(holder=holder, token=leases.token + 1, expires_at=now + ttl, acquired_at=now)
                        .returning(leases.service)).scalars())
        return held

    def release(self, holder: str) -> None:
        with self.store.write() as conn:
            conn.execute(update(leases_table).where(leases_table.c.holder == holder)
                         .values(holder=None, expires_at=0.0))
            conn.execute(update(watch_leases_table).where(watch_leases_table.c.holder == holder)
                         .values(holder=None, expires_at=0.0))
            conn.execute(controllers_table.delete().where(controllers_table.c.id == holder))

    def fenced(self, name: str, token: int) -> FencedStore:
        return FencedStore(self.store, name, token)

    def leases(self) -> builtins.list[Lease]:
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(leases_table).order_by(leases_table.c.rollout)).mappings().all()
        return [Lease(**row) for row in rows]

    def controllers(self) -> builtins.list[ControllerSeen]:
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(controllers_table).order_by(controllers_table.c.id)).mappings().all()
        return [ControllerSeen(**row) for row in rows]


_rollouts = rollouts_table.c
_FENCED_GET = (  # the record's state only when its revision is not the one known; built once, reused every tick
    select(_rollouts.revision,
           type_coerce(case((_rollouts.revision == bindparam("known"), null()), else_=_rollouts.state),
                       JSONColumn).label("state"),
           leases_table.c.token, leases_table.c.holder)
    .select_from(rollouts_table.outerjoin(leases_table, leases_table.c.rollout == _rollouts.name))
    .where(_rollouts.name == bindparam("name"))
)


class FencedStore:
    """The store as the holder of one rollout's lease sees it: that rollout's reads and writes check the token.

    Everything else passes through: history, windows and pushed KPIs are not the lease's to guard.
    """

    def __init__(self, store: SqlStore, name: str, token: int) -> None:
        self.store, self.name, self.token = store, name, token
        self._loaded: RolloutRecord | None = None  # the record as last read from the store

    def _check(self, conn: Connection, name: str) -> None:
        if name != self.name:
            return
        row = conn.execute(
            select(leases_table.c.token, leases_table.c.holder).where(leases_table.c.rollout == name)
            .with_for_update(read=True)
        ).first()
        self._refuse_unless_ours(name, row)

    def _refuse_unless_ours(self, name: str, row: Any) -> None:
        if row is None or row.token != self.token:
            now_held = "nobody" if row is None else f"{row.holder} with token {row.token}"
            raise LeaseLost(f"lease on {name!r} lost: token {self.token} superseded ({now_held})")

    def get(self, name: str) -> RolloutRecord:
        """The record and the lease in one query: a tick's load costs no extra round trip.

        The record's state comes back only if its revision moved since this store last read it (every
        save moves it, whoever saves), so most ticks of a waiting rollout, which change nothing, read
        two integers and parse nothing: the record read before is returned, unchanged by construction.
        """
        if name != self.name:
            return self.store.get(name)
        known = self._loaded.revision if self._loaded is not None else -1
        with self.store.read() as conn:
            row = conn.execute(_FENCED_GET, {"name": name, "known": known}).first()
        if row is None:
            raise NotFoundError(name)
        self._refuse_unless_ours(name, row if row.token is not None else None)
        if row.state is None and self._loaded is not None and row.revision == known:
            return self._loaded
        self._loaded = RolloutRecord.model_validate(row.state)
        return self._loaded

    def save(self, record: RolloutRecord, events: Sequence[Event] = (),
             windows: Sequence[StageWindow] = (), durable: bool = True) -> RolloutRecord:
        with self.store.write() as conn:
            self._check(conn, record.name)
            return self.store.save_in(conn, record, events, windows, durable)

    def confirm_route(self, name: str, revision: int, at: float) -> None:
        with self.store.write() as conn:
            self._check(conn, name)
            self.store.confirm_route_in(conn, name, revision, at)

    def create(self, record: RolloutRecord, events: Sequence[Event]) -> RolloutRecord:
        return self.store.create(record, events)

    def list(self, active_only: bool = False) -> builtins.list[RolloutRecord]:
        return self.store.list(active_only)

    def applied_route(self, name: str) -> AppliedRoute | None:
        return self.store.applied_route(name)

    def due(self, now: float) -> builtins.list[str]:
        return self.store.due(now)

    def events(self, name: str | None = None, since_seq: int = 0) -> builtins.list[Event]:
        return self.store.events(name, since_seq)

    def windows(self, name: str, stage: int | None = None) -> builtins.list[StageWindow]:
        return self.store.windows(name, stage)

    def push_kpi(self, rollout: str, version: str, metric: str, value: float, at: float) -> None:
        self.store.push_kpi(rollout, version, metric, value, at)

    def kpi_totals(self, rollout: str, version: str, start: float, end: float) -> dict[str, float]:
        return self.store.kpi_totals(rollout, version, start, end)

