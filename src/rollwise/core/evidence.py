"""The evidence a decision carries, as one typed, versioned model shared by writers and readers.

Judges write it (``Verdict.evidence``), the engine keeps it in the event log as JSON (``dump_evidence``),
and ``explain``, the notifiers, the reports, the CLI, the API and the dashboard read it back
(``parse_evidence``, ``decision_of``). A field renamed on one side fails loudly on the other: Python
readers use attributes (mypy checks them), the models forbid unknown fields, and the dashboard's names
are checked against the exported JSON Schema (``evidence_schema``, served at ``/api/v1/schema/evidence``).

Field names are the stored JSON names (camelCase, like the spec's), so the schema, the event log and
the code say the same thing. Every judge-specific field is optional and only written when the judge
set it: ``dump_evidence`` gives back exactly the keys the judge wrote, as before this model existed.

Versions: evidence written before the model carries no ``version``; it has the same shape as version 1
and parses as such. Version 2 added ``params.prior`` (the mixture prior learned from past releases);
every version-1 field kept its meaning, so version-1 evidence parses unchanged. Version 3 added
``wave`` (why a region wave started higher, baked shorter, waited for a blackout, or was rolled back);
nothing older changed. A newer version than this code knows is refused rather than half-read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

#: The evidence format this code writes. Legacy evidence (no ``version`` key) reads as version 1.
EVIDENCE_VERSION = 3

Number = int | float  # kept apart so stored integers stay integers


class EvidenceError(ValueError):
    """Stored evidence this code cannot read (a newer version, or not evidence at all)."""


class _Sparse(BaseModel):
    """A model whose JSON form holds only the fields that were set (plus ``always_dumped``).

    Judges write different subsets (a threshold judge has no e-value); dumping only what was set
    keeps the stored shape exactly what the judge wrote.
    """

    model_config = ConfigDict(extra="forbid")
    always_dumped: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _only_set(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        keep = self.model_fields_set | self.always_dumped
        return {key: value for key, value in data.items() if key in keep}


class SideCounts(_Sparse):
    """One side's counts behind a metric's verdict (canary or baseline)."""

    trials: Number | None = Field(None, description="Requests (or visits) the attribution test counted.")
    bad: Number | None = Field(None, description="Bad events among them: errors, slow requests, misses.")
    trialsThisStage: Number | None = None
    badThisStage: Number | None = None
    priorTrials: Number | None = Field(None, description="Stable requests from before the rollout (prior).")
    priorBad: Number | None = None
    requests: Number | None = Field(None, description="Requests in the window (threshold judge).")
    errors: Number | None = None
    compared: Number | None = Field(None, description="Mirrored responses compared (shadow).")
    mismatches: Number | None = None
    tasks: Number | None = Field(None, description="Evaluation tasks run (each k times; trials are runs).")
    passK: Number | None = Field(None, description="Share of tasks whose k runs all passed (pass^k).")
    latencyMs: Number | None = Field(None, description="Evaluation: mean answer time per run.")
    tokens: Number | None = Field(None, description="Evaluation: mean tokens per run, when the agent reports usage.")


class SloVerdict(_Sparse):
    """An absolute gate's anytime-valid verdict on the canary's rate."""

    test: str = "slo-beta-mixture"
    limit: Number = Field(description="The gate as a rate (1 - quantile for latency).")
    higherIsWorse: bool
    alpha: Number
    bad: Number = Field(description="Canary bad events counted against the gate.")
    trials: Number
    estimate: Number | None = None
    lower: Number = Field(description="Anytime-valid lower bound of the canary's rate.")
    upper: Number
    breached: bool
    met: bool
    rule: str = Field(description="Which bound decides, in words.")


class BurnProjection(_Sparse):
    """The error budget's burn rate if the canary took all traffic (lower confidence bound)."""

    test: str = "burn-rate-projection"
    errors: Number | None = None
    requests: Number | None = None
    alpha: Number | None = None
    budget: Number | None = Field(None, description="The error budget (the SLO's error rate).")
    lower: Number
    burnRate: Number
    limit: Number
    fires: bool


