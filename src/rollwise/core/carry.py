"""What a rollout carries from tick to tick besides where it stands: ``RolloutRecord.carry``.

A person's pending promote or approval, what a pause holds for, the stable version's history read
once, a failing metrics backend, the versions already stopped, and the judges' own state handed
from stage to stage. Records stored before this was typed held a dict with the same keys (and a
promote as ``forced_step``/``forced_by``, ``-1`` meaning blue/green); ``Carry`` still reads it.
"""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Hold(enum.StrEnum):
    """What a paused rollout waits for. Only the approval gates are questions ``approve`` answers."""

    HUMAN = "human"  # a person's pause: resume ends it
    NO_DATA = "no-data"  # no metrics for ``noDataLimit`` (onNoData: hold)
    APPROVAL = "approval"  # a ``pause: {untilApproved: true}`` step
    CUTOVER = "cutover"  # a blue/green preview passed, waiting to cut over
    STAGE_CAP = "stage-cap"  # a stage undecided at its cap (onInconclusive: hold)
    SHADOW = "shadow"  # a shadow run undecided or with nothing compared
    WAVE = "wave"  # a region wave with ``gate: {untilApproved: true}`` waiting to start


APPROVAL_GATES = (Hold.APPROVAL, Hold.CUTOVER, Hold.STAGE_CAP, Hold.SHADOW, Hold.WAVE)


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Promotion(_Part):
    """A person's ``promote``, acted on by the next tick where it was given."""

    actor: str = "unknown"
    reason: str = ""
    step: int | None = None  # the canary step it was given at; None for blue/green, which has no steps


class Approval(_Part):
    """A person's ``approve`` of one gate, at the step and stage the rollout stood at."""

    actor: str = "unknown"
    reason: str = ""
    gate: Hold
    step: int
    stage: int


class MetricsFailure(_Part):
    """The metrics backend failing now: its one-line error, since when, and the last failed window's end."""

    message: str
    since: float
    last: float


class RouteFailure(_Part):
    """The data plane refusing the desired route now: its one-line error, since when, and for which revision."""

    message: str
    since: float
    revision: int


class BaselineRead(_Part):
    """The stable version's stats over [start, end) before the rollout (``VersionStats.to_dict``), read once."""

    start: float
    end: float
    baseline: dict[str, Any] | None = None
    error: str | None = None  # why the source could not say (judged without a prior)

    def for_judges(self) -> dict[str, Any]:
        read: dict[str, Any] = {"start": self.start, "end": self.end, "baseline": self.baseline}
        if self.error is not None:
            read["error"] = self.error
        return read


class PriorsRead(_Part):
    """The mixture priors fitted on past releases when the rollout began (``MixturePrior.to_dict`` per metric).

    Fixed before the first window and never refitted, so the judges' e-values stay valid.
    """

    metrics: dict[str, dict[str, Any]] = Field(default_factory=dict)
    releases: int = 0  # past effects read (all services, the metrics' kinds)
    error: str | None = None  # why the history could not be read (judged with flat mixtures)

    def for_judges(self) -> dict[str, Any]:
        return {"metrics": dict(self.metrics), "releases": self.releases}


class WaveStatus(enum.StrEnum):
    """Where one region wave stands."""

    PENDING = "pending"  # not started
    BLACKOUT = "blackout"  # due, but a blackout window covers its regions
    GATED = "waiting-approval"  # due, waiting for a person (gate: untilApproved)
    RUNNING = "running"  # its regions walk the canary's steps
    BAKING = "baking"  # steps done, its regions keep the canary for the bake time
    PROMOTED = "promoted"  # its regions serve the canary fully
    HELD = "held"  # it failed and onFailure: hold sent its regions back to stable; resume retries it
    ROLLED_BACK = "rolled-back"  # a failure rolled it back with every other wave


