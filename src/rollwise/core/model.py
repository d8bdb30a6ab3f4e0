"""The domain model shared by the engine, the judges and every adapter.

Plain dataclasses and pydantic models with no behaviour that touches the outside world.
Observations flow in as ``Window``s, verdicts flow out of judges as ``Verdict``s, and the
engine's durable state is a ``RolloutRecord`` plus an append-only list of ``Event``s.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rollwise.core.carry import Carry
from rollwise.core.evidence import Evidence, JudgeDetails, MetricEvidence, dump_evidence
from rollwise.spec.models import HeaderRouteSpec, RolloutSpec


class Phase(enum.StrEnum):
    PENDING = "Pending"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    SUCCEEDED = "Succeeded"
    ROLLED_BACK = "RolledBack"
    ABORTED = "Aborted"

    @property
    def terminal(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.ABORTED)


class Action(enum.StrEnum):
    """What a judge tells the engine to do with the current stage."""

    CONTINUE = "continue"  # keep observing, nothing decided yet
    EXPAND = "expand"  # no regression: the stage may end
    HOLD = "hold"  # cannot judge now (no data): wait, do not count as bad
    ROLLBACK = "rollback"  # regression decided
    INCONCLUSIVE = "inconclusive"  # cannot decide within the stage's cap: ask a human


# ---------------------------------------------------------------- observations


@dataclass(frozen=True)
class VersionStats:
    """What one version did in one window. Latency buckets are cumulative, in ms, like Envoy's."""

    requests: int = 0
    errors: int = 0
    latency_buckets: tuple[tuple[float, int], ...] = ()
    latency_sum_ms: float = 0.0
    kpis: dict[str, float] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "latency_buckets": [[b, c] for b, c in self.latency_buckets],
            "latency_sum_ms": self.latency_sum_ms,
            "kpis": dict(self.kpis),
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VersionStats:
        return cls(
            requests=int(data.get("requests", 0)),
            errors=int(data.get("errors", 0)),
            # JSON stores cannot hold +Inf: the SQL store writes the overflow bucket's bound as null
            latency_buckets=tuple((float("inf") if b is None else float(b), int(c))
                                  for b, c in data.get("latency_buckets", [])),
            latency_sum_ms=float(data.get("latency_sum_ms", 0.0)),
            kpis={k: float(v) for k, v in data.get("kpis", {}).items()},
            extra={k: float(v) for k, v in data.get("extra", {}).items()},
        )

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def quantile(self, q: float) -> float | None:
        """Latency quantile in ms by linear interpolation inside the cumulative bucket that holds it."""
        if not self.latency_buckets or self.latency_buckets[-1][1] <= 0:
            return None
        total = self.latency_buckets[-1][1]
        rank = q * total
        lower_bound, lower_count = 0.0, 0
        for bound, cumulative in self.latency_buckets:
            if cumulative >= rank:
                if bound == float("inf"):
                    return lower_bound
                span = cumulative - lower_count
                frac = (rank - lower_count) / span if span else 1.0
                return lower_bound + (bound - lower_bound) * frac
            lower_bound, lower_count = bound, cumulative
        return lower_bound

    @classmethod
    def merge(cls, parts: list[VersionStats]) -> VersionStats:
        """Sum of several windows' stats (buckets must share a layout, as one source's do)."""
        if not parts:
            return cls()
        buckets: dict[float, int] = {}
        kpis: dict[str, float] = {}
        extra: dict[str, float] = {}
        for part in parts:
            for bound, count in part.latency_buckets:
                buckets[bound] = buckets.get(bound, 0) + count
            for key, value in part.kpis.items():
                kpis[key] = kpis.get(key, 0.0) + value
            for key, value in part.extra.items():
                extra[key] = extra.get(key, 0.0) + value
        return cls(
            requests=sum(p.requests for p in parts),
            errors=sum(p.errors for p in parts),
            latency_buckets=tuple(sorted(buckets.items())),
            latency_sum_ms=sum(p.latency_sum_ms for p in parts),
            kpis=kpis,
            extra=extra,
        )

    def count_above(self, threshold_ms: float) -> int:
        """Requests slower than ``threshold_ms``, read off the cumulative buckets.

        Counts requests in buckets whose lower edge is at or above the threshold, which is exact
        when the threshold is a bucket bound (the judge freezes thresholds on bucket bounds).
        """
        if not self.latency_buckets:
            return 0
        below = 0
        for bound, cumulative in self.latency_buckets:
            if bound <= threshold_ms:
                below = cumulative
            else:
                break
        total = self.latency_buckets[-1][1]
        return max(0, total - below)


