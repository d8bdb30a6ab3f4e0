"""The controller loop: ticks every rollout the store says is due, until it ends and its route is applied.

Many controllers may point at one store. With ``Leases`` (the SQL stores), each pass claims this
controller's fair share of the due rollouts and it acts only on those, every write fenced by the
lease's token (``core/leases.py``); without, optimistic revisions alone keep them from stepping on
each other. Everything a controller knows lives in the store, so killing one loses nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import rollwise.analysis  # noqa: F401  (loaded before the first lease claim, see ``claim``)
from rollwise.core.clock import Clock, SystemClock
from rollwise.core.engine import RolloutEngine
from rollwise.core.leases import DEFAULT_LEASE_TTL_S, LeaseLost
from rollwise.core.model import RolloutRecord
from rollwise.core.protocols import ConflictError, Leases, Store, TrafficRouter
from rollwise.wiring import Runtime

if TYPE_CHECKING:
    from rollwise.spec.models import RolloutSpec
    from rollwise.watch.runner import Watch

log = logging.getLogger(__name__)
MAX_TICKS_PER_PASS = 4


def default_controller_id() -> str:
    """``host:pid``: unique among live processes, and says where to look."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Controller:
    def __init__(
        self,
        store: Store,
        runtime: Runtime | None = None,
        clock: Clock | None = None,
        leases: Leases | None = None,
        identity: str | None = None,
        lease_ttl: float = DEFAULT_LEASE_TTL_S,
    ):
        self.store = store
        self.runtime = runtime or Runtime(store=store)
        if self.runtime.store is None:
            self.runtime.store = store
        self.clock = clock or SystemClock()
        self.leases = leases
        self.identity = identity or default_controller_id()
        self.lease_ttl = lease_ttl
        self._tokens: dict[str, int] = {}  # rollout -> fencing token, for the leases this controller holds
        self._claimed_at = float("-inf")
        self._engines: dict[str, tuple[int | None, RolloutEngine]] = {}
        self._revisions: dict[str, int] = {}  # the revision each rollout's last tick returned
        self.watch: Watch | None = None  # the post-release watch, ticked after the rollouts on each pass
        self._watching: set[str] = set()  # the services this controller holds a watch lease on

    def engine_for(self, record: RolloutRecord) -> RolloutEngine:
        """This rollout's engine; under a lease its store is fenced by the token, and a new token
        (the lease lost and taken again) gets a new engine, forgetting what the old one applied."""
        token = self._tokens.get(record.name) if self.leases is not None else None
        cached_token, engine = self._engines.get(record.name, (None, None))
        if engine is None or cached_token != token or engine.router is not self._router(record.spec):
            store = self.store if token is None or self.leases is None else self.leases.fenced(record.name, token)
            engine = self.runtime.engine_for(record.spec, store, self.clock)
            self._engines[record.name] = (token, engine)
        return engine

    def claim(self) -> list[str]:
        """Renew this controller's leases and take its fair share of the due rollouts (``Leases.claim``).

        Everything a tick needs is imported before the first claim (the judges at the top of this
        module): a controller that took leases and then spent seconds importing would hold up the
        very takeover it was meant to provide.
        """
        assert self.leases is not None
        self._claimed_at = self.clock.now()
        self._tokens = self.leases.claim(self.identity, self._claimed_at, self.lease_ttl)
        for name in [n for n in self._engines if n not in self._tokens]:
            del self._engines[name]
            self._revisions.pop(name, None)
        return sorted(self._tokens)

    def close(self) -> None:
        """Hand back every lease (a clean stop: others take over at once, not after the ttl).

        A store that cannot be reached now only costs the others the ttl: said in one line, not raised.
        """
        if self.leases is None:
            return
        try:
            self.leases.release(self.identity)
        except Exception as exc:
            log.warning("controller %s: leases not handed back (%s); others take over after the ttl",
                        self.identity, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)

    def tick_all(self, names: list[str] | None = None) -> list[RolloutRecord]:
        """Tick the named rollouts, or every one the store says is due (``Store.due``); with leases,
        this controller's share of them (``claim``).

        Due covers ended rollouts too: one that a command ended (abort, undo, promote --full) gets
        its final route applied and confirmed once, then costs nothing. One failing rollout never
        stalls the others: its error is logged and it is retried on the next pass.
        """
        if names is not None:
            wanted = names
        elif self.leases is not None:
            wanted = self.claim()
        else:
            wanted = self.store.due(self.clock.now())
        records = []
        for name in wanted:
            if self.leases is not None and names is None and self.clock.now() - self._claimed_at > self.lease_ttl / 3:
                self.claim()  # a long pass renews its leases before they lapse
                if name not in self._tokens:
                    continue
            try:
                records.append(self._tick(name))
            except ConflictError:
                pass  # someone else (a person, another controller) moved it; the next pass catches up
            except LeaseLost as lost:
                log.info("controller %s: %s", self.identity, lost)
                self._tokens.pop(name, None)
                self._engines.pop(name, None)
            except Exception:
                log.exception("controller: tick of %s failed", name)
        return records

    def _tick(self, name: str) -> RolloutRecord:
        """Tick until nothing more is due now (at most a few times): a step that makes the next one due
        (a promote's step done, then its weight) reaches the data plane in this pass, not the next.

        An engine already built for the rollout (under the same lease) ticks without loading the record
        first: the revision it last returned tells whether a tick changed anything, and a spec whose
        data plane changed gets a new engine on the next pass.
        """
        engine = self._cached_engine(name) or self.engine_for(self.store.get(name))
        before = self._revisions.get(name)
        ticked = engine.tick(name)
        for _ in range(MAX_TICKS_PER_PASS - 1):
            if ticked.revision == before:
                break
            before = ticked.revision
            ticked = engine.tick(name)
        self._revisions[name] = ticked.revision
        if self._router(ticked.spec) is not engine.router:
            self._engines.pop(name, None)
        return ticked

    def _router(self, spec: RolloutSpec) -> TrafficRouter | None:
        """The router this rollout's engine should drive now (memory-wrapped when the spec has memory)."""
        return self.runtime.engine_router(spec, self.store, self.clock)

    def _cached_engine(self, name: str) -> RolloutEngine | None:
        token = self._tokens.get(name) if self.leases is not None else None
        cached_token, engine = self._engines.get(name, (None, None))
        return engine if engine is not None and cached_token == token else None

    def watch_once(self) -> None:
        """One pass of the watch (points that are due, incidents, actions); a failure is logged, never raised.

        Under leases the watch covers only the services this controller holds a watch lease on
        (``Leases.claim_watch``), so controllers sharing a store never open the same incident twice.
        """
        if self.watch is None:
            return
        try:
            self.watch.tick(self._watched_share if self.leases is not None else None)
        except Exception:
            log.exception("controller: watch pass failed")

    def _watched_share(self, services: list[str]) -> set[str]:
        assert self.leases is not None
        if not services and not self._watching:
            return set()  # nothing watched and nothing held: no transaction
        self._watching = self.leases.claim_watch(self.identity, services, self.clock.now(), self.lease_ttl)
        return self._watching

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
            self.watch_once()
            if on_tick is not None:
                on_tick(records)
            if until_done and names is not None and len(records) == len(names) and all(
                    self.settled(r) for r in records):
                return records
            if max_seconds is not None and time.monotonic() - started >= max_seconds:
                return records
            stop.wait(poll_s)
        return records
