"""Pydantic models of a rollout spec, in the vocabulary Argo Rollouts users know.

Durations and percentages stay human-readable in YAML (``30s``, ``0.1%``); validators turn
them into seconds and fractions so the engine only ever sees numbers.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)

from rollwise.core.blackouts import WEEKLY_PATTERN, Blackout, parse_weekly, zone
from rollwise.core.units import (
    DURATION_PATTERN,
    LATENCY_PATTERN,
    PERCENT_PATTERN,
    format_duration,
    parse_duration,
    parse_fraction,
    parse_latency_ms,
)

# The published schema (`rollwise schema rollout`) describes what users write, not the parsed numbers.
DURATION_SCHEMA: dict[str, Any] = {
    "anyOf": [{"type": "number", "minimum": 0}, {"type": "string", "pattern": DURATION_PATTERN}],
    "description": "Seconds, or a duration such as 30s, 5m, 1h30m, 250ms.",
    "examples": ["30s", "5m"],
}
PERCENT_SCHEMA: dict[str, Any] = {
    "anyOf": [{"type": "number", "minimum": 0, "maximum": 1}, {"type": "string", "pattern": PERCENT_PATTERN}],
    "description": "A fraction (0.001) or a percentage (0.1%).",
    "examples": ["0.1%", 0.001],
}
THRESHOLD_PATTERN = r"^\s*(?:[A-Za-z][\w.]*\s*)?(?:<=|>=|<|>)\s*\S.*$"
THRESHOLD_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "pattern": THRESHOLD_PATTERN},
        {
            "type": "object",
            "properties": {"op": {"enum": ["<", "<=", ">", ">="]}, "value": {"type": "number"},
                           "text": {"type": "string"}},
            "required": ["op", "value"],
            "additionalProperties": False,
        },
        {"type": "null"},
    ],
    "description": "Absolute gate: 'errorRate < 0.1%', '< 200ms', '>= 0.9'.",
    "examples": ["< 0.1%", "latencyP99 < 200ms"],
}

Seconds = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(lambda s: format_duration(s, exact=True), return_type=str, when_used="json"),
    WithJsonSchema(DURATION_SCHEMA, mode="validation"),
]
Fraction = Annotated[float, BeforeValidator(parse_fraction), WithJsonSchema(PERCENT_SCHEMA, mode="validation")]
Milliseconds = Annotated[
    float,
    BeforeValidator(parse_latency_ms),
    WithJsonSchema(
        {"anyOf": [{"type": "number", "minimum": 0}, {"type": "string", "pattern": LATENCY_PATTERN}],
         "description": "Milliseconds, or 200ms / 1.5s.", "examples": ["200ms"]},
        mode="validation",
    ),
]
PercentOrNumber = Annotated[
    float,
    WithJsonSchema(
        {"anyOf": [{"type": "number", "minimum": 0}, {"type": "string", "pattern": PERCENT_PATTERN}],
         "description": "A number, or a percentage such as 0.1%.", "examples": ["0.1%", 0.05]},
        mode="validation",
    ),
]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class HealthCheckSpec(Model):
    """Envoy's active HTTP health check of a version's endpoints (gRPC versions are checked over HTTP/2)."""

    path: str = Field(default="/healthz", pattern=r"^/")
    interval: Seconds = 1.0
    timeout: Seconds = 1.0
    unhealthyThreshold: int = Field(default=2, ge=1)
    healthyThreshold: int = Field(default=1, ge=1)


class OutlierDetectionSpec(Model):
    """Passive ejection: an endpoint answering ``consecutive5xx`` 5xx in a row is ejected for a while."""

    consecutive5xx: int = Field(default=5, ge=1)
    interval: Seconds = 1.0
    baseEjectionTime: Seconds = 5.0
    maxEjectionPercent: int = Field(default=50, ge=0, le=100)


class VersionRef(Model):
    """One deployable version: an upstream address, or a command rollwise starts itself."""

    name: str = Field(min_length=1, description="Version name, e.g. v2 or a git SHA.")
    address: str | None = Field(default=None, description="host:port of an already running upstream.")
    command: str | None = Field(
        default=None, description="Command that starts the version; {port} is replaced by its port."
    )
    port: int | None = Field(default=None, ge=1, le=65535)
    healthPath: str = "/healthz"
    readyTimeout: Seconds = 20.0
    commitTime: str | None = Field(default=None, description="ISO time of the change, for lead time.")
    addresses: list[str] = Field(
        default_factory=list, description="envoy-ads: a pool of host:port endpoints for this version (instead of "
        "address); Envoy balances over the healthy ones.")
    protocol: Literal["http1", "http2", "grpc"] = Field(
        default="http1", description="envoy-ads: how Envoy talks to this version (grpc is HTTP/2).")
    healthCheck: HealthCheckSpec | None = Field(
        default=None, description="envoy-ads: Envoy's active HTTP health check of each endpoint.")
    outlierDetection: OutlierDetectionSpec | None = Field(
        default=None, description="envoy-ads: eject endpoints that keep failing (passive).")

    @model_validator(mode="after")
    def _address_shape(self) -> VersionRef:
        for field_name, value in [("address", self.address), *(("addresses", a) for a in self.addresses)]:
            if value and not re.fullmatch(r"[\w.\-\[\]:]+:\d+", value):
                raise ValueError(f"{field_name} {value!r} must be host:port")
        return self


class Versions(Model):
    stable: VersionRef
    canary: VersionRef

    @model_validator(mode="after")
    def _distinct(self) -> Versions:
        if self.stable.name == self.canary.name:
            raise ValueError("stable and canary must have different version names")
        return self


Comparison = Literal["<", "<=", ">", ">="]
_THRESHOLD = re.compile(r"^\s*(?:(?P<metric>[A-Za-z][\w.]*)\s*)?(?P<op><=|>=|<|>)\s*(?P<value>.+?)\s*$")


class Threshold(Model):
    """An absolute gate such as ``errorRate < 0.1%`` or ``latencyP99 < 200ms``."""

    op: Comparison
    value: float
    text: str

    @classmethod
    def parse(cls, raw: Any, unit: Literal["fraction", "ms", "number"]) -> Threshold:
        if isinstance(raw, Threshold):
            return raw
        if isinstance(raw, dict):
            return cls.model_validate(raw)
        match = _THRESHOLD.match(str(raw))
        if not match:
            raise ValueError(f"invalid threshold {raw!r}: write e.g. '< 0.1%' or '< 200ms'")
        value_text = match.group("value")
        if unit == "fraction":
            value = parse_fraction(value_text)
        elif unit == "ms":
            value = parse_latency_ms(value_text)
        else:
            try:
                value = float(value_text)
            except ValueError:
                raise ValueError(f"invalid number {value_text!r} in threshold {raw!r}") from None
        return cls(op=match.group("op"), value=value, text=str(raw).strip())  # type: ignore[arg-type]

    def holds(self, observed: float) -> bool:
        return {
            "<": observed < self.value,
            "<=": observed <= self.value,
            ">": observed > self.value,
            ">=": observed >= self.value,
        }[self.op]


MetricKind = Literal["errorRate", "latency", "kpi", "custom"]


class MetricSpec(Model):
    """One metric the judge watches, with an SLO gate and/or a comparison with the baseline."""

    name: str = Field(min_length=1)
    type: MetricKind = "errorRate"
    quantile: float = Field(default=0.99, gt=0, lt=1, description="For latency: which quantile.")
    slo: Annotated[Threshold | None, WithJsonSchema(THRESHOLD_SCHEMA, mode="validation")] = Field(
        default=None, description="Absolute gate, e.g. '< 0.1%' or '< 200ms'."
    )
    maxIncrease: PercentOrNumber | None = Field(
        default=None,
        ge=0,
        description="Tolerated increase over the baseline: a fraction for rates (0.1% = 0.001), "
        "a share for latency exceedance and relative drop for KPIs.",
    )
    minEffect: PercentOrNumber | None = Field(
        default=None,
        gt=0,
        description="Smallest regression worth catching (same unit as maxIncrease); enables an SPRT.",
    )
    weight: float = Field(default=1.0, gt=0)
    critical: bool = Field(default=False, description="A critical metric rolls back on its own evidence.")
    numerator: str | None = Field(default=None, description="KPI event counted as success, e.g. checkout.")
    denominator: str | None = Field(default=None, description="KPI event counted as a trial, e.g. visit.")
    query: str | None = Field(default=None, description="PromQL; {version} is replaced per version.")
    higherIsBetter: bool | None = None
    interval: Seconds | None = None

    @model_validator(mode="before")
    @classmethod
    def _parse_units(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        kind = data.get("type", "errorRate")
        unit: Literal["fraction", "ms", "number"] = (
            "fraction" if kind == "errorRate" else "ms" if kind == "latency" else "number"
        )
        if data.get("slo") is not None:
            data["slo"] = Threshold.parse(data["slo"], unit)
        for key in ("maxIncrease", "minEffect"):
            if isinstance(data.get(key), str):
                data[key] = parse_fraction(data[key])
        return data

    @model_validator(mode="after")
    def _kpi_needs_events(self) -> MetricSpec:
        if self.type == "kpi" and not (self.numerator and self.denominator):
            raise ValueError("a kpi metric needs numerator and denominator event names")
        return self


class AgentEndpointSpec(Model):
    """How an agent version is reached: an HTTP endpoint speaking one of two protocols.

    By default each version is asked at its own upstream (``versions.*.address`` + ``path``); give
    ``stableUrl``/``canaryUrl`` to ask elsewhere (over the API: under ``serve --allow-url``, or the rollout's
    own Envoy listener). Through Envoy, ``canaryHeaders`` match a ``setHeaderRoute`` so the task reaches the
    canary the way testers' requests do. Header values are routing, not credentials: specs are shown as written.
    """

    protocol: Literal["openai-chat", "json-post"] = "json-post"
    path: str = Field(default="/", pattern=r"^/", description="Path on each version's upstream.")
    stableUrl: str | None = None
    canaryUrl: str | None = None
    url: str | None = Field(default=None, description="One URL for both (an LLM judge's endpoint).")
    stableHeaders: dict[str, str] = Field(default_factory=dict, description="Sent with every stable request.")
    canaryHeaders: dict[str, str] = Field(default_factory=dict,
                                          description="Sent with every canary request, e.g. a header route's match.")
    model: str | None = Field(default=None, description="openai-chat: the model name sent.")
    inputField: str = Field(default="input", description="json-post: the request field holding the task.")
    outputField: str = Field(default="output", description="json-post: the response field holding the answer.")
    timeout: Seconds = 30.0


class EvaluationSpec(Model):
    """An evaluation suite run against stable and canary at every look of a stage, compared paired."""

    name: str = Field(min_length=1, pattern=r"^[\w.\-]+$")
    suite: str = Field(min_length=1, description="Path of the JSONL suite (input, expected, grader).")
    grader: Literal["exact", "regex", "jsonSchema", "command", "llmJudge"] = Field(
        default="exact", description="Grader for tasks that name none.")
    command: str | None = Field(default=None, description="command grader: run with the answer on stdin.")
    judge: AgentEndpointSpec | None = Field(default=None, description="llmJudge grader: the judge's endpoint.")
    endpoint: AgentEndpointSpec = Field(default_factory=AgentEndpointSpec)
    runs: int = Field(default=3, ge=1, le=50, description="Runs per task on each version (k).")
    tasksPerLook: int = Field(default=10, ge=1, le=1000, description="Tasks drawn per window.")
    concurrency: int = Field(default=4, ge=1, le=64, description="Agent calls in flight at once during a look.")
    weight: float = Field(default=1.0, gt=0)
    critical: bool = False
    maxDecrease: PercentOrNumber = Field(default=0.0, ge=0, lt=1, description="Tolerated pass-rate drop.")
    minEffect: PercentOrNumber = Field(default=0.1, gt=0, lt=1,
                                       description="Pass-rate drop that must be ruled out to expand.")
    consistency: bool = Field(default=False, description="Also gate pass^k (all k runs of a task pass).")

    @model_validator(mode="before")
    @classmethod
    def _percentages(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for key in ("maxDecrease", "minEffect"):
                if isinstance(data.get(key), str):
                    data[key] = parse_fraction(data[key])
        return data

    @model_validator(mode="after")
    def _grader_needs(self) -> EvaluationSpec:
        if self.grader == "command" and not self.command:
            raise ValueError("grader: command needs command")
        if self.grader == "llmJudge" and (self.judge is None or not self.judge.url):
            raise ValueError("grader: llmJudge needs judge.url")
        return self


class AdaptiveSpec(Model):
    """``adaptive: {risk: true}``: what adapts to the evidence and to the change being shipped."""

    stages: bool = Field(default=True, description="End a stage as soon as the evidence says so.")
    risk: bool = Field(default=False, description="Fit the plan to the change's risk (rollout start --repo): "
                       "risky changes start smaller, bake longer and need approval; low-risk ones take a fast lane.")
    riskHigh: float = Field(default=0.6, gt=0, le=1, description="Risk at or above this takes the careful lane.")
    riskLow: float = Field(default=0.25, ge=0, lt=1, description="Risk below this takes the fast lane.")

    @model_validator(mode="after")
    def _ordered(self) -> AdaptiveSpec:
        if self.riskLow >= self.riskHigh:
            raise ValueError("riskLow must be below riskHigh")
        return self


class AnalysisSpec(Model):
    """How a stage is judged. The defaults are the statistically valid sequential judge."""

    judge: Literal["sequential", "threshold", "kayenta"] = "sequential"
    interval: Seconds = 10.0
    alpha: float = Field(default=0.01, gt=0, lt=0.5, description="Tolerated false-rollback probability.")
    minSamples: int = Field(default=100, ge=0, description="Canary requests a stage needs before expanding.")
    minStageTime: Seconds = 30.0
    maxStageTime: Seconds = Field(default=900.0, description="Stage time cap; then onInconclusive.")
    adaptive: bool | AdaptiveSpec = Field(
        default=True, description="End a stage as soon as the evidence says so (true/false), or a mapping: "
        "{stages: true, risk: true} also fits the plan to the change's risk.",
    )
    onNoData: Literal["hold", "abort"] = "hold"
    noDataLimit: Seconds = 300.0
    onInconclusive: Literal["hold", "rollback", "promote"] = "hold"
    burnRateLimit: float = Field(default=14.4, gt=0, description="Predictive rollback error-budget burn rate.")
    runs: int = Field(default=1, ge=1, description="Independent runs a stage requires (non-deterministic apps).")
    restartBetweenRuns: bool = Field(
        default=True, description="Restart the canary between runs when rollwise deploys it, so runs are independent.",
    )
    baselineHistory: Seconds = Field(
        default=600.0, ge=0,
        description="Stable-version history read once at the start (0: none): sharpens the baseline-rate "
        "estimate the tests' alternatives are built on, never their false-rollback guarantee.",
    )
    failureLimit: int = Field(default=3, ge=1, description="Threshold judge: failed checks before rollback.")
    kayenta: KayentaSpec | None = None
    metrics: list[MetricSpec] = Field(default_factory=list)
    evaluations: list[EvaluationSpec] = Field(
        default_factory=list, description="Evaluation suites run on both versions at every look (agents).")

    @property
    def ends_stages_early(self) -> bool:
        return self.adaptive.stages if isinstance(self.adaptive, AdaptiveSpec) else self.adaptive

    @property
    def risk_adaptive(self) -> AdaptiveSpec | None:
        return self.adaptive if isinstance(self.adaptive, AdaptiveSpec) and self.adaptive.risk else None

    @model_validator(mode="after")
    def _unique_metric_names(self) -> AnalysisSpec:
        if not self.metrics and not self.evaluations:
            raise ValueError("metrics: give at least one metric (or an evaluation)")
        if self.evaluations and self.judge != "sequential":
            raise ValueError("evaluations are judged by the sequential judge only")
        seen: set[str] = set()
        names = [m.name for m in self.metrics] + [e.name for e in self.evaluations]
        for name in names:
            if name in seen:
                raise ValueError(f"metric name {name!r} is used twice")
            seen.add(name)
        if self.maxStageTime < self.minStageTime:
            raise ValueError("maxStageTime must not be shorter than minStageTime")
        return self


class KayentaSpec(Model):
    """Spinnaker/Kayenta-compatible scoring for teams migrating from it."""

    passScore: float = Field(default=95, ge=0, le=100)
    marginalScore: float = Field(default=75, ge=0, le=100)
    confidence: float = Field(default=0.98, gt=0, lt=1)
    bucket: Seconds = 10.0


class PauseSpec(Model):
    duration: Seconds | None = None
    untilApproved: bool = False

    @model_validator(mode="after")
    def _one_kind(self) -> PauseSpec:
        if (self.duration is None) == (not self.untilApproved):
            raise ValueError("pause needs either duration or untilApproved: true")
        return self


class MirrorSpec(Model):
    percent: float = Field(ge=0, le=100)


class HeaderMatch(Model):
    name: str
    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None


class HeaderRouteSpec(Model):
    """Send requests that match a header or cookie to the canary (A/B, internal testers)."""

    name: str = "ab"
    headers: list[HeaderMatch] = Field(default_factory=list)
    cookie: dict[str, str] | None = Field(default=None, description="Cookie name -> exact value.")

    @model_validator(mode="after")
    def _needs_match(self) -> HeaderRouteSpec:
        if not self.headers and not self.cookie:
            raise ValueError("setHeaderRoute needs headers or cookie")
        return self


class InlineAnalysisStep(Model):
    duration: Seconds | None = None
    metrics: list[MetricSpec] | None = None


class CanaryStep(Model):
    """Exactly one of the step kinds, as in Argo Rollouts."""

    setWeight: int | None = Field(default=None, ge=0, le=100)
    pause: PauseSpec | None = None
    analysis: InlineAnalysisStep | None = None
    setMirror: MirrorSpec | None = None
    setHeaderRoute: HeaderRouteSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _exactly_one(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError("a step must be a mapping such as {setWeight: 5}")
        data = {key: value for key, value in data.items() if value is not None}  # a dumped step has Nones
        known = set(cls.model_fields)
        unknown = [key for key in data if key not in known]
        if unknown:
            raise ValueError(
                f"unknown step type {unknown[0]!r}; expected one of {', '.join(sorted(known))}"
            )
        if len(data) != 1:
            raise ValueError("a step has exactly one of " + ", ".join(sorted(known)))
        return data

    @property
    def kind(self) -> str:
        for key in type(self).model_fields:
            if getattr(self, key) is not None:
                return key
        raise AssertionError("validated step without a kind")


class WaveGate(Model):
    """What a wave waits for before it starts: a person's ``approve``."""

    untilApproved: bool = Field(default=False, description="Hold before this wave until a person approves.")


