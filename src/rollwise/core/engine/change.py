"""What one tick or command wants to commit, and the error a command that does not apply raises."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rollwise.core.model import Event, RolloutRecord, Verdict, Window


class CommandError(Exception):
    """A manual control that does not apply to the rollout's current state."""


@dataclass
class Change:
    """What one tick or command wants to commit, and what must happen after the commit."""

    events: list[Event] = field(default_factory=list)
    windows: list[tuple[int, Window]] = field(default_factory=list)
    route_changed: bool = False
    decided_by: tuple[str, str] | None = None  # (how, actor) when a person's promote/approval decided

    @property
    def empty(self) -> bool:
        """Nothing to commit: a tick that observed nothing new returns no record."""
        return not (self.events or self.windows)


def evidence_of(verdict: Verdict | None) -> dict[str, Any]:
    """A verdict's evidence for an event, or none when no verdict was reached this tick."""
    return verdict.to_evidence() if verdict is not None else {}


def if_changed(record: RolloutRecord, change: Change) -> RolloutRecord | None:
    """``record`` when the tick has events or windows to commit, else None (nothing to save)."""
    return None if change.empty else record