class PriorEvidence(_Sparse):
    """The mixture prior a test used (learned from past releases) and where it came from."""

    mean: Number | None = Field(None, description="Mean of the normal part, in log rate ratio.")
    sd: Number | None = Field(None, description="Its standard deviation, in log rate ratio.")
    flat: Number | None = Field(None, description="Share of the flat mixture blended in (the safety net).")
    centreRatio: Number | None = Field(None, description="exp(mean): the rate ratio the prior expects.")
    source: str | None = Field(None, description="service, pooled or service+pooled: whose releases.")
    service: str | None = None
    serviceReleases: int | None = Field(None, description="The service's past regressions it was fitted on.")
    pooledReleases: int | None = Field(None, description="All services' past regressions it was shrunk toward.")


class MetricParams(_Sparse):
    """A metric test's parameters and intermediate numbers; which are set depends on the test."""

    def merged(self, other: MetricParams) -> MetricParams:
        """These parameters with the ones ``other`` set on top."""
        return self.model_copy(update={name: getattr(other, name) for name in other.model_fields_set})

    # the metric's share of the false-rollback budget (sequential)
    weight: Number | None = None
    alphaShare: Number | None = None
    critical: bool | None = None
    blocking: bool | None = None
    # the attribution test (sequential)
    alpha: Number | None = None
    beta: Number | None = None
    delta: Number | None = Field(None, description="Tolerated increase (maxIncrease).")
    minEffect: Number | None = None
    concern: Number | None = Field(None, description="The regression the no-regression side rules out.")
    relative: bool | None = None
    lowerIsWorse: bool | None = None
    grid: list[Number] | None = None
    mixtureReach: Number | None = None
    prior: PriorEvidence | None = Field(None, description="The mixture's prior, when learned from past releases.")
    eValue: Number | None = None
    acceptLlr: Number | None = None
    acceptThreshold: Number | None = None
    ratio: Number | None = None
    ratioInterval: list[Number | None] | None = None
    baselineRate: Number | None = None
    nullRatio: Number | None = None
    alternativeRatio: Number | None = None
    concernRatio: Number | None = None
    rejected: bool | None = None
    accepted: bool | None = None
    trendZ: Number | None = None
    thresholdMs: Number | None = Field(None, description="Latency: slower than this is bad (frozen bar).")
    frozenInStage: bool | None = None
    effectCoverage: Number | None = None
    nonInferiorBar: Number | None = None
    srmEValue: Number | None = None
    srmThreshold: Number | None = None
    slo: SloVerdict | None = None
    # the threshold judge
    failureLimit: int | None = None
    # the Kayenta judge
    classification: str | None = Field(None, description="Pass, High, Low or Nodata.")
    points: list[int] | None = None
    u: Number | None = None
    pValue: Number | None = None
    shift: Number | None = None
    canaryMedian: Number | None = None
    baselineMedian: Number | None = None
    # the shadow comparison
    maxMismatchRate: Number | None = None
    # an evaluation (paired betting e-process on per-task pass shares)
    runsPerTask: int | None = None
    consistencyGated: bool | None = None
    consistencyEValue: Number | None = Field(None, description="pass^k rollback e-value (when gated).")
    consistencyThreshold: Number | None = None
    consistencyAcceptLlr: Number | None = None


class MetricEvidence(_Sparse):
    """One metric's evidence: enough to recompute its verdict offline."""

    always_dumped: ClassVar[frozenset[str]] = frozenset({
        "metric", "test", "action", "statistic", "threshold", "canary", "baseline", "effect", "interval", "params",
        "summary",
    })

    metric: str
    test: str
    action: str = Field(description="continue, expand, hold, rollback or inconclusive.")
    statistic: Number | None = None
    threshold: Number | None = None
    canary: SideCounts = Field(default_factory=SideCounts)
    baseline: SideCounts = Field(default_factory=SideCounts)
    effect: Number | None = None
    interval: list[Number | None] | None = None
    params: MetricParams = Field(default_factory=MetricParams)
    summary: str = ""