class WaveSpec(Model):
    """One wave: a group of regions that runs the canary's steps together, then bakes."""

    name: str = Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9][\w.\-]*$")
    regions: list[str] = Field(min_length=1, description="Regions (or zones) whose proxies this wave updates.")
    bake: Seconds = Field(default=0.0, description="How long the wave's regions keep the canary, judged, after "
                          "its steps, before the wave counts as promoted and the next one may start.")
    parallelism: int | None = Field(default=None, ge=1, description="How many of the wave's regions change at "
                                    "once (default: all); each group runs the steps and bakes in turn.")
    gate: WaveGate | None = None

    @model_validator(mode="after")
    def _distinct_regions(self) -> WaveSpec:
        if len(set(self.regions)) != len(self.regions):
            raise ValueError(f"regions: a region is listed twice in wave {self.name!r}")
        if any(not r.strip() for r in self.regions):
            raise ValueError("regions: a region name may not be empty")
        return self

    def batches(self) -> list[list[str]]:
        """The wave's regions in the groups that change together (``parallelism`` at a time)."""
        size = self.parallelism or len(self.regions)
        return [self.regions[i:i + size] for i in range(0, len(self.regions), size)]


class CarryForwardSpec(Model):
    """When every earlier wave's evidence was clean, later waves may start higher and bake shorter."""

    startWeight: int | None = Field(default=None, ge=1, le=100, description="A later wave starts at the first "
                                    "setWeight step at or above this percent, skipping the steps before it.")
    bakeFactor: float = Field(default=1.0, gt=0, le=1, description="A later wave bakes this share of its bake.")
    minRequests: int = Field(default=0, ge=0, description="Canary requests earlier waves must have judged "
                             "for their evidence to count as clean.")


