"""An agent's memory versioned with the release: tag at start, isolated canary copy, restore, apply.

Pure: the ``MemoryStore`` protocol names the few atomic steps a versioned store must offer (each one
commit: a tag, a copy, a restore, an overwrite, an insert of new keys), and ``MemoryLifecycle`` orders
them so that every action is idempotent and resumable after a kill at any moment. Progress is kept as
tags in the store itself (``<rollout>.run<N>.<step>``), so a re-run skips what is done and repeats only
a step whose marker is missing; a repeated step yields the same content (restore to the same tag,
overwrite with the same rows, insert keys not yet present).

``MemoryRouter`` puts the lifecycle in lockstep with the route: it wraps a ``TrafficRouter`` and, before
the route is applied, brings the memory to what the rollout's phase needs (begin while the canary gets
traffic, restore on rollback/abort, apply the canary's writes on success). The route is confirmed only
after the memory step returned, so a failed memory step leaves the route unconfirmed and retried.
The LanceDB implementation is ``adapters/agents/lancedb_memory.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from rollwise.core.model import Phase, RolloutRecord, RouteState
from rollwise.core.protocols import TrafficRouter

OnPromote = Literal["keep", "discard", "replay"]
Side = Literal["stable", "canary"]


class MemoryUnavailable(Exception):
    """The memory cannot be opened or lacks what a step needs; the message is one line."""


@dataclass(frozen=True)
class MemoryVersion:
    """One version of a memory table: its number, when it was written, its rows and the tags on it."""

    version: int
    at: str
    rows: int
    tags: tuple[str, ...] = ()


class MemoryStore(Protocol):
    """A versioned memory: the stable (live) table and the canary's isolated copy of it.

    Each mutating method is one atomic commit of the store (a reader sees the old or the new version,
    never a mix), and repeating it with the same arguments yields the same content.
    """

    def tags(self, side: Side) -> dict[str, int]:
        """Tag name -> version of the ``side`` table (empty when the table does not exist)."""
        ...

    def tag(self, side: Side, name: str) -> int:
        """Tag the current version of ``side`` as ``name`` and return that version."""
        ...

    def branch(self, stable_tag: str) -> int:
        """Make the canary table's content the stable table's at ``stable_tag`` (one commit)."""
        ...

    def restore(self, stable_tag: str) -> int:
        """Make the stable table's content what it was at ``stable_tag`` (one commit)."""
        ...

    def overwrite_with_canary(self, canary_tag: str) -> int:
        """Make the stable table's content the canary's at ``canary_tag`` (one commit)."""
        ...

    def insert_canary_only(self, canary_tag: str) -> int:
        """Insert the canary's rows (at ``canary_tag``) whose key the stable table lacks (one commit)."""
        ...

    def versions(self, side: Side) -> list[MemoryVersion]: ...

    def rows(self, side: Side, ref: str | int | None = None) -> list[dict[str, Any]]:
        """The rows of ``side`` at a tag or version (the latest when ``None``), sorted by key."""
        ...

    def record(self, entry: dict[str, Any]) -> None:
        """Append one line to the memory's journal: which memory version served which release."""
        ...

    def journal(self) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class Marks:
    """The tag names of one run of one rollout (``<rollout>.run<N>.<step>``)."""

    rollout: str
    run: int

    def __getattr__(self, step: str) -> str:
        if step.startswith("_"):
            raise AttributeError(step)
        return f"{self.rollout}.run{self.run}.{step.replace('_', '-')}"


@dataclass
class MemoryLifecycle:
    """The memory steps of a rollout, each idempotent and resumable (markers are tags in the store)."""

    store: MemoryStore
    on_promote: OnPromote = "keep"
    now: Callable[[], float] = lambda: 0.0

    def begin(self, marks: Marks, release: str) -> bool:
        """Tag the stable memory and give the canary its copy; False when it was already done."""
        if marks.base in self.store.tags("canary"):
            return False
        if marks.stable not in self.store.tags("stable"):
            self.store.tag("stable", marks.stable)
        self.store.branch(marks.stable)
        version = self.store.tag("canary", marks.base)
        self._journal("begin", marks, release, stable=self.store.tags("stable")[marks.stable], canary=version)
        return True

    def rollback(self, marks: Marks, release: str) -> bool:
        """Restore the stable tag (the canary's and stable's latest stay readable by tag); False if done."""
        stable_tags = self.store.tags("stable")
        if marks.restored in stable_tags or marks.stable not in stable_tags:
            return False
        self._freeze(marks)
        version = self.store.restore(marks.stable)
        self.store.tag("stable", marks.restored)
        self._journal("rollback", marks, release, stable=version, restored_from=stable_tags[marks.stable])
        return True

    def promote(self, marks: Marks, release: str) -> bool:
        """Apply the canary's writes by ``on_promote``; False when already done or never begun."""
        stable_tags = self.store.tags("stable")
        if marks.promoted in stable_tags or marks.base not in self.store.tags("canary"):
            return False
        self._freeze(marks)
        if self.on_promote == "keep":
            self.store.overwrite_with_canary(marks.final)
        elif self.on_promote == "replay":
            self.store.insert_canary_only(marks.final)
        version = self.store.tag("stable", marks.promoted)
        self._journal("promote", marks, release, stable=version, policy=self.on_promote,
                      canary=self.store.tags("canary")[marks.final])
        return True

    def _freeze(self, marks: Marks) -> None:
        """Tag what the canary (if its copy was made) and the stable held at the end, for the postmortem."""
        canary_tags = self.store.tags("canary")
        if marks.base in canary_tags and marks.final not in canary_tags:
            self.store.tag("canary", marks.final)
        if marks.stable_before_end not in self.store.tags("stable"):
            self.store.tag("stable", marks.stable_before_end)

    def _journal(self, action: str, marks: Marks, release: str, **versions: Any) -> None:
        self.store.record({"at": self.now(), "action": action, "rollout": marks.rollout, "run": marks.run,
                           "release": release, **versions})


def memory_step(record: RolloutRecord, route: RouteState) -> str | None:
    """What the memory must be before ``route`` is applied: begin, rollback, promote, or nothing."""
    canary = record.spec.versions.canary.name
    if record.phase in (Phase.ROLLED_BACK, Phase.ABORTED):
        return "rollback"
    if record.phase == Phase.SUCCEEDED:
        return "promote"
    gets_traffic = route.canary == canary and route.canary_weight > 0
    mirrored = route.mirror_to == canary and route.mirror_percent > 0
    return "begin" if gets_traffic or mirrored else None


class MemoryRouter:
    """A router that brings the memory in step with each route before applying it."""

    def __init__(self, router: TrafficRouter, lifecycle: MemoryLifecycle,
                 record_of: Callable[[str], RolloutRecord]):
        self.router = router
        self.lifecycle = lifecycle
        self.record_of = record_of

    def apply(self, rollout: str, route: RouteState) -> None:
        record = self.record_of(rollout)
        step = memory_step(record, route)
        marks = Marks(rollout, record.run)
        versions = record.spec.versions
        if step == "begin":
            self.lifecycle.begin(marks, versions.canary.name)
        elif step == "rollback":
            self.lifecycle.rollback(marks, versions.stable.name)
        elif step == "promote":
            self.lifecycle.promote(marks, versions.canary.name)
        self.router.apply(rollout, route)

    def __getattr__(self, name: str) -> Any:  # admin_url, mirror targets, close: the wrapped router's
        return getattr(self.router, name)
