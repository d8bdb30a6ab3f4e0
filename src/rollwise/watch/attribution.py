"""Which change is behind an anomaly, with the evidence, or "no change".

Pure: the caller gives the anomalous metric's recent points, the alarm time, the candidate changes and
(when traffic is split) what each version saw since onset.

1. **Onset** by a single change point over the points up to the alarm: the split minimising the
   squared error (Gaussian likelihood) of either a mean shift or a hinge (flat, then a linear drift:
   a leak or a ramp, whose onset is where it starts). Its interval is the set of splits whose
   likelihood-ratio statistic is within the 95 % chi-square(1) quantile of the best (profile
   likelihood). Hand-written rather than ``ruptures``: one change point on a few hundred points needs
   nothing more, the hinge model is not one of its costs, and the interval needs the profile, which
   ``ruptures`` does not expose (bench/watch_attribution.py measures the result).
2. **Effect size**: mean after minus mean before onset, with a Welch 95 % interval.
3. **Candidates**: each change that could have caused it scores ``proximity x scope x specificity``:
   proximity ``exp(-lag / tau)`` for a change up to ``horizon`` before the onset interval (one that came
   after the anomaly began scores 0: it cannot have caused it); scope 1 for the service itself (or a flag
   the policy names), ``dependency_weight`` for a dependency, ``global_weight`` for a change to every
   service, 0 for another region; specificity, when traffic is split, from whether the bad events
   concentrate on the changed version (a two-proportion interval excluding 0) or not.
   Undos and rollbacks revert, so they are not candidates, and a change already reverted before the
   onset is not either.
4. **Confidence** of the best candidate: its score times its share of the two best scores, so two equally
   plausible changes halve it. Below ``min_score`` the answer is "no change".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from rollwise.watch.changes import ANY_SERVICE, Change

CHI2_1_95 = 3.841
Z95 = 1.96
REVERTING = ("undo", "rollback")


@dataclass(frozen=True)
class AttributionConfig:
    horizon_s: float = 6 * 3600.0  # changes older than this before the onset are not candidates
    tau_s: float = 1800.0  # proximity halves about every 0.7 tau of lag
    slack_s: float = 30.0  # a change this far after a candidate onset still counts (clock skew)
    dependency_weight: float = 0.6
    global_weight: float = 0.5
    neutral_specificity: float = 0.7  # no split to tell by
    unspecific: float = 0.1  # split says the new version is no worse than the rest
    min_score: float = 0.2
    drift_margin_s: float = 1800.0  # a drift's start is uncertain by tens of minutes: a change this close to
    drift_doubt: float = 0.6  # it may have come after the drift began, and its score is scaled by this


@dataclass(frozen=True)
class Onset:
    at: float
    low: float
    high: float
    index: int
    before_mean: float
    after_mean: float
    effect: float
    effect_low: float
    effect_high: float
    shape: str = "step"  # step | drift (the better fit)
    drift_plausible: bool = False  # a drift fits about as well as the step (within the 95 % chi-square bound)
    posterior: tuple[tuple[float, float], ...] = ()  # (split time, probability): the profile likelihood, normalised

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "posterior"}

    def preceded_by(self, at: float, slack_s: float) -> float:
        """Probability that a change at ``at`` came before the onset (the shift starts at or after it)."""
        if not self.posterior:
            return 1.0 if at <= self.at + slack_s else 0.0
        return min(1.0, sum(p for t, p in self.posterior if t + slack_s >= at))


@dataclass(frozen=True)
class Candidate:
    change_id: str
    kind: str
    version: str | None
    lag_s: float
    proximity: float
    scope: float
    specificity: float
    score: float
    why: str


@dataclass(frozen=True)
class Attribution:
    culprit: Change | None
    confidence: float
    onset: Onset | None
    reason: str
    candidates: tuple[Candidate, ...] = ()
    split: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"culprit": self.culprit.to_json() if self.culprit else None, "confidence": self.confidence,
                "onset": self.onset.to_json() if self.onset else None, "reason": self.reason,
                "candidates": [asdict(c) for c in self.candidates], "split": self.split}


def estimate_onset(points: Sequence[tuple[float, float]]) -> Onset | None:
    """The most likely onset in ``points`` (time-ordered), with its profile interval and effect size.

    Two shapes are fitted at every split and the better one kept (both have three parameters, so the
    smaller squared error is the larger likelihood): a *step* (one mean before, another after) and a
    *hinge* (flat, then a linear drift from the split: a leak, a slow ramp), whose onset is where the
    drift starts rather than half-way up it.
    """
    n = len(points)
    if n < 6:
        return None
    times = [t for t, _ in points]
    values = [v for _, v in points]
    step, hinge = _step_costs(values), _hinge_costs(times, values)
    drifting = min(hinge.values()) < min(step.values())
    costs = hinge if drifting else step
    best = min(costs, key=lambda k: (costs[k], -k))
    sigma2 = max(costs[best] / max(1, n - 3), 1e-18)
    inside = [k for k, c in costs.items() if (c - costs[best]) / sigma2 <= CHI2_1_95]
    likelihood = {k: math.exp(-min(50.0, (c - costs[best]) / (2 * sigma2))) for k, c in costs.items()}
    norm = sum(likelihood.values())
    posterior = tuple((points[k][0], w / norm) for k, w in sorted(likelihood.items()) if w / norm > 1e-6)
    # A drift's effect is where it got to: the later half of what came after the onset.
    after_from = best + (n - best) // 2 if drifting and n - best >= 4 else best
    before, after = values[:best], values[after_from:]
    mean_b, mean_a = sum(before) / len(before), sum(after) / len(after)
    se = math.sqrt(_variance(before) / len(before) + _variance(after) / len(after))
    effect = mean_a - mean_b
    return Onset(at=points[best][0], low=points[min(inside)][0], high=points[max(inside)][0], index=best,
                 before_mean=mean_b, after_mean=mean_a, effect=effect, effect_low=effect - Z95 * se,
                 effect_high=effect + Z95 * se, shape="drift" if drifting else "step",
                 drift_plausible=min(hinge.values()) - min(step.values()) <= CHI2_1_95 * sigma2, posterior=posterior)


def _step_costs(values: Sequence[float]) -> dict[int, float]:
    """Squared error of a one-mean-shift model at every split ``k`` (shift between k-1 and k), O(n)."""
    n = len(values)
    prefix, prefix_sq = [0.0], [0.0]
    for v in values:
        prefix.append(prefix[-1] + v)
        prefix_sq.append(prefix_sq[-1] + v * v)

    def sse(i: int, j: int) -> float:
        s = prefix[j] - prefix[i]
        return max(0.0, prefix_sq[j] - prefix_sq[i] - s * s / (j - i))

    return {k: sse(0, k) + sse(k, n) for k in range(2, n - 1)}


def _hinge_costs(times: Sequence[float], values: Sequence[float]) -> dict[int, float]:
    """Squared error of ``a + b * max(0, t - t_k)`` at every split ``k`` (least squares in a and b)."""
    n = len(values)
    mean_y = sum(values) / n
    syy = sum((v - mean_y) ** 2 for v in values)
    costs: dict[int, float] = {}
    for k in range(2, n - 2):
        x = [max(0.0, t - times[k - 1]) for t in times]
        mean_x = sum(x) / n
        sxx = sum((xi - mean_x) ** 2 for xi in x)
        if sxx <= 0:
            continue
        sxy = sum((xi - mean_x) * (v - mean_y) for xi, v in zip(x, values, strict=True))
        costs[k] = max(0.0, syy - sxy * sxy / sxx)
    return costs or {2: syy}


def _variance(values: Sequence[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / (len(values) - 1)


def version_split(split: dict[str, tuple[float, float]], version: str | None) -> dict[str, Any] | None:
    """Bad-event rate of ``version`` against every other version since onset: difference and 95 % interval."""
    if not split or version is None or version not in split:
        return None
    bad_v, total_v = split[version]
    bad_o = sum(b for k, (b, _t) in split.items() if k != version)
    total_o = sum(t for k, (_b, t) in split.items() if k != version)
    if total_v <= 0 or total_o <= 0:
        return None
    p_v, p_o = bad_v / total_v, bad_o / total_o
    se = math.sqrt(p_v * (1 - p_v) / total_v + p_o * (1 - p_o) / total_o) or 1e-12
    diff = p_v - p_o
    return {"version": version, "rate": p_v, "others_rate": p_o, "difference": diff,
            "low": diff - Z95 * se, "high": diff + Z95 * se,
            "per_version": {k: {"bad": b, "total": t} for k, (b, t) in split.items()}}


def attribute(points: Sequence[tuple[float, float]], changes: Sequence[Change], *, service: str,
              depends_on: Sequence[str] = (), region: str | None = None, flags: Sequence[str] = (),
              split: dict[str, tuple[float, float]] | None = None,
              config: AttributionConfig | None = None) -> Attribution:
    """Rank ``changes`` as causes of the anomaly in ``points`` (ending at the alarm); "no change" allowed."""
    cfg = config or AttributionConfig()
    onset = estimate_onset(points)
    if onset is None:
        return Attribution(None, 0.0, None, "too few points to place the onset")
    live = _not_reverted(changes, onset.low)
    scored = [_score(c, onset, service, depends_on, region, flags, split or {}, cfg) for c in live]
    ranked = sorted((c for c in scored if c is not None), key=lambda c: -c.score)
    if not ranked or ranked[0].score < cfg.min_score:
        reason = _no_change_reason(changes, ranked, onset, cfg)
        return Attribution(None, 0.0, onset, reason, tuple(ranked[:5]))
    top, second = ranked[0], (ranked[1].score if len(ranked) > 1 else 0.0)
    confidence = top.score * top.score / (top.score + second)
    culprit = next(c for c in live if c.id == top.change_id)
    detail = version_split(split or {}, culprit.version) or {}
    return Attribution(culprit, round(confidence, 4), onset, top.why, tuple(ranked[:5]), detail)


def _not_reverted(changes: Sequence[Change], before: float) -> list[Change]:
    """Candidate changes: not reverting ones, not ones an undo/rollback reverted before ``before``, and of
    one release's steps (start, weights, promotion) only the last before ``before``: they are one change."""
    reverted_at: dict[tuple[str, str | None], float] = {}  # (service, version) -> its latest revert before ``before``
    for c in changes:
        if c.kind in REVERTING and c.at <= before:
            undone = (c.service, c.previous_version)
            reverted_at[undone] = max(c.at, reverted_at.get(undone, c.at))
    # A revert undoes what came before it: the same version released again later is a new change.
    kept = [c for c in changes if c.kind not in REVERTING
            and not ((c.service, c.version) in reverted_at and c.at <= reverted_at[(c.service, c.version)])]
    latest: dict[tuple[str, str | None, str | None], Change] = {}
    for change in sorted(kept, key=lambda c: c.at):
        key = (change.service, change.version, change.scope) if change.source == "rollwise" else ("", change.id, "")
        if key not in latest or change.at <= before:
            latest[key] = change
    return list(latest.values())


