"""The small protocols the engine drives. Adapters implement them; the core imports no adapter."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from rollwise.core.model import (
    AppliedRoute,
    Event,
    RolloutRecord,
    RouteState,
    StageContext,
    Verdict,
    VersionStats,
    Window,
    WindowQuery,
)
from rollwise.spec.models import VersionRef


class TrafficRouter(Protocol):
    """Moves real (or simulated) requests. ``apply`` is declarative and idempotent."""

    def apply(self, rollout: str, route: RouteState) -> None:
        """Make the data plane match ``route``; raise if the data plane refused it."""
        ...


class MetricSource(Protocol):
    def collect(self, query: WindowQuery) -> Window:
        """Observations of baseline and canary over the query's window (``None`` sides: no data)."""
        ...


@runtime_checkable
class BaselineHistory(Protocol):
    """A metric source that can also say how the stable version did before the rollout began."""

    def baseline_history(self, query: WindowQuery) -> VersionStats | None:
        """The stable version's stats over [query.start, query.end), before any canary traffic."""
        ...


class Judge(Protocol):
    def evaluate(self, context: StageContext) -> Verdict: ...


class Notifier(Protocol):
    def notify(self, record: RolloutRecord, event: Event) -> None:
        """Tell people. Must not raise: a failing notifier never blocks a rollout."""
        ...


class Deployer(Protocol):
    def ensure(self, rollout: str, version: VersionRef) -> str:
        """Make ``version`` run; return its address. Idempotent."""
        ...

    def stop(self, rollout: str, version: VersionRef) -> None: ...


class ConflictError(Exception):
    """Someone else changed the rollout since it was read; reload and try again."""


class NotFoundError(KeyError):
    pass


class Store(Protocol):
    def create(self, record: RolloutRecord, events: Sequence[Event]) -> RolloutRecord:
        """Insert a new rollout; raises ``ConflictError`` if the name is taken by an active one."""
        ...

    def get(self, name: str) -> RolloutRecord:
        """Raises ``NotFoundError``."""
        ...

    def save(
        self,
        record: RolloutRecord,
        events: Sequence[Event] = (),
        windows: Sequence[tuple[int, Window]] = (),
    ) -> RolloutRecord:
        """Atomically store ``record`` (revision must match the stored one) with its new events
        and (stage, window) observations; returns the record with its revision bumped."""
        ...

    def list(self, active_only: bool = False) -> list[RolloutRecord]: ...

    def confirm_route(self, name: str, revision: int, at: float) -> None:
        """The data plane confirmed route ``revision`` of ``name`` (never moves backwards)."""
        ...

    def applied_route(self, name: str) -> AppliedRoute | None:
        """The last route the data plane confirmed for the current run, if any."""
        ...

    def due(self, now: float) -> builtins.list[str]:
        """Rollouts a runner must tick: not ended, their confirmed route behind the desired one,
        or an ended one whose versions are due to be stopped (``wake_at`` passed). One cheap query."""
        ...

    def events(self, name: str | None = None, since_seq: int = 0) -> builtins.list[Event]: ...

    def windows(self, name: str, stage: int | None = None) -> builtins.list[tuple[int, Window]]: ...

    def push_kpi(self, rollout: str, version: str, metric: str, value: float, at: float) -> None: ...

    def kpi_totals(self, rollout: str, version: str, start: float, end: float) -> dict[str, float]: ...
