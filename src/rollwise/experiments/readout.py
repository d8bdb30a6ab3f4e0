"""The readout: from per-variant sufficient statistics to estimates, lifts, intervals and a decision.

Pure: it takes what the store aggregated (subjects per variant, ``Moments`` per metric and variant)
and returns numbers and the rule's verdict; the same function serves the CLI, the API, the report
and the benchmark.

The decision rule, stated in every readout (``Readout.rule``):

1. **SRM first.** If the sequential sample-ratio check's e-value reached 1/α, the readout *halts*: no
   estimate is trusted until a person finds why the split is off.
2. **Guardrails.** A guardrail is *breached* by a variant when its confidence sequence for relative
   lift lies entirely beyond the tolerated regression (``maxRegression``) on the bad side; that stops
   the experiment (and the service turns the flag off through the kill switch).
3. **Ship.** A variant wins when the primary metric's confidence sequence for relative lift excludes 0
   on the good side. Each of the k − 1 comparisons with control gets α / (k − 1) (Bonferroni), so the
   chance of any false claim, at any look, stays ≤ α.

The fixed-horizon (Welch t) interval is reported beside it for teams that pre-registered a sample size;
it is valid only when read once, at that size (``horizon_reached``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from rollwise.experiments import cuped, sequential, srm
from rollwise.experiments.model import Experiment, Guardrail, Metric
from rollwise.experiments.stats import (
    Estimate,
    Moments,
    compare,
    comparison_alpha,
    mean_estimate,
    ratio_estimate,
    t_halfwidth,
    welch_dof,
)

RULE = ("halt while the sample-ratio e-value ≥ 1/α; stop when a guardrail's relative-lift confidence sequence "
        "lies beyond its tolerated regression; ship a variant when the primary metric's relative-lift confidence "
        "sequence (α/(k−1) each, Bonferroni) excludes 0 on the good side")


@dataclass(frozen=True)
class VariantResult:
    variant: str
    subjects: int
    value: float
    absolute: float
    relative: float
    cs_low: float
    cs_high: float
    fixed_low: float
    fixed_high: float
    significant: bool
    better: bool | None
    """True/False: the sequence excludes 0 on the good/bad side; None: not decided."""
    breach: bool = False


@dataclass(frozen=True)
class MetricResult:
    name: str
    role: str
    kind: str
    cuped: bool
    control: str
    control_value: float | None
    comparisons: list[VariantResult]
    note: str | None = None


@dataclass(frozen=True)
class SrmResult:
    status: str  # "ok" | "mismatch"
    e_value: float
    threshold: float
    expected: dict[str, float]
    observed: dict[str, int]


@dataclass(frozen=True)
class Readout:
    experiment: str
    status: str
    alpha: float
    comparison_alpha: float
    counts: dict[str, int]
    srm: SrmResult
    metrics: list[MetricResult]
    decision: str
    """"halt", "stop", "ship", or "continue"."""
    reason: str
    winner: str | None
    horizon: int | None
    horizon_reached: bool
    rule: str = RULE
    breaches: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return _finite(asdict(self))


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def srm_result(experiment: Experiment, counts: dict[str, int]) -> SrmResult:
    shares = experiment.spec.shares
    observed = [counts.get(v, 0) for v in experiment.spec.variants]
    log_e = float(srm.log_e_value(observed, list(shares.values()))) if sum(observed) else 0.0
    threshold = 1 / experiment.spec.alpha
    e_value = math.exp(min(log_e, 700.0))
    return SrmResult("mismatch" if e_value >= threshold else "ok", e_value, threshold, shares,
                     dict(zip(experiment.spec.variants, observed, strict=True)))


def _estimates(metric: Metric, control: Moments, treated: Moments) -> tuple[Estimate, Estimate, bool]:
    """(control, treated) estimates, and whether CUPED adjusted them."""
    if metric.kind == "ratio":
        return ratio_estimate(control), ratio_estimate(treated), False
    if metric.cuped and control.x_var > 0 and treated.x_var > 0:
        adjusted = cuped.adjusted_estimates([control, treated])
        return adjusted[0], adjusted[1], True
    return mean_estimate(control), mean_estimate(treated), False


def metric_result(experiment: Experiment, metric: Metric, role: str, moments: dict[str, Moments]) -> MetricResult:
    spec = experiment.spec
    base = moments.get(spec.baseline)
    alpha = comparison_alpha(spec.alpha, len(spec.variants))
    tuning = 2.0 * spec.horizon if spec.horizon else sequential.DEFAULT_TUNING_N
    if base is None or base.n < 2:
        return MetricResult(metric.name, role, metric.kind, False, spec.baseline, None, [], "not enough data")
    results, adjusted_any = [], False
    for variant in spec.variants:
        arm = moments.get(variant)
        if variant == spec.baseline or arm is None or arm.n < 2:
            continue
        if metric.kind == "ratio" and (base.x_sum <= 0 or arm.x_sum <= 0):
            continue  # no denominator yet (no sessions): the ratio is undefined, not zero
        control, treated, adjusted = _estimates(metric, base, arm)
        if not control.value:
            continue
        adjusted_any |= adjusted
        c = compare(treated, control)
        low, high = (float(b) for b in sequential.relative_cs(c, alpha, tuning))
        half = float(t_halfwidth(c.relative_variance, alpha, welch_dof(treated, control)))
        significant = low > 0 or high < 0
        better = None if not significant else (low > 0) == metric.higherIsBetter
        breach = False
        if isinstance(metric, Guardrail):
            breach = high < -metric.maxRegression if metric.higherIsBetter else low > metric.maxRegression
        results.append(VariantResult(variant, int(arm.n), float(treated.value), float(c.absolute), float(c.relative),
                                     low, high, float(c.relative) - half, float(c.relative) + half, significant,
                                     better, breach))
    note = None if results else "not enough data"
    if metric.kind != "ratio":
        control_value: float | None = float(base.y_mean)
    else:
        control_value = float(base.y_sum / base.x_sum) if base.x_sum > 0 else None
    return MetricResult(metric.name, role, metric.kind, adjusted_any, spec.baseline, control_value, results, note)


def readout(experiment: Experiment, counts: dict[str, int], moments: dict[str, dict[str, Moments]]) -> Readout:
    """The readout of ``experiment`` from its subjects per variant and each metric's per-variant moments."""
    spec = experiment.spec
    roles = [(spec.primary, "primary")] + [(m, "secondary") for m in spec.secondary] + \
        [(m, "guardrail") for m in spec.guardrails]
    metrics = [metric_result(experiment, m, role, moments.get(m.name, {})) for m, role in roles]
    check = srm_result(experiment, counts)
    reached = bool(spec.horizon) and all(counts.get(v, 0) >= (spec.horizon or 0) for v in spec.variants)
    breaches = [{"metric": m.name, "variant": r.variant, "relative": r.relative, "cs_low": r.cs_low,
                 "cs_high": r.cs_high, "maxRegression": _tolerance(spec.guardrails, m.name)}
                for m in metrics if m.role == "guardrail" for r in m.comparisons if r.breach]
    winners = [r for r in metrics[0].comparisons if r.better]
    if check.status == "mismatch":
        decision, reason, winner = "halt", (f"sample-ratio mismatch: e-value {check.e_value:.3g} ≥ "
                                            f"{check.threshold:.3g}, observed {check.observed}"), None
    elif breaches:
        first = breaches[0]
        decision, reason, winner = "stop", (f"guardrail {first['metric']} breached by {first['variant']}: relative "
                                            f"lift CS [{first['cs_low']:+.2%}, {first['cs_high']:+.2%}] beyond "
                                            f"±{first['maxRegression']:.1%}"), None
    elif winners:
        best = max(winners, key=lambda r: r.relative if spec.primary.higherIsBetter else -r.relative)
        decision, reason, winner = "ship", (f"{spec.primary.name}: {best.variant} {best.relative:+.2%}, CS "
                                            f"[{best.cs_low:+.2%}, {best.cs_high:+.2%}] excludes 0"), best.variant
    else:
        decision, reason, winner = "continue", f"{spec.primary.name}: no confidence sequence excludes 0 yet", None
    return Readout(spec.name, experiment.status, spec.alpha, comparison_alpha(spec.alpha, len(spec.variants)),
                   {v: counts.get(v, 0) for v in spec.variants}, check, metrics, decision, reason, winner,
                   spec.horizon, reached, RULE, breaches)


def _tolerance(guardrails: list[Guardrail], name: str) -> float:
    return next(g.maxRegression for g in guardrails if g.name == name)


CSV_COLUMNS = ("metric", "role", "variant", "subjects", "control", "control_value", "value", "absolute", "relative",
               "cs_low", "cs_high", "fixed_low", "fixed_high", "significant", "better", "breach")


def csv_rows(result: Readout) -> list[dict[str, Any]]:
    """One row per metric and variant compared with control."""
    return [{"metric": m.name, "role": m.role, "variant": r.variant, "subjects": r.subjects, "control": m.control,
             "control_value": m.control_value, "value": r.value, "absolute": r.absolute, "relative": r.relative,
             "cs_low": r.cs_low, "cs_high": r.cs_high, "fixed_low": r.fixed_low, "fixed_high": r.fixed_high,
             "significant": r.significant, "better": r.better, "breach": r.breach}
            for m in result.metrics for r in m.comparisons]