def _score(change: Change, onset: Onset, service: str, depends_on: Sequence[str], region: str | None,
           flags: Sequence[str], split: dict[str, tuple[float, float]], cfg: AttributionConfig) -> Candidate | None:
    lag = onset.at - change.at
    preceded = onset.preceded_by(change.at, cfg.slack_s)
    if preceded < 0.05 or lag > cfg.horizon_s:
        return None  # it came after the anomaly began (or too long before)
    proximity = math.exp(-max(0.0, lag) / cfg.tau_s) * preceded
    scope, where = _scope(change, service, depends_on, region, flags, cfg)
    if scope <= 0:
        return None
    detail = version_split(split, change.version)
    served = {v for v, (_bad, total) in split.items() if total > 0}
    if detail is None and change.source == "rollwise" and served and change.version not in served:
        specificity, how = cfg.unspecific, f"{change.version} served none of the anomalous traffic"
    elif detail is None:
        specificity, how = cfg.neutral_specificity, "no per-version split"
    elif detail["low"] > 0:
        specificity, how = 1.0, f"bad rate on {change.version} {detail['rate']:.4f} vs {detail['others_rate']:.4f}"
    else:
        specificity, how = cfg.unspecific, f"{change.version} no worse than the rest"
    if (onset.shape == "drift" or onset.drift_plausible) and abs(lag) < cfg.drift_margin_s:
        specificity *= cfg.drift_doubt
        how += f"; within {cfg.drift_margin_s / 60:.0f} min of a drift's uncertain start"
    score = proximity * scope * specificity
    why = f"{change.kind} {change.version or ''} {lag:.0f}s before onset; {where}; {how}".replace("  ", " ")
    return Candidate(change.id, change.kind, change.version, lag, round(proximity, 4), scope, specificity,
                     round(score, 4), why)


def _scope(change: Change, service: str, depends_on: Sequence[str], region: str | None, flags: Sequence[str],
           cfg: AttributionConfig) -> tuple[float, str]:
    if region is not None and change.region is not None and change.region != region:
        return 0.0, f"region {change.region} is not {region}"
    flag = change.scope[5:] if change.scope and change.scope.startswith("flag:") else None
    if flag is not None and flag in flags:
        return 1.0, f"flag {flag} is one the service reads"
    if change.service == service:
        return 1.0, f"same service {service}"
    if change.service in depends_on:
        return cfg.dependency_weight, f"{change.service} is a dependency of {service}"
    if change.service == ANY_SERVICE:
        return cfg.global_weight, "a change to every service"
    return 0.0, f"other service {change.service}"


def _no_change_reason(changes: Sequence[Change], ranked: Sequence[Candidate], onset: Onset,
                      cfg: AttributionConfig) -> str:
    earlier = [c for c in changes if c.at <= onset.at and c.kind not in REVERTING]
    if not earlier:
        return "the anomaly began before any change"
    if ranked:
        return f"no change is specific enough (best score {ranked[0].score:.2f} < {cfg.min_score})"
    return "no recent change overlaps the anomaly's scope or time"