@dataclass(frozen=True)
class Window:
    """Observations of baseline and canary over [start, end). ``None`` means no data arrived.

    ``error`` is set when the metrics backend failed (unreachable, bad query): the sides are then
    ``None`` too, since nothing is known, but the window says why instead of looking empty.
    """

    start: float
    end: float
    baseline: VersionStats | None
    canary: VersionStats | None
    cursor: dict[str, Any] | None = None  # opaque source state to diff the next window against
    error: str | None = None
    evaluations: dict[str, Any] | None = None  # evaluation name -> its batch (JSON), see agents/runner.py

    @property
    def has_data(self) -> bool:
        return self.baseline is not None and self.canary is not None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "start": self.start,
            "end": self.end,
            "baseline": self.baseline.to_dict() if self.baseline else None,
            "canary": self.canary.to_dict() if self.canary else None,
        }
        if self.error is not None:
            data["error"] = self.error
        if self.evaluations:
            data["evaluations"] = self.evaluations
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Window:
        return cls(
            start=float(data["start"]),
            end=float(data["end"]),
            baseline=VersionStats.from_dict(data["baseline"]) if data.get("baseline") else None,
            canary=VersionStats.from_dict(data["canary"]) if data.get("canary") else None,
            error=str(data["error"]) if data.get("error") else None,
            evaluations=data.get("evaluations") or None,
        )


@dataclass(frozen=True)
class WindowQuery:
    rollout: str
    service: str
    baseline_version: str
    canary_version: str
    start: float
    end: float
    cursor: dict[str, Any] | None = None
    regions: tuple[str, ...] = ()  # region waves: only these regions' traffic; empty means every region


# ---------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class Verdict:
    """A judge's answer: the action, why in one line, and the evidence (typed, see ``core/evidence.py``).

    ``details`` holds what the judge adds beyond its metrics (context numbers, state to carry to the
    next stage); ``evidence`` puts the whole together as it is stored.
    """

    action: Action
    reason: str
    rule: str
    culprit: str | None = None
    metrics: tuple[MetricEvidence, ...] = ()
    details: JudgeDetails = field(default_factory=JudgeDetails)

    @property
    def evidence(self) -> Evidence:
        judged = {name: getattr(self.details, name) for name in self.details.model_fields_set}
        return Evidence(rule=self.rule, culprit=self.culprit, metrics=list(self.metrics), **judged)

    def to_evidence(self) -> dict[str, Any]:
        """The evidence in the JSON-able form the event log keeps."""
        return dump_evidence(self.evidence)


@dataclass(frozen=True)
class StageContext:
    """What a judge sees: the analysis spec, this stage's windows and what earlier stages left."""

    analysis: Any  # rollwise.spec.models.AnalysisSpec (kept loose to avoid an import cycle in judges)
    stage_index: int
    canary_weight: float
    stage_started_at: float
    now: float
    windows: tuple[Window, ...]
    carry: dict[str, Any] = field(default_factory=dict)
    run: int = 1

    @property
    def elapsed(self) -> float:
        return self.now - self.stage_started_at


# ---------------------------------------------------------------- routes and state


class RouteState(BaseModel):
    """The desired data-plane state. Declarative, so applying it twice is harmless."""

    model_config = ConfigDict(extra="forbid")

    stable: str
    canary: str | None = None
    canary_weight: float = 0.0  # percent of primary traffic to the canary
    mirror_to: str | None = None
    mirror_percent: float = 0.0
    header_routes: list[HeaderRouteSpec] = Field(default_factory=list)
    sticky_header: str | None = None
    upstreams: dict[str, str] = Field(
        default_factory=dict, description="version name -> host:port of its running instance"
    )
    region_weights: dict[str, float] = Field(
        default_factory=dict,
        description="region waves: the canary's percent per region. Empty: every region gets canary_weight; "
        "when set, a region not named here serves the stable version only.",
    )
    revision: int = 0

    def weight_in(self, region: str | None) -> float:
        """The canary's percent for the proxies of ``region`` (``None``: a proxy that names no region)."""
        if not self.region_weights:
            return self.canary_weight
        return self.region_weights.get(region, 0.0) if region is not None else 0.0

    @property
    def stable_weight(self) -> float:
        return 100.0 - self.canary_weight