class BlackoutSpec(Model):
    """No wave starts in these regions between ``from`` and ``to`` on the local clock of ``timezone``.

    Times are ``Fri 16:00`` (weekly) or ``16:00`` (daily, then both without a weekday); a wave due in a
    blackout waits, and a wave already running is not stopped.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    regions: list[str] | Literal["all"] = Field(default="all", description="Regions it applies to, or all.")
    timezone: str = Field(default="UTC", description="IANA time zone of the regions' clock, e.g. Europe/Berlin.")
    start: str = Field(alias="from", pattern=WEEKLY_PATTERN, description="Start, e.g. 'Fri 16:00'.")
    end: str = Field(alias="to", pattern=WEEKLY_PATTERN, description="End (exclusive), e.g. 'Mon 08:00'.")

    @model_validator(mode="after")
    def _parse(self) -> BlackoutSpec:
        zone(self.timezone)
        start, end = parse_weekly(self.start), parse_weekly(self.end)
        if (start.day is None) != (end.day is None):
            raise ValueError("from and to must both name a weekday (weekly) or neither (daily)")
        if start == end:
            raise ValueError("from and to must differ")
        return self

    def applies_to(self, regions: list[str]) -> bool:
        return self.regions == "all" or any(r in self.regions for r in regions)

    def window(self) -> Blackout:
        return Blackout(timezone=self.timezone, start=parse_weekly(self.start), end=parse_weekly(self.end))


class CanaryStrategy(Model):
    """The canary's steps; with ``waves``, the steps run wave by wave over groups of regions.

    Waves extend the canary rather than being a strategy of their own in the spec: each wave runs
    exactly these steps and this analysis on its regions, so everything that reads a canary's steps
    (approvals, risk-fitted plans, status) keeps working. The engine runs such a canary with the
    ``regionWaves`` strategy (``Strategy.kind``), so a spec update cannot add or drop waves mid-rollout.
    """

    steps: list[CanaryStep] = Field(min_length=1)
    analysis: AnalysisSpec | None = Field(default=None, description="Background analysis for every stage.")
    stickyHeader: str | None = Field(default=None, description="Keep a user on one version, e.g. x-user.")
    waves: list[WaveSpec] | None = Field(default=None, min_length=1, description="Region waves, in order: each "
                                         "runs the steps on its regions; earlier waves stay on the canary.")
    onFailure: Literal["rollback", "hold"] = Field(
        default="rollback", description="Waves: a failing wave rolls back every wave already updated (rollback) "
        "or sends only its own regions back to stable and holds for a person (hold).")
    carryForward: CarryForwardSpec | None = Field(default=None, description="Waves: what clean evidence from "
                                                  "earlier waves lets later ones skip.")
    blackouts: list[BlackoutSpec] = Field(default_factory=list, description="Waves: when no wave may start.")

    @model_validator(mode="after")
    def _waves_consistent(self) -> CanaryStrategy:
        if self.waves is None:
            for key in ("carryForward", "blackouts"):
                if getattr(self, key):
                    raise ValueError(f"{key}: needs waves")
            if self.onFailure != "rollback":
                raise ValueError("onFailure: needs waves")
            return self
        names: set[str] = set()
        regions: dict[str, str] = {}
        for i, wave in enumerate(self.waves):
            if wave.name in names:
                raise ValueError(f"waves.{i}.name: {wave.name!r} names an earlier wave too")
            names.add(wave.name)
            for region in wave.regions:
                if region in regions:
                    raise ValueError(f"waves.{i}.regions: region {region!r} is already in wave {regions[region]!r}")
                regions[region] = wave.name
        for i, blackout in enumerate(self.blackouts):
            unknown = [r for r in blackout.regions if r not in regions] if blackout.regions != "all" else []
            if unknown:
                raise ValueError(f"blackouts.{i}.regions: region {unknown[0]!r} is in no wave")
        return self


class BlueGreenStrategy(Model):
    previewAnalysis: AnalysisSpec | None = None
    previewMirrorPercent: float = Field(default=0, ge=0, le=100, description="Mirror live traffic to preview.")
    previewHeader: HeaderRouteSpec | None = None
    previewDuration: Seconds = 60.0
    autoPromote: bool = True
    rollbackWindow: Seconds = 600.0
    postPromotionAnalysis: AnalysisSpec | None = None


RESPONSE_COMPARISONS = ("status", "body")
"""What the response comparator behind a mirror compares; a shadow's other ``compare`` entries come from metrics."""


