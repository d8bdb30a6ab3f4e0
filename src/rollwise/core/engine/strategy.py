"""What a strategy is, and the registry that picks one by the spec's ``strategy.kind``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from rollwise.core.engine.blue_green import BlueGreen
from rollwise.core.engine.canary import Canary
from rollwise.core.engine.change import Change
from rollwise.core.engine.region_waves import RegionWaves
from rollwise.core.engine.shadow import Shadow
from rollwise.core.model import RolloutRecord

if TYPE_CHECKING:
    from rollwise.core.engine.reconciler import RolloutEngine


class Strategy(Protocol):
    """Decides a progressing rollout's next step; the reconciler handles begin, pause, end and commit."""

    kind: str  # the spec's ``strategy.kind`` it runs

    def advance(self, engine: RolloutEngine, record: RolloutRecord, change: Change,
                now: float) -> RolloutRecord | None:
        """The record after at most one step (events and windows added to ``change``), or None: nothing new."""
        ...


STRATEGIES: dict[str, Strategy] = {
    strategy.kind: strategy for strategy in (Canary(), RegionWaves(), BlueGreen(), Shadow())
}


def strategy_for(kind: str) -> Strategy:
    return STRATEGIES[kind]
