"""A process-local store for the simulator and tests: the SQL store's semantics, no disk, no I/O."""

from __future__ import annotations

import builtins
import threading
from collections.abc import Sequence

from rollwise.core.model import AppliedRoute, Event, RolloutRecord, Window
from rollwise.core.protocols import ConflictError, NotFoundError, StageWindow
from rollwise.core.releases import PastEffect


class MemoryStore:
    """Records are pydantic models the engine never mutates (it always ``model_copy(update=…)``),
    so they are stored and returned as they are, without copies: the simulator's hot path."""

    def __init__(self) -> None:
        self._records: dict[str, RolloutRecord] = {}
        self._events: list[Event] = []
        self._seq: dict[str, int] = {}
        self._windows: dict[str, list[tuple[int, Window]]] = {}
        self._kpis: list[tuple[str, str, str, float, float]] = []
        self._applied: dict[str, AppliedRoute] = {}
        self._lock = threading.Lock()

    def create(self, record: RolloutRecord, events: Sequence[Event]) -> RolloutRecord:
        with self._lock:
            existing = self._records.get(record.name)
            if existing is not None and not existing.phase.terminal:
                raise ConflictError(f"rollout {record.name!r} is already {existing.phase}")
            stored = record.model_copy(update={"revision": 1})
            self._records[record.name] = stored
            self._applied.pop(record.name, None)  # a new run starts with nothing confirmed
            self._windows[record.name] = []
            self._append(events)
            return stored

    def get(self, name: str) -> RolloutRecord:
        with self._lock:
            if name not in self._records:
                raise NotFoundError(name)
            return self._records[name]

    def save(
        self, record: RolloutRecord, events: Sequence[Event] = (), windows: Sequence[StageWindow] = (),
        durable: bool = True,
    ) -> RolloutRecord:
        with self._lock:
            current = self._records.get(record.name)
            if current is None:
                raise NotFoundError(record.name)
            if current.revision != record.revision:
                raise ConflictError(
                    f"rollout {record.name!r} changed (revision {current.revision}, had {record.revision})"
                )
            stored = record.model_copy(update={"revision": record.revision + 1})
            self._records[record.name] = stored
            self._append(events)
            self._windows.setdefault(record.name, []).extend(windows)
            return stored

    def _append(self, events: Sequence[Event]) -> None:
        for event in events:
            seq = self._seq.get(event.rollout, 0) + 1
            self._seq[event.rollout] = seq
            self._events.append(event.model_copy(update={"seq": seq}))

    def list(self, active_only: bool = False) -> list[RolloutRecord]:
        with self._lock:
            records = list(self._records.values())
        if active_only:
            records = [r for r in records if not r.phase.terminal]
        return sorted(records, key=lambda r: r.created_at)

    def confirm_route(self, name: str, revision: int, at: float) -> None:
        with self._lock:
            if name not in self._records:
                raise NotFoundError(name)
            current = self._applied.get(name)
            newer = current is None or current.revision < revision
            if newer and revision <= self._records[name].route.revision:  # not a previous run's
                self._applied[name] = AppliedRoute(revision=revision, at=at)

    def applied_route(self, name: str) -> AppliedRoute | None:
        with self._lock:
            return self._applied.get(name)

    def due(self, now: float) -> builtins.list[str]:
        with self._lock:
            records = sorted(self._records.values(), key=lambda r: r.created_at)
            return [r.name for r in records if _due(r, self._applied.get(r.name), now)]

    def events(self, name: str | None = None, since_seq: int = 0) -> builtins.list[Event]:
        with self._lock:
            return [
                e for e in self._events if (name is None or e.rollout == name) and e.seq > since_seq
            ]

    def windows(self, name: str, stage: int | None = None) -> builtins.list[StageWindow]:
        with self._lock:
            return [(s, w) for s, w in self._windows.get(name, []) if stage is None or s == stage]

    def push_kpi(self, rollout: str, version: str, metric: str, value: float, at: float) -> None:
        with self._lock:
            self._kpis.append((rollout, version, metric, value, at))

    def kpi_totals(self, rollout: str, version: str, start: float, end: float) -> dict[str, float]:
        totals: dict[str, float] = {}
        with self._lock:
            for r, v, m, value, at in self._kpis:
                if r == rollout and v == version and start <= at < end:
                    totals[m] = totals.get(m, 0.0) + value
        return totals


class MissingStore(MemoryStore):
    """An empty store standing in for one that does not exist, so reading never creates a store.

    ``missing`` says which store was asked for and why it is not there; commands add it to "not found".
    """

    def __init__(self, missing: str) -> None:
        super().__init__()
        self.missing = missing


def _due(record: RolloutRecord, applied: AppliedRoute | None, now: float) -> bool:
    if not record.phase.terminal:
        return True
    if applied is None or applied.revision < record.route.revision:
        return True
    retire_at = record.retire_at
    return retire_at is not None and retire_at <= now


class MemoryReleaseHistory:
    """``ReleaseHistory`` kept in the process: the simulator's and the benchmark's past releases."""

    def __init__(self, effects: Sequence[PastEffect] = ()) -> None:
        self.effects: list[PastEffect] = list(effects)
        self._lock = threading.Lock()

    def record_effects(self, effects: Sequence[PastEffect]) -> None:
        with self._lock:
            seen = {(e.rollout, e.run, e.metric, e.finished_at) for e in self.effects}
            self.effects += [e for e in effects if (e.rollout, e.run, e.metric, e.finished_at) not in seen]

    def past_effects(self, metric_types: Sequence[str]) -> builtins.list[PastEffect]:
        with self._lock:
            return [e for e in self.effects if e.metric_type in metric_types]
