"""Priors from past releases: where the judge's mixture puts its weight, learned per service.

A metric with no ``minEffect`` is tested by a mixture e-process over rate ratios; flat, it pays for
not knowing the effect (today ~2x the Wald bound in bad requests). Past releases say what a
regression of this service usually looks like, so the mixture can put its weight there:

* each past regression (a metric that rolled its canary back, or whose ratio interval lay above 1)
  gives its log rate ratio, weighted by its information so that tests which stopped early on a
  lucky extreme do not drag the centre up (``_moments``);
* the service's own mean and spread are shrunk toward all services' (empirical Bayes with
  ``POOL_WEIGHT`` pseudo-releases): a service with two past regressions mostly follows everyone's,
  one with fifty follows its own;
* the spread never goes below ``MIN_SD`` (estimates stopped early are noisy and biased upward),
  and ``FLAT_SHARE`` of the old flat mixture is blended in, so a misleading history costs at most
  ``ln(1/FLAT_SHARE)`` nats of evidence.

The prior is fitted once, when a rollout begins, and kept with it: fixed before the first window,
the mixture stays an e-process and the false-rollback bound holds (``MixturePrior``). Pure.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from rollwise.analysis.attribution import MixturePrior
from rollwise.core.releases import PastEffect
from rollwise.spec.models import MetricSpec

#: Pseudo-releases of all services' regressions a service's own are shrunk toward.
POOL_WEIGHT = 5.0
#: Least spread of the learned normal, in log rate ratio (exp(0.35) = a factor 1.42 either way).
MIN_SD = 0.35
#: Share of the flat mixture kept in every learned prior (the cost of a wrong history is bounded).
FLAT_SHARE = 0.25
#: Metric kinds whose comparison is the absolute-rate attribution test a prior can shape.
LEARNABLE = ("errorRate", "latency", "custom")


Estimate = tuple[float, float]  # (log rate ratio, its sampling variance)


def regression_logs(effects: Iterable[PastEffect]) -> list[Estimate]:
    """Log rate ratios (with their sampling variances) of the past regressions among ``effects``."""
    return [e.log_ratio() for e in effects if e.regression and e.ratio > 1.0]


def _moments(values: Sequence[Estimate]) -> tuple[float, float]:
    """Mean and spread of the true effects behind stopped sequential estimates.

    The mean weights each estimate by its information (1 / sampling variance). A sequential test
    stops when its data look extreme, so an estimate taken at the stop is biased upward, most of
    all in a test that stopped early on little information; by Wald's identity (E[score at the
    stop] = effect x E[information at the stop]) the information-weighted mean is unbiased across
    releases of one effect where the plain mean is not (measured in ``bench/learning.py``: latency
    3x read as 4.8x plain, 3.7x weighted). The spread is DerSimonian and Laird's: the estimates'
    weighted scatter beyond what their sampling noise explains.
    """
    weights = [1.0 / max(noise, 1e-9) for _, noise in values]
    total = sum(weights)
    mean = sum(w * v for w, (v, _) in zip(weights, values, strict=True)) / total
    if len(values) < 2:
        return mean, 0.0
    scatter = sum(w * (v - mean) ** 2 for w, (v, _) in zip(weights, values, strict=True))
    scale = total - sum(w * w for w in weights) / total
    return mean, max((scatter - (len(values) - 1)) / scale, 0.0) if scale > 0 else 0.0


def fit_prior(own: Sequence[Estimate], pooled: Sequence[Estimate]) -> MixturePrior | None:
    """The mixture prior from one service's past regressions (log ratios) and all services'.

    None when nobody has a past regression: the flat mixture stays.
    """
    if not own and not pooled:
        return None
    if not pooled:
        pooled = own
    pooled_mean, pooled_var = _moments(pooled)
    if own:
        own_mean, own_var = _moments(own)
        n = float(len(own))
        mean = (n * own_mean + POOL_WEIGHT * pooled_mean) / (n + POOL_WEIGHT)
        var = (n * own_var + POOL_WEIGHT * pooled_var) / (n + POOL_WEIGHT)
    else:
        mean, var = pooled_mean, pooled_var
    source = "pooled" if not own else "service" if len(pooled) == len(own) else "service+pooled"
    return MixturePrior(mean=mean, sd=math.sqrt(var + MIN_SD**2), flat=FLAT_SHARE, source=source,
                        service_releases=len(own), pooled_releases=len(pooled))


def fit_priors(service: str, metrics: Sequence[MetricSpec], effects: Sequence[PastEffect]) -> dict[str, MixturePrior]:
    """Per metric of a spec that states no ``minEffect``, its prior from ``effects`` (all services').

    A service's own history is the same metric name and kind; everyone's is the same kind.
    """
    priors = {}
    for metric in metrics:
        if metric.type not in LEARNABLE or metric.minEffect is not None:
            continue
        kind = [e for e in effects if e.metric_type == metric.type]
        own = [e for e in kind if e.service == service and e.metric == metric.name]
        prior = fit_prior(regression_logs(own), regression_logs(kind))
        if prior is not None:
            priors[metric.name] = prior
    return priors