class JudgeDetails(_Sparse):
    """What a judge adds to its verdict beyond the metrics: its context, and its state to carry."""

    # sequential and Kayenta
    judge: str | None = None
    canaryRequests: int | None = None
    minSamples: int | None = None
    # sequential
    alpha: Number | None = None
    stage: int | None = None
    run: int | None = None
    runs: int | None = None
    elapsed: Number | None = Field(None, description="Seconds since the stage started.")
    windows: int | None = None
    windowsWithData: int | None = None
    marginNats: Number | None = Field(None, description="How far past its bar the culprit's test went (ln).")
    burn: BurnProjection | None = None
    carry: dict[str, Any] | None = Field(None, description="The judge's state handed to the next stage.")
    # Kayenta
    buckets: int | None = None
    minPoints: int | None = None
    bucketSeconds: Number | None = None
    confidence: Number | None = None
    passScore: Number | None = None
    marginalScore: Number | None = None
    score: Number | None = None
    # the threshold judge (named before this model, in snake case)
    failed_checks: int | None = None
    failure_limit: int | None = None
    bad_served: int | None = None
    # the shadow comparison
    compared: int | None = None
    mismatches: int | None = None


class RiskFactor(BaseModel):
    model_config = ConfigDict(extra="forbid")

    feature: str
    value: Number | None = Field(None, description="The change's value of the feature (None: unknown).")
    contribution: Number = Field(description="The feature's term in the learner's log-odds (+ raises risk).")


class PlanEvidence(BaseModel):
    """Why a rollout's plan was fitted to its change's risk (a ``plan`` event, rule ``risk-plan``)."""

    model_config = ConfigDict(extra="forbid")

    score: Number = Field(description="The change's risk, 0..1, from the learner.")
    lane: str = Field(description="careful (score ≥ high), fast (score < low) or standard.")
    high: Number
    low: Number
    applied: bool = Field(description="Whether the spec asked for it (analysis.adaptive.risk).")
    change: dict[str, str] = Field(default_factory=dict, description="Repository and revisions scored.")
    factors: list[RiskFactor] = Field(default_factory=list)
    features: dict[str, Number | None] = Field(default_factory=dict, description="The change's features "
                                               "(kept so the learner learns from this rollout's outcome).")
    stepsBefore: list[str] = Field(default_factory=list)
    stepsAfter: list[str] = Field(default_factory=list)
    runs: int | None = Field(None, description="Runs per stage the plan now requires, when changed.")
    trainedOn: int = Field(0, description="Past changes the learner was fitted on.")
    failuresSeen: int = Field(0, description="Failing changes among them.")
    reason: str = ""


class WaveSummary(BaseModel):
    """What one earlier wave's judging saw: the facts a later wave's carry-forward rests on."""

    model_config = ConfigDict(extra="forbid")

    wave: str
    regions: list[str]
    status: str
    canaryRequests: int = 0
    canaryErrors: int = 0
    baselineRequests: int = 0
    verdicts: dict[str, int] = Field(default_factory=dict, description="Judge action -> decisions recorded.")
    metricsErrors: int = 0
    forced: bool = Field(False, description="A person promoted past a judged stage (evidence incomplete).")
    clean: bool = Field(description="Judged to expand, never regressed, undecided or blind, enough requests.")


class WaveEvidence(_Sparse):
    """Why a region wave did what it did (a ``wave`` event): started, carried forward, waited, failed."""

    wave: str
    index: int = Field(description="The wave's place in the spec (0-based).")
    regions: list[str] = Field(description="The regions this event is about (the wave's changing group).")
    action: str = Field(description="start, blackout, approval, baking, promoted, held or rolled-back.")
    startWeight: Number | None = Field(None, description="The canary percent the wave started at.")
    startStep: int | None = Field(None, description="The first canary step it runs (later ones skip).")
    bake: Number | None = Field(None, description="Seconds it bakes.")
    plannedBake: Number | None = Field(None, description="Seconds the spec asked for.")
    carriedForward: bool | None = Field(None, description="Whether earlier waves' clean evidence applied.")
    minRequests: int | None = None
    earlier: list[WaveSummary] | None = Field(None, description="The earlier waves' evidence it rests on.")
    blackoutUntil: Number | None = Field(None, description="When the blackout covering the wave ends (epoch s).")
    blackout: str | None = Field(None, description="The blackout, as written (from, to, time zone).")
    rolledBack: list[str] | None = Field(None, description="Regions sent back to stable by this failure.")
    reason: str | None = None


