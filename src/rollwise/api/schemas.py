"""Request and response bodies of the HTTP API, so ``/openapi.json`` documents every shape."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rollwise.core.audit import AuditEntry
from rollwise.core.evidence import Evidence
from rollwise.core.model import Event, RolloutRecord, VersionStats, Window
from rollwise.core.waves import WaveRow, wave_rows

Reason = Field(default="", max_length=2000, description="Why; recorded in the history and the audit log.")


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CommandRequest(StrictBody):
    reason: str = Reason
    _check_reason = field_validator("reason")(_no_nul)


class FlagRolloutRequest(CommandRequest):
    percent: float = Field(ge=0, le=100, description="Share of targeting keys that get the on variant.")


class FlagScheduleRequest(CommandRequest):
    at: str = Field(max_length=64, description="When, ISO 8601 (UTC if no offset), e.g. 2030-01-03T09:00:00Z.")
    action: Literal["set-percent", "enable", "disable"]
    percent: float | None = Field(default=None, ge=0, le=100, description="For set-percent: the share.")


class PromoteRequest(CommandRequest):
    full: bool = Field(default=False, description="Skip remaining steps and analysis: 100% now.")


class KpiPush(StrictBody):
    version: str = Field(min_length=1, max_length=255, description="stable or canary version name")
    metric: str = Field(min_length=1, max_length=255, description="KPI name, e.g. checkouts")
    value: float = Field(default=1.0, ge=0, allow_inf_nan=False, description="A count or amount: finite, >= 0")
    at: float | None = Field(default=None, ge=0, allow_inf_nan=False, description="Epoch seconds; default: now.")
    _check_text = field_validator("version", "metric")(_no_nul)


class TokenCreate(StrictBody):
    name: str = Field(min_length=1, max_length=255)
    role: Literal["viewer", "deployer", "releaser", "admin"]
    _check_name = field_validator("name")(_no_nul)


class RolloutSummary(BaseModel):
    name: str
    service: str
    strategy: str
    phase: str
    stable: str
    canary: str
    canary_weight: float
    stable_weight: float
    mirror_percent: float
    step: int
    steps: int
    stage: int
    paused_reason: str | None
    metrics_error: str | None = None  # the metrics backend is failing (not "no data"): why
    route_error: str | None = None  # the data plane refuses the desired route (e.g. an Envoy NACK): why
    last_verdict: str | None
    decisions: int
    created_at: float
    updated_at: float
    finished_at: float | None
    rollback_until: float | None
    revision: int
    waves: list[WaveRow] | None = Field(None, description="Region waves, one row each (none: no waves).")

    @classmethod
    def of(cls, record: RolloutRecord) -> RolloutSummary:
        canary = record.spec.strategy.canary
        return cls(
            name=record.name, service=record.spec.service, strategy=record.spec.strategy.kind,
            phase=str(record.phase), stable=record.stable_version, canary=record.canary_version,
            canary_weight=record.route.canary_weight, stable_weight=record.route.stable_weight,
            mirror_percent=record.route.mirror_percent, step=record.step_index,
            steps=len(canary.steps) if canary is not None else 0, stage=record.stage_index,
            paused_reason=record.paused_reason, metrics_error=record.metrics_error,
            route_error=record.route_error,
            last_verdict=record.last_verdict, decisions=record.decisions,
            created_at=record.created_at, updated_at=record.updated_at, finished_at=record.finished_at,
            rollback_until=record.rollback_until, revision=record.revision, waves=wave_rows(record),
        )


class RolloutDetail(RolloutSummary):
    route: dict[str, Any]
    spec: dict[str, Any]
    route_revision: int = Field(description="The desired route's revision (the store's).")
    route_applied_revision: int | None = Field(description="The revision the data plane last confirmed.")
    route_applied_at: float | None


class EventOut(BaseModel):
    rollout: str
    seq: int
    at: float
    actor: str
    type: str
    message: str
    data: dict[str, Any]

    @classmethod
    def of(cls, event: Event) -> EventOut:
        return cls.model_validate(event.model_dump(mode="json"))


class DecisionOut(BaseModel):
    index: int | None
    seq: int
    at: float
    action: str | None
    rule: str | None
    culprit: str | None
    stage: int | None = None
    weight: float | None = Field(None, description="Canary traffic share (percent) when decided.")
    metrics_error: str | None = None
    message: str = Field(description="The verdict's one-line reason.")
    evidence: Evidence = Field(description="The decision's evidence (schema: /api/v1/schema/evidence).")
    explanation: str | None = Field(description="Plain words, when rollwise.analysis.explain is installed.")


class SideStats(BaseModel):
    requests: int
    errors: int
    error_rate: float
    p99_ms: float | None
    kpis: dict[str, float]

    @classmethod
    def of(cls, stats: VersionStats | None) -> SideStats | None:
        if stats is None:
            return None
        return cls(requests=stats.requests, errors=stats.errors, error_rate=stats.error_rate,
                   p99_ms=stats.quantile(0.99), kpis=dict(stats.kpis))


class WindowOut(BaseModel):
    stage: int
    start: float
    end: float
    baseline: SideStats | None
    canary: SideStats | None
    error: str | None = None  # the metrics backend failed for this window (not "no data")

    @classmethod
    def of(cls, stage: int, window: Window) -> WindowOut:
        return cls(stage=stage, start=window.start, end=window.end, baseline=SideStats.of(window.baseline),
                   canary=SideStats.of(window.canary), error=window.error)


class KpiAccepted(BaseModel):
    rollout: str
    version: str
    metric: str
    value: float
    at: float


class TokenOut(BaseModel):
    id: int
    name: str
    role: str
    created_at: float
    revoked_at: float | None
    active: bool


class TokenCreated(TokenOut):
    token: str = Field(description="The secret. Shown once; only its sha256 is stored.")


class AuditEntryOut(AuditEntry):
    """An audit row as ``/api/v1/audit`` returns it (the fields are ``core/audit.AuditEntry``'s)."""


class AuditVerifyOut(BaseModel):
    ok: bool
    rows: int
    head: str
    first_bad_row: int | None
    problem: str | None
    head_id: int | None = Field(default=None, description="Id of the last row checked; `ID:HASH` is the anchor.")
    keyed: int = Field(default=0, description="Rows chained with HMAC-SHA256 under the audit key.")
    unkeyed: int = Field(default=0, description="Older rows chained with plain SHA-256 (before the key).")


class WhoAmI(BaseModel):
    authenticated: bool
    name: str | None
    role: str | None
    tokens_required: bool = Field(description="False only while no token exists and the caller is on loopback.")


class ProblemList(BaseModel):
    detail: str | list[dict[str, Any]] = Field(description="What was wrong (FastAPI's list for bad parameters)")
    problems: list[str] = Field(default_factory=list, description="Spec problems as SOURCE:LINE: path: message")


# OpenAPI ``responses=`` fragments shared by the routers.
Responses = dict[int | str, dict[str, Any]]
DENIED: Responses = {
    400: {"description": "The body is not parseable JSON"},
    401: {"description": "No or unknown token"},
    403: {"description": "Role too low"},
}
NOT_FOUND: Responses = {404: {"description": "No rollout of that name"}}
CONFLICT: Responses = {409: {"description": "The command does not apply to the rollout's state"}}
SPEC_PROBLEMS: Responses = {422: {"model": ProblemList, "description": "Invalid spec: every problem as SOURCE:LINE"}}