class ShadowStrategy(Model):
    percent: float = Field(default=100, gt=0, le=100)
    duration: Seconds = 300.0
    compare: list[Literal["status", "body", "headers", "latency"]] = Field(default=["status"])
    maxMismatchRate: Fraction = 0.01
    analysis: AnalysisSpec | None = None

    @property
    def compared_responses(self) -> list[str]:
        """The ``compare`` entries a response comparator handles; none: no comparator is needed."""
        return [c for c in self.compare if c in RESPONSE_COMPARISONS]


class Strategy(Model):
    canary: CanaryStrategy | None = None
    blueGreen: BlueGreenStrategy | None = None
    shadow: ShadowStrategy | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Strategy:
        chosen = [k for k in ("canary", "blueGreen", "shadow") if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ValueError("choose exactly one strategy: canary, blueGreen or shadow")
        return self

    @property
    def kind(self) -> Literal["canary", "regionWaves", "blueGreen", "shadow"]:
        """The engine strategy that runs it: a canary with waves runs as ``regionWaves``."""
        if self.canary is not None:
            return "regionWaves" if self.canary.waves else "canary"
        return "blueGreen" if self.blueGreen is not None else "shadow"


class TrafficSpec(Model):
    """Who moves the users: Envoy, a feature flag (progressive flag rollout), a file, or nobody."""

    router: Literal["envoy", "envoy-ads", "flag", "simulated", "file", "none"] = Field(
        default="envoy", description="envoy-ads: every Envoy connected to rollwise's ADS server (`--ads-listen`) "
        "routes the rollout; listen/adminPort then come from each Envoy's bootstrap (`rollwise fleet bootstrap`).")
    listen: str = "127.0.0.1:10000"
    adminPort: int | None = None
    path: str | None = Field(default=None, description="For the file router: where desired routes go.")
    flag: str | None = Field(default=None, description="For the flag router: the flag whose share is rolled out.")
    flagsFile: str | None = Field(default=None, description="For the flag router: the flagd-format flag file.")

    @model_validator(mode="after")
    def _flag_router_needs_flag(self) -> TrafficSpec:
        if self.router == "flag" and not (self.flag and self.flagsFile):
            raise ValueError("router: flag needs flag (the flag key) and flagsFile")
        return self


class PrometheusQueries(Model):
    """PromQL templates replacing the Envoy defaults; they take {cluster}, {rollout}, {version}, {window}."""

    requests: str | None = None
    errors: str | None = None
    latency_buckets: str | None = None
    latency_sum: str | None = None


class MetricsSourceSpec(Model):
    source: Literal["envoy", "prometheus", "pushed", "simulated", "otlp"] = Field(
        default="envoy", description="otlp: the spans `rollwise serve` receives over OTLP/HTTP (service.version "
        "per version), judged by the server's controller.")
    prometheusUrl: str = "http://127.0.0.1:9090"
    prometheusQueries: PrometheusQueries | None = None


NOTIFY_ENV_PATTERN = r"^ROLLWISE_NOTIFY_[A-Z0-9_]{1,100}$"
EnvName = Annotated[str, Field(pattern=NOTIFY_ENV_PATTERN)]


class NotifySpec(Model):
    """Where a rollout's events go. Secrets are best given by reference (``*Env``): the name of an
    environment variable of the process that delivers, which must start with ``ROLLWISE_NOTIFY_`` so a
    spec cannot ask for the process's other secrets. Literal secrets are redacted wherever a spec is
    read back (see ``rollwise.spec.secrets``)."""

    slack: str | None = Field(default=None, description="Slack incoming webhook URL (a secret: prefer slackEnv).")
    slackEnv: EnvName | None = Field(default=None, description="Environment variable holding the Slack URL.")
    teams: str | None = Field(default=None, description="Teams webhook URL (a secret: prefer teamsEnv).")
    teamsEnv: EnvName | None = Field(default=None, description="Environment variable holding the Teams URL.")
    webhook: str | None = Field(default=None, description="Generic webhook URL; deliveries are HMAC-signed.")
    webhookEnv: EnvName | None = Field(default=None, description="Environment variable holding the webhook URL.")
    webhookSecret: str | None = Field(default=None, description="HMAC key (a secret: prefer webhookSecretEnv).")
    webhookSecretEnv: EnvName | None = Field(default=None,
                                             description="Environment variable holding the HMAC key.")
    reportUrl: str | None = None

    @model_validator(mode="after")
    def _literal_or_reference(self) -> NotifySpec:
        for key in ("slack", "teams", "webhook", "webhookSecret"):
            if getattr(self, key) is not None and getattr(self, f"{key}Env") is not None:
                raise ValueError(f"give {key} or {key}Env, not both")
        return self


WatchAction = Literal["notify", "undo", "killFlag"]
WATCH_BUILT_IN = ("errorRate", "latencyMean", "latencyP99", "requestRate", "cpu", "memory")


class WatchSeries(Model):
    """A Prometheus series the watch scores beside the built-in ones (read at ``metrics.prometheusUrl``)."""

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_.\-]{0,62}$")
    query: str = Field(min_length=1, description="PromQL; {service}, {rollout} and {window} are filled in.")
    direction: Literal["up", "down", "both"] = Field(default="up", description="Which way is bad.")


