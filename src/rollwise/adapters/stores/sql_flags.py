"""Flag documents shared through PostgreSQL, so several flag servers serve one configuration.

Why it is shaped like this (see ``flags/repository.py``, ``FlagRepository.share``):

* Each server keeps serving from its own flag file (its cache, and what it serves when the
  database is away); the newest document lives in ``flag_documents``, one row per flag set, named
  by the flag file's name.
* A change takes the row with ``FOR UPDATE``, brings the local file up to the stored document if
  it is behind, applies the change, writes the row and ``NOTIFY``s, all in one transaction: two
  servers changing flags at once are serialised, and a change is announced only once it is stored.
* Every server ``LISTEN``s on its own connection and fetches the row when told (and every
  ``FALLBACK_POLL_S`` anyway, so a notification lost to a dropped connection costs one poll).
  Chosen over NATS JetStream by measurement (``bench/results/fleet.md``): both deliver in
  milliseconds, and NOTIFY commits with the document, so there is no second system to keep in step.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import Column, Connection, Double, Integer, String, Table, Text, select, text, update
from sqlalchemy.dialects import postgresql

from rollwise.adapters.stores.sql import SqlStore, metadata

log = logging.getLogger(__name__)
CHANNEL = "rollwise_flags"
FALLBACK_POLL_S = 2.0

flag_documents_table = Table(
    "flag_documents",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("document", Text, nullable=False),
    Column("updated_at", Double, nullable=False),
)


class SharedDocument:
    """The stored document while its row is held (inside ``SqlSharedFlags.exclusive``)."""

    def __init__(self, conn: Connection, name: str, version: int | None, document: str | None) -> None:
        self._conn, self.name, self.version, self.document = conn, name, version, document

    def publish(self, document: str, version: int, at: float) -> None:
        """Store ``document`` as ``version`` and tell every listening server (on commit)."""
        self._conn.execute(update(flag_documents_table).where(flag_documents_table.c.name == self.name)
                           .values(version=version, document=document, updated_at=at))
        self._conn.execute(text("SELECT pg_notify(:channel, :payload)"),
                           {"channel": CHANNEL, "payload": f"{version}:{self.name}"})
        self.version, self.document = version, document


class SqlSharedFlags:
    """One flag set's document in a PostgreSQL store (``wiring.open_shared_flags``)."""

    def __init__(self, store: SqlStore, name: str) -> None:
        self.store, self.name = store, name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @contextmanager
    def exclusive(self) -> Iterator[SharedDocument]:
        """The stored document with its row locked until the block ends (and commits)."""
        table = flag_documents_table.c
        with self.store.write() as conn:
            conn.execute(postgresql.insert(flag_documents_table)
                         .values(name=self.name, version=-1, document="", updated_at=0.0)
                         .on_conflict_do_nothing())
            row = conn.execute(select(table.version, table.document).where(table.name == self.name)
                               .with_for_update()).one()
            yield SharedDocument(conn, self.name, None if row.version < 0 else row.version,
                                 row.document if row.version >= 0 else None)

    def latest(self) -> tuple[int, str] | None:
        table = flag_documents_table.c
        with self.store.engine.connect() as conn:
            row = conn.execute(select(table.version, table.document).where(table.name == self.name)).first()
        return None if row is None or row.version < 0 else (row.version, row.document)

    def listen(self, on_change: Callable[[], None]) -> None:
        """Call ``on_change`` (on a thread) whenever the stored document may have changed, until ``stop``."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._listen, args=(on_change,), name="rollwise-flags-listen",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(FALLBACK_POLL_S + 1)
            self._thread = None

    def _listen(self, on_change: Callable[[], None]) -> None:
        while not self._stop.is_set():
            try:
                self._listen_once(on_change)
            except Exception as exc:  # a dropped connection: say so once, wait a poll, listen again
                log.warning("flag listener: %s; retrying", str(exc).splitlines()[0] if str(exc) else type(exc))
                self._stop.wait(FALLBACK_POLL_S)

    def _listen_once(self, on_change: Callable[[], None]) -> None:
        pooled = self.store.engine.raw_connection()
        try:
            conn = pooled.driver_connection
            assert conn is not None
            conn.autocommit = True
            conn.execute(f"LISTEN {CHANNEL}")
            on_change()  # whatever changed before we listened
            while not self._stop.is_set():
                for _note in conn.notifies(timeout=FALLBACK_POLL_S, stop_after=1):
                    pass  # woken by a change (of any flag set: ``on_change`` compares versions) or the poll
                on_change()
        finally:
            pooled.invalidate()  # a connection that LISTENed goes back to no pool