class WaveProgress(_Part):
    """One wave's state and the evidence it gathered (what a later wave's carry-forward reads)."""

    name: str
    regions: list[str]
    status: WaveStatus = WaveStatus.PENDING
    batch: int = 0  # which group of ``parallelism`` regions is changing
    started_at: float | None = None
    baking_since: float | None = None
    finished_at: float | None = None
    start_weight: float | None = None  # the weight it started at (above 0 when carried forward)
    bake: float | None = None  # the bake it was given (shorter when carried forward)
    carried: str | None = None  # why it started higher or baked shorter, or why it did not
    canary_requests: int = 0
    canary_errors: int = 0
    baseline_requests: int = 0
    verdicts: dict[str, int] = Field(default_factory=dict)  # judge action -> decisions recorded in this wave
    metrics_errors: int = 0
    forced: bool = False  # a person promoted past a judged stage: its evidence is incomplete
    failure: str | None = None


class Waves(_Part):
    """Region waves: which wave is current and whether its current group of regions has started."""

    current: int = 0
    started: bool = False
    blackout_until: float | None = None  # the blackout end already announced (one event per blackout)
    waves: list[WaveProgress] = Field(default_factory=list)

    @property
    def wave(self) -> WaveProgress | None:
        return self.waves[self.current] if self.current < len(self.waves) else None

    def but_wave(self, **changes: Any) -> Waves:
        """A copy with the current wave changed."""
        return self.but_wave_at(self.current, **changes)

    def but_wave_at(self, index: int, **changes: Any) -> Waves:
        waves = list(self.waves)
        waves[index] = waves[index].model_copy(update=changes)
        return self.model_copy(update={"waves": waves})


_LEGACY_PROMOTE = ("forced_step", "forced_by")


class Carry(_Part):
    promotion: Promotion | None = None
    approval: Approval | None = None
    hold: Hold | None = None
    cap_base: float | None = None  # a resumed stage's cap counts from here, not from the stage's start
    history: BaselineRead | None = None
    priors: PriorsRead | None = None
    metrics_error: MetricsFailure | None = None
    route_error: RouteFailure | None = None  # the data plane refused the desired route (e.g. an Envoy NACK)
    stopped: list[str] = Field(default_factory=list)  # versions whose processes the engine stopped
    retired: bool = False  # nothing left to stop: runners need not wake for the ended rollout
    judges: dict[str, Any] = Field(default_factory=dict)  # ``Verdict.evidence["carry"]``, opaque here
    waves: Waves | None = None  # region waves (strategy regionWaves)

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        return legacy_carry(data) if isinstance(data, dict) else data

    def promoted_at(self, step: int | None) -> bool:
        """Whether a person's promote waits at ``step`` (None: blue/green's cutover or post-promotion)."""
        return self.promotion is not None and self.promotion.step == step

    def but(self, **changes: Any) -> Carry:
        """A copy with ``changes``; the judges' state is shared, not copied (judges memoise on it)."""
        return self.model_copy(update=changes)

    def for_judges(self) -> dict[str, Any]:
        """What a judge's ``StageContext.carry`` holds: its own state, the baseline history, the priors."""
        handed = dict(self.judges)
        if self.history is not None:
            handed["history"] = self.history.for_judges()
        if self.priors is not None:
            handed["priors"] = self.priors.for_judges()
        return handed

    def with_judges(self, handed: Any) -> Carry:
        """The judges' state after a stage, merged with what the verdict handed on (if anything)."""
        return self.but(judges={**self.judges, **handed}) if isinstance(handed, dict) else self


def legacy_carry(data: dict[str, Any]) -> dict[str, Any]:
    """A stored carry dict of either shape as the typed shape's fields (the new shape passes unchanged)."""
    fields = set(Carry.model_fields)
    carry = {k: v for k, v in data.items() if k in fields and k != "judges"}
    judges = dict(data.get("judges") or {})
    judges.update({k: v for k, v in data.items() if k not in fields and k not in _LEGACY_PROMOTE})
    carry["judges"] = judges
    if "forced_step" in data:
        by = data["forced_by"] if isinstance(data.get("forced_by"), dict) else {}
        step = data["forced_step"]
        carry["promotion"] = {"actor": by.get("actor", "unknown"), "reason": by.get("reason", ""),
                              "step": None if step == -1 else step}
    return carry