class WatchSpec(Model):
    """The post-release watch of this service: what it watches, and what it may do about an anomaly.

    ``undo`` and ``killFlag`` happen only when the anomaly is attributed to a change (a rollwise release
    of this service, a flag in ``flags``) with at least ``minConfidence``; never on one with no culprit.
    """

    actions: list[WatchAction] = Field(default_factory=lambda: list[WatchAction](["notify"]))
    minConfidence: float = Field(default=0.8, ge=0.0, le=1.0)
    interval: Seconds = Field(default=10.0, description="Seconds between two points of each watched metric.")
    metrics: list[str] | None = Field(
        default=None, min_length=1,
        description="Series to score: errorRate, latencyMean, latencyP99, requestRate, cpu, memory, kpi:NAME (a KPI "
        "metric of the analysis), or a name from series. Default: every one the service has.")
    series: list[WatchSeries] = Field(default_factory=list, description="Prometheus series to score too.")
    dependsOn: list[str] = Field(default_factory=list, description="Services this one calls: their changes count.")
    flags: list[str] = Field(default_factory=list, description="Flags this service reads: their changes count.")
    history: Seconds = Field(default=7200.0, description="How far back points are kept for the onset estimate.")
    confirm: int = Field(default=2, ge=1, le=60, description="Consecutive alarming points that open an incident.")
    resolveAfter: int = Field(default=3, ge=1, le=600, description="Consecutive quiet points that resolve it.")
    minRequests: int = Field(default=20, ge=1, description="A window with fewer requests is not a point.")

    @model_validator(mode="after")
    def _known_metrics(self) -> WatchSpec:
        named = {s.name for s in self.series}
        if len(named) != len(self.series) or named & set(WATCH_BUILT_IN):
            raise ValueError("series: names must be unique and not a built-in metric's")
        for name in self.metrics or []:
            if name not in WATCH_BUILT_IN and name not in named and not name.startswith("kpi:"):
                raise ValueError(f"metrics: unknown series {name!r} (built-in: {', '.join(WATCH_BUILT_IN)}, "
                                 "kpi:NAME, or a name from series)")
        return self


