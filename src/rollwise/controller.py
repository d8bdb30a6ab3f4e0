"""The controller loop: ticks every rollout the store says is due, until it ends and its route is applied.

Many controllers may point at one store; optimistic revisions keep them from stepping on each
other, and everything a controller knows lives in the store, so killing one loses nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from rollwise.core.clock import Clock, SystemClock
from rollwise.core.engine import RolloutEngine
from rollwise.core.model import RolloutRecord
from rollwise.core.protocols import ConflictError, Store
from rollwise.wiring import Runtime

log = logging.getLogger(__name__)
MAX_TICKS_PER_PASS = 4


class Controller:
    def __init__(self, store: Store, runtime: Runtime | None = None, clock: Clock | None = None):
        self.store = store
        self.runtime = runtime or Runtime(store=store)
        if self.runtime.store is None:
            self.runtime.store = store
        self.clock = clock or SystemClock()
        self._engines: dict[str, RolloutEngine] = {}

    def engine_for(self, record: RolloutRecord) -> RolloutEngine:
        engine = self._engines.get(record.name)
        if engine is None or engine.router is not self.runtime.engine_router(record.spec, self.store, self.clock):
            engine = self._engines[record.name] = self.runtime.engine_for(record.spec, self.store, self.clock)
        return engine

    def tick_all(self, names: list[str] | None = None) -> list[RolloutRecord]:
        """Tick the named rollouts, or every one the store says is due (``Store.due``).

        Due covers ended rollouts too: one that a command ended (abort, undo, promote --full) gets
        its final route applied and confirmed once, then costs nothing. One failing rollout never
        stalls the others: its error is logged and it is retried on the next pass.
        """
        wanted = self.store.due(self.clock.now()) if names is None else names
        records = []
        for name in wanted:
            try:
                records.append(self._tick(self.store.get(name)))
            except ConflictError:
                pass  # someone else (a person, another controller) moved it; the next pass catches up
            except Exception:
                log.exception("controller: tick of %s failed", name)
        return records

    def _tick(self, record: RolloutRecord) -> RolloutRecord:
        """Tick until nothing more is due now (at most a few times): a step that makes the next one due
        (a promote's step done, then its weight) reaches the data plane in this pass, not the next."""
        engine = self.engine_for(record)
        for _ in range(MAX_TICKS_PER_PASS):
            ticked = engine.tick(record.name)
            if ticked.revision == record.revision:
                return ticked
            record = ticked
        return record

    def settled(self, record: RolloutRecord) -> bool:
        """Ended, with its final route on this process's data plane."""
        return record.phase.terminal and self.engine_for(record).route_applied(record)

    def run(
        self,
        names: list[str] | None = None,
        poll_s: float = 0.25,
        until_done: bool = True,
        max_seconds: float | None = None,
        on_tick: Callable[[list[RolloutRecord]], None] | None = None,
        stop: threading.Event | None = None,
    ) -> list[RolloutRecord]:
        """Tick until the named rollouts end and their final routes are applied (or until ``stop``
        is set, or forever for ``until_done=False``)."""
        started = time.monotonic()
        stop = stop or threading.Event()
        records: list[RolloutRecord] = []
        while not stop.is_set():
            records = self.tick_all(names)
            if on_tick is not None:
                on_tick(records)
            if until_done and names is not None and len(records) == len(names) and all(
                    self.settled(r) for r in records):
                return records
            if max_seconds is not None and time.monotonic() - started >= max_seconds:
                return records
            stop.wait(poll_s)
        return records
