"""A router whose "traffic" is a feature flag: the canary weight is the flag's share of users.

This is how a progressive flag rollout rides the same engine as a traffic canary: each step
raises the flag's fractional share (5 → 10 → 25 → 50 → 100 % of targeting keys, monotone, so a
user who got the new variant keeps it), and a rollback sets it back to 0 % — off for everyone —
as an audited flag change whose reason points at the rollout.
"""

from __future__ import annotations

from pathlib import Path

from rollwise.core.model import RouteState
from rollwise.flags.repository import FlagRepository


class FlagRouter:
    def __init__(self, flags_file: str | Path, flag: str, actor: str = "rollwise-engine"):
        self.flag = flag
        self.actor = actor
        self.repository = FlagRepository(Path(flags_file))
        self._percent: float | None = None

    def apply(self, rollout: str, route: RouteState) -> None:
        percent = route.canary_weight if route.canary else 0.0
        if percent == self._percent:
            return
        previous = self._percent
        reason = f"rollout {rollout}: {route.canary} at {percent:g}% of users"
        if previous is not None and percent < previous:
            reason = f"rollout {rollout}: rolled back to 0% ({route.stable} for everyone)"
        self.repository.set_rollout_percent(self.flag, percent, actor=self.actor, reason=reason)
        self._percent = percent

    def close(self) -> None:
        self.repository.stop()