class MemorySpec(Model):
    """An agent's memory versioned with the release (LanceDB; ``agents/memory.py``).

    Starting the rollout tags the live table; the canary writes to ``<table>-canary``, a copy of the
    tagged version; a rollback restores the tag; a promotion applies the canary's writes by ``onPromote``:
    ``keep`` (the canary's table becomes live), ``discard``, ``replay`` (insert the canary's new keys).
    """

    uri: str = Field(min_length=1, description="the LanceDB folder (from the API: inside an --allow-path)")
    table: str = Field(default="memories", pattern=r"^[A-Za-z0-9_\-]{1,100}$")
    key: str = Field(default="id", min_length=1, description="the column that identifies a row (replay, diff)")
    onPromote: Literal["keep", "discard", "replay"] = "keep"


class RolloutSpec(Model):
    apiVersion: Literal["rollwise/v1"] = "rollwise/v1"
    kind: Literal["Rollout"] = "Rollout"
    name: str = Field(pattern=r"^[a-z0-9]([a-z0-9.\-]{0,61}[a-z0-9])?$")
    service: str = Field(min_length=1)
    region: str | None = None
    versions: Versions
    strategy: Strategy
    traffic: TrafficSpec = Field(default_factory=TrafficSpec)
    metrics: MetricsSourceSpec = Field(default_factory=MetricsSourceSpec)
    notify: NotifySpec | None = None
    watch: WatchSpec | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    memory: MemorySpec | None = None

    @model_validator(mode="after")
    def _versions_reachable(self) -> RolloutSpec:
        if self.traffic.router in ("flag", "none", "file", "simulated"):
            return self  # flag variants and dry runs need no upstream
        for role in ("stable", "canary"):
            ref: VersionRef = getattr(self.versions, role)
            if ref.addresses and self.traffic.router != "envoy-ads":
                raise ValueError(f"versions.{role}.addresses: a pool needs traffic.router envoy-ads; give address")
            if not ref.address and not ref.command and not ref.addresses:
                raise ValueError(f"versions.{role}: give either address or command")
        return self

    @model_validator(mode="after")
    def _waves_have_regions(self) -> RolloutSpec:
        if self.strategy.kind == "regionWaves" and self.traffic.router in ("envoy", "flag"):
            raise ValueError(f"traffic.router: {self.traffic.router} has no regions; region waves need envoy-ads "
                             "(or file, simulated, none)")
        return self

    @model_validator(mode="after")
    def _watched_kpis_exist(self) -> RolloutSpec:
        if self.watch is None or not self.watch.metrics:
            return self
        analyses = [self.analysis()]
        if self.strategy.blueGreen is not None:
            analyses.append(self.strategy.blueGreen.postPromotionAnalysis)
        kpis = {m.name for a in analyses if a is not None for m in a.metrics if m.type == "kpi"}
        for name in self.watch.metrics:
            if name.startswith("kpi:") and name[4:] not in kpis:
                raise ValueError(f"watch.metrics: {name!r} names no kpi metric of the analysis")
        return self

    def analysis(self) -> AnalysisSpec | None:
        """The analysis that gates stages of this rollout's strategy, if any."""
        strategy = self.strategy
        if strategy.canary is not None:
            return strategy.canary.analysis
        if strategy.blueGreen is not None:
            return strategy.blueGreen.previewAnalysis
        assert strategy.shadow is not None
        return strategy.shadow.analysis

    def evaluations(self) -> list[tuple[tuple[str, ...], EvaluationSpec]]:
        """Every evaluation any analysis of this spec runs, with where it sits (for refusals)."""
        strategy = self.strategy
        kind = strategy.kind
        analyses: list[tuple[str, AnalysisSpec | None]] = [("analysis", self.analysis())]
        if strategy.blueGreen is not None:
            analyses = [("previewAnalysis", strategy.blueGreen.previewAnalysis),
                        ("postPromotionAnalysis", strategy.blueGreen.postPromotionAnalysis)]
        return [(("strategy", kind, key, "evaluations", str(i)), evaluation)
                for key, analysis in analyses if analysis is not None
                for i, evaluation in enumerate(analysis.evaluations)]


AnalysisSpec.model_rebuild()
