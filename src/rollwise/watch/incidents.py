"""An incident: one anomaly on a service from onset to recovery, its culprit, and what was done about it.

Pure values; the store keeps them (``adapters/stores/sql_watch.py``) and the watch runner updates them.
MTTR reads ``recovery_s`` (detection to recovery); change failure rate counts incidents with a culprit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

OPEN = "open"
RESOLVED = "resolved"


class IncidentAlreadyOpen(Exception):
    """The store already holds an open incident for the service: at most one is open per service.

    Raised by ``WatchStore.open_incident`` when another watcher (a stalled process whose watch lease
    moved on, say) opened one first; the caller adopts ``incident`` instead of acting a second time.
    """

    def __init__(self, incident: Incident) -> None:
        super().__init__(f"incident #{incident.id} is already open for {incident.service!r}")
        self.incident = incident


@dataclass(frozen=True)
class Action:
    """One thing the watch did (or refused to do) about an incident, with the rule and the numbers."""

    at: float
    kind: str  # notify | undo | kill-flag | hold
    target: str  # what it acted on: "rollout:web", "flag:checkout", "service:web"
    outcome: str  # done | failed | skipped
    rule: str  # the policy rule that led to it, e.g. "confidence 0.93 >= minConfidence 0.8"
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Incident:
    service: str
    opened_at: float  # when the watch raised it (detection time)
    onset: float  # when the anomaly began (change-point estimate)
    metric: str
    status: str = OPEN
    id: int = 0  # assigned by the store
    region: str | None = None
    culprit: dict[str, Any] | None = None  # the attributed change (``Change.to_json()``), None: no change
    attribution: dict[str, Any] = field(default_factory=dict)  # ``Attribution.to_json()``: evidence, confidence
    actions: tuple[dict[str, Any], ...] = ()
    resolved_at: float | None = None
    series: tuple[tuple[float, float], ...] = ()  # the anomalous metric around onset, for the chart

    @property
    def recovery_s(self) -> float | None:
        """Detection to recovery, seconds (None while open)."""
        return None if self.resolved_at is None else max(0.0, self.resolved_at - self.opened_at)

    def with_action(self, action: Action) -> Incident:
        return replace(self, actions=(*self.actions, action.to_json()))

    def resolved(self, at: float) -> Incident:
        return replace(self, status=RESOLVED, resolved_at=at)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["actions"] = list(self.actions)
        data["series"] = [list(p) for p in self.series]
        data["recovery_s"] = self.recovery_s
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Incident:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["actions"] = tuple(known.get("actions") or ())
        known["series"] = tuple((float(t), float(v)) for t, v in known.get("series") or ())
        return cls(**known)
