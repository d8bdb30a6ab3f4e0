"""An experiment's definition: what is tested, on which variants, judged by which metrics.

An experiment runs on a flag's variants (``flag``) or on a header/cookie route (``route``); either way
subjects are exposed to one variant (exposures, keyed by subject) and their metric events are joined
to those exposures by subject. Validation errors name the field, so the CLI and API can answer with
one line.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
EVENT = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")

#: How a subject's events become the one number per subject the statistics run on.
Aggregation = Literal["conversion", "sum", "mean", "ratio"]


class Metric(BaseModel):
    """A metric: ``conversion`` (1 if the subject had the event), ``sum`` (revenue, counts), ``mean``
    (durations: the subject's mean), ``ratio`` (sum of ``event`` ÷ sum of ``denominator`` per variant,
    e.g. revenue per session, by the delta method)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=EVENT.pattern)
    event: str | None = Field(default=None, pattern=EVENT.pattern, description="Event name (default: name)")
    kind: Aggregation = "conversion"
    denominator: str | None = Field(default=None, pattern=EVENT.pattern)
    higherIsBetter: bool = True
    cuped: bool = Field(default=True, description="Use the subject's pre-experiment events as covariate")

    @model_validator(mode="after")
    def _ratio_needs_denominator(self) -> Metric:
        if (self.kind == "ratio") != (self.denominator is not None):
            raise ValueError("denominator: required for kind ratio, and only for it")
        return self

    @property
    def event_name(self) -> str:
        return self.event or self.name


class Guardrail(Metric):
    """A metric that must not get worse: a breach stops the experiment and kills the flag."""

    maxRegression: float = Field(default=0.0, ge=0.0, le=10.0,
                                 description="Tolerated relative regression (0.05 = 5 %) before a breach")


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid")

    header: str | None = Field(default=None, max_length=128)
    cookie: str | None = Field(default=None, max_length=128)

    @model_validator(mode="after")
    def _one(self) -> Route:
        if (self.header is None) == (self.cookie is None):
            raise ValueError("route: give exactly one of header, cookie")
        return self


class ExperimentSpec(BaseModel):
    """What a person writes to create an experiment."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME.pattern, description="Lower-case letters, digits and dashes")
    hypothesis: str = Field(min_length=1, max_length=2000)
    owner: str = Field(min_length=1, max_length=255)
    flag: str | None = Field(default=None, max_length=255)
    route: Route | None = None
    variants: list[str] = Field(min_length=2, max_length=20)
    control: str | None = Field(default=None, description="The baseline variant (default: the first)")
    allocation: dict[str, float] | None = Field(default=None, description="Planned share per variant (default equal)")
    primary: Metric
    secondary: list[Metric] = Field(default_factory=list, max_length=20)
    guardrails: list[Guardrail] = Field(default_factory=list, max_length=20)
    alpha: float = Field(default=0.05, gt=0.0, lt=0.5)
    horizon: int | None = Field(default=None, gt=1, description="Pre-registered subjects per variant "
                                "(fixed-horizon readout); also where the confidence sequence is tightest")

    @field_validator("variants", mode="before")
    @classmethod
    def _names_not_booleans(cls, value: object) -> object:
        if isinstance(value, list) and any(isinstance(v, bool) for v in value):
            raise ValueError("variant names must be strings: quote on/off/yes/no in YAML ('on')")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentSpec:
        if (self.flag is None) == (self.route is None):
            raise ValueError("flag: give exactly one of flag, route")
        if len(set(self.variants)) != len(self.variants):
            raise ValueError("variants: names must be distinct")
        for v in self.variants:
            if not EVENT.match(v):
                raise ValueError(f"variants: {v!r} is not a valid variant name")
        if self.control is not None and self.control not in self.variants:
            raise ValueError(f"control: {self.control!r} is not one of the variants")
        if self.allocation is not None:
            if set(self.allocation) != set(self.variants):
                raise ValueError("allocation: give a share for each variant, and only for them")
            if any(share <= 0 for share in self.allocation.values()):
                raise ValueError("allocation: every share must be positive")
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names):
            raise ValueError("metrics: names must be distinct across primary, secondary and guardrails")
        return self

    @property
    def baseline(self) -> str:
        return self.control or self.variants[0]

    @property
    def shares(self) -> dict[str, float]:
        """The planned allocation, normalised to sum to 1."""
        raw = self.allocation or {v: 1.0 for v in self.variants}
        total = sum(raw.values())
        return {v: raw[v] / total for v in self.variants}

    @property
    def metrics(self) -> list[Metric]:
        return [self.primary, *self.secondary, *self.guardrails]


class Experiment(BaseModel):
    """An experiment as stored: its spec and its lifecycle."""

    spec: ExperimentSpec
    status: Literal["running", "stopped"] = "running"
    started_at: float
    stopped_at: float | None = None
    stopped_by: str | None = None
    stop_reason: str | None = None
    killed_flag: bool = False

    @property
    def name(self) -> str:
        return self.spec.name