class Evidence(JudgeDetails):
    """A decision's whole evidence, as stored in the event log (``data["evidence"]``)."""

    always_dumped: ClassVar[frozenset[str]] = frozenset({"version", "rule", "culprit", "metrics"})

    version: int = Field(EVIDENCE_VERSION, description="Format version; absent in legacy evidence (= 1).")
    rule: str | None = Field(None, description="The rule that fired (see explain.RULES).")
    culprit: str | None = Field(None, description="The metric that decided, if one did.")
    metrics: list[MetricEvidence] = Field(default_factory=list)
    plan: PlanEvidence | None = Field(None, description="A plan fitted to the change's risk (rule risk-plan).")
    wave: WaveEvidence | None = Field(None, description="A region wave's move and why (rules wave-*).")

    def __getitem__(self, name: str) -> Any:
        """A field by its stored name, as the JSON reads (``evidence["carry"]``); a wrong name raises."""
        if name not in type(self).model_fields:
            raise KeyError(name)
        return getattr(self, name)

    def culprit_metric(self) -> MetricEvidence | None:
        return next((m for m in self.metrics if m.metric == self.culprit), None) if self.culprit else None


class DecisionRecord(BaseModel):
    """The data of a ``decision`` event: the verdict, where it was taken, and its evidence."""

    model_config = ConfigDict(extra="forbid")

    index: int | None = None
    action: str | None = None
    rule: str | None = None
    culprit: str | None = None
    stage: int | None = None
    weight: Number | None = Field(None, description="Canary traffic share (percent) when decided.")
    evidence: Evidence = Field(default_factory=Evidence)
    metrics_error: str | None = Field(None, description="Why the metrics backend could not be read.")


def parse_evidence(data: Evidence | Mapping[str, Any] | None) -> Evidence:
    """Stored evidence (any version this code knows, legacy included) as the typed model."""
    if isinstance(data, Evidence):
        return data
    if not data:
        return Evidence()
    if not isinstance(data, Mapping):
        raise EvidenceError(f"evidence must be an object, not {type(data).__name__}")
    version = data.get("version", 1)  # legacy evidence has no version: the same shape as version 1
    if not isinstance(version, int) or version > EVIDENCE_VERSION:
        raise EvidenceError(f"evidence version {version!r} is newer than this rollwise reads "
                            f"(up to {EVIDENCE_VERSION}): upgrade rollwise")
    return Evidence.model_validate(dict(data))


def dump_evidence(evidence: Evidence) -> dict[str, Any]:
    """The JSON-able form kept in the event log: the keys the writer set, and the version."""
    data: dict[str, Any] = evidence.model_dump()
    return data


def evidence_of(data: Mapping[str, Any]) -> Evidence:
    """The evidence inside an event's data (decision, phase or step); empty when there is none."""
    return parse_evidence(data.get("evidence"))


def decision_of(data: Mapping[str, Any]) -> DecisionRecord:
    """A ``decision`` event's data as the typed record (legacy evidence included)."""
    fields = dict(data)
    fields["evidence"] = parse_evidence(fields.get("evidence"))
    return DecisionRecord.model_validate(fields)


def evidence_schema() -> dict[str, Any]:
    """The JSON Schema of ``Evidence``, for the dashboard and ``rollwise schema evidence``."""
    schema: dict[str, Any] = Evidence.model_json_schema()
    schema["$id"] = f"https://rollwise.dev/schema/evidence/v{EVIDENCE_VERSION}"
    return schema