class AppliedRoute(BaseModel):
    """What the data plane confirmed for a rollout: the route revision its runner applied, and when.

    Kept beside the record, not in it: a runner writes it after the data plane confirmed a route,
    without bumping the record's revision, so confirming never races a person's command.
    """

    revision: int
    at: float


@dataclass(frozen=True)
class RolloutHead:
    """What a reader of every rollout needs before loading any of them (``RolloutHeads``): which run of
    which service it is, whether its spec has a ``watch:`` block, and the revision to tell if it changed."""

    name: str
    service: str
    created_at: float
    revision: int
    watched: bool


class Event(BaseModel):
    """One line of a rollout's append-only history."""

    model_config = ConfigDict(extra="forbid")

    rollout: str
    seq: int = 0  # assigned by the store
    at: float
    actor: str = "engine"
    type: str  # started, step, decision, phase, command, spec-updated, ...
    message: str
    data: dict[str, Any] = Field(default_factory=dict)


RUN_START = "created"
"""The event type that opens a run: a name is reused by starting a new rollout once the old one ended,
and the store keeps both runs' events under the name (seq keeps counting), so runs are cut here."""


def split_runs(events: list[Any]) -> list[list[Any]]:
    """One rollout name's events (``Event`` or their JSON dicts) as runs, oldest first; each starts at ``created``."""
    runs: list[list[Any]] = []
    for event in events:
        kind = event["type"] if isinstance(event, dict) else event.type
        if kind == RUN_START or not runs:
            runs.append([])
        runs[-1].append(event)
    return runs


class RolloutRecord(BaseModel):
    """A rollout's durable state. Every field the engine needs to resume after kill -9."""

    model_config = ConfigDict(extra="forbid")

    name: str
    spec: RolloutSpec
    phase: Phase = Phase.PENDING
    revision: int = 0
    created_at: float
    updated_at: float
    step_index: int = 0
    step_started_at: float | None = None
    stage_index: int = 0
    stage_started_at: float | None = None
    route: RouteState
    paused_reason: str | None = None
    approved_step: int | None = None  # the canary step a person approved
    cutover_approved: bool = False  # a person approved a blue/green cutover
    last_window_end: float | None = None
    cursor: dict[str, Any] | None = None
    no_data_since: float | None = None
    last_verdict: str | None = None
    carry: Carry = Field(default_factory=Carry)
    finished_at: float | None = None
    rollback_until: float | None = None
    previous_stable: str | None = None
    decisions: int = 0
    bg_phase: str | None = None  # blue/green: preview | promoted
    commit_time: float | None = None
    run: int = 1

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        """Records stored before ``cutover_approved`` said so with ``approved_step: -1``."""
        if isinstance(data, dict) and data.get("approved_step") == -1:
            return {**data, "approved_step": None, "cutover_approved": True}
        return data

    @property
    def stable_version(self) -> str:
        return self.spec.versions.stable.name

    @property
    def metrics_error(self) -> str | None:
        """Why the metrics backend is failing right now (``carry.metrics_error``), if it is."""
        failure = self.carry.metrics_error
        return failure.message if failure is not None else None

    @property
    def route_error(self) -> str | None:
        """Why the data plane refuses the desired route right now (``carry.route_error``), if it does."""
        failure = self.carry.route_error
        return failure.message if failure is not None else None

    @property
    def canary_version(self) -> str:
        return self.spec.versions.canary.name

    @property
    def retire_at(self) -> float | None:
        """When an ended rollout's runner must stop the versions no longer routed to (None: never).

        Only rollouts whose versions run as processes have anything to stop; once stopped
        (``carry.retired``) the rollout costs a runner nothing more.
        """
        if not self.phase.terminal or self.carry.retired:
            return None
        if not any(v.command for v in (self.spec.versions.stable, self.spec.versions.canary)):
            return None
        if self.rollback_until is not None:
            return self.rollback_until
        return self.finished_at if self.finished_at is not None else self.updated_at
