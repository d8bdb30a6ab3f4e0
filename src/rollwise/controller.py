"""The controller loop: ticks every active rollout's engine until it ends.

Many controllers may point at one store; optimistic revisions keep them from stepping on each
other, and everything a controller knows lives in the store, so killing one loses nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rollwise.analysis import judge_for
from rollwise.core.clock import Clock, SystemClock
from rollwise.core.engine import RolloutEngine
from rollwise.core.model import RolloutRecord
from rollwise.core.protocols import Store
from rollwise.wiring import Runtime


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
        if engine is None or engine.router is not self.runtime.router_for(record.spec):
            spec = record.spec
            engine = RolloutEngine(
                store=self.store,
                clock=self.clock,
                judges=judge_for,
                router=self.runtime.router_for(spec),
                metrics=self.runtime.metrics_for(spec),
                notifier=self.runtime.notifier,
                deployer=self.runtime.deployer_for(spec),
            )
            self._engines[record.name] = engine
        return engine

    def tick_all(self, names: list[str] | None = None) -> list[RolloutRecord]:
        records = []
        for record in self.store.list(active_only=names is None):
            if names is not None and record.name not in names:
                continue
            records.append(self.engine_for(record).tick(record.name))
        return records

    def run(
        self,
        names: list[str] | None = None,
        poll_s: float = 0.25,
        until_done: bool = True,
        max_seconds: float | None = None,
        on_tick: Callable[[list[RolloutRecord]], None] | None = None,
    ) -> list[RolloutRecord]:
        """Tick until the named rollouts end (or forever for ``until_done=False``)."""
        started = time.monotonic()
        records: list[RolloutRecord] = []
        while True:
            records = self.tick_all(names)
            if on_tick is not None:
                on_tick(records)
            if until_done and names is not None and all(r.phase.terminal for r in records):
                return records
            if max_seconds is not None and time.monotonic() - started >= max_seconds:
                return records
            time.sleep(poll_s)
