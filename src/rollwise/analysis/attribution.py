"""The attribution test: is the canary responsible for more than its share of bad events?

Under "no change", a bad event (an error, a slow request, a conversion) comes from the canary with
probability equal to the canary's share of the trials in the same window. That conditional
Bernoulli needs no estimate of the baseline's rate and absorbs any traffic drift (bursts, diurnal
load, a baseline that gets worse too), so the only parameter is the rate ratio
``psi = canary rate / baseline rate``: in a window with canary share ``s``, a bad event is the
canary's with probability ``theta(psi) = psi*s / (psi*s + 1 - s)``.

All the statistics here are folds over windows of one sufficient state, ``AttributionState``:

* the log-likelihood of the attribution data at every ratio of a fixed grid (from which the
  mixture e-process, the maximum-likelihood ratio and an anytime-valid confidence sequence all
  follow), and
* two running log-likelihood ratios with predictable (data-before-this-window) parameters: the
  SPRT at the stated minimal effect, and the "accept" ratio that decides the no-regression side.

Each is a non-negative supermartingale under its null (the binomial family has a monotone
likelihood ratio, so a ratio ``LR(psi1 vs psi0)`` with ``psi1 > psi0`` is a supermartingale under
every ``psi <= psi0``), so by Ville's inequality crossing ``1/alpha`` at *any* look has
probability at most ``alpha``. Carrying the state into the next stage or run keeps that true:
e-values multiply across stages and runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

from rollwise.core.evidence import MetricParams

FloatArray = NDArray[np.float64]

#: Rate ratios for rates (errors, slow requests): 1/1000 .. 1000, ~12 % apart, exactly 1 in the middle.
RATE_GRID: FloatArray = np.exp(np.linspace(math.log(1e-3), math.log(1e3), 121))
#: Ratios for business KPIs, whose effects are a few percent: 0.5 .. 2, ~1.2 % apart.
KPI_GRID: FloatArray = np.exp(np.linspace(math.log(0.5), math.log(2.0), 121))

#: How far the alternative of the mixture e-process reaches beyond the null ratio.
MIXTURE_REACH = 100.0
#: Miss probability the no-regression ("accept") side is decided at.
DEFAULT_BETA = 0.05


@dataclass(frozen=True)
class MixturePrior:
    """Where the mixture e-process puts its weight over rate ratios, fixed before the rollout.

    Without one the mixture is flat in log ratio from the null up to ``MIXTURE_REACH`` times it.
    A prior learned from past releases (``rollwise.learning.priors``) is a normal on the log ratio,
    ``N(mean, sd)``, blended with that flat mixture at ``flat`` share: the blend keeps the e-value
    within ``ln(1/flat)`` nats of the flat one whatever the true effect, so a misleading history
    costs little, while a right one concentrates the weight where regressions are. Any weights
    fixed in advance keep the mixture an e-process, so the false-rollback bound is untouched.
    """

    mean: float  # log rate ratio
    sd: float
    flat: float
    source: str = "none"  # "service", "pooled" or "service+pooled": whose releases it was fitted on
    service_releases: int = 0
    pooled_releases: int = 0

    @property
    def centre(self) -> float:
        """The rate ratio the learned part expects."""
        return math.exp(self.mean)

    def weights(self, log_ratios: FloatArray) -> FloatArray:
        """Normalised mixture weights over ``log_ratios`` (the grid points above the null)."""
        density = np.exp(-0.5 * ((log_ratios - self.mean) / self.sd) ** 2)
        total = float(density.sum())
        flat = np.full(log_ratios.size, 1.0 / log_ratios.size)
        if total <= 0.0 or not math.isfinite(total):
            return flat
        return self.flat * flat + (1.0 - self.flat) * density / total

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "sd": self.sd, "flat": self.flat, "source": self.source,
                "service_releases": self.service_releases, "pooled_releases": self.pooled_releases}

    @classmethod
    def from_dict(cls, data: Any) -> MixturePrior | None:
        if not isinstance(data, dict) or not all(k in data for k in ("mean", "sd", "flat")):
            return None
        return cls(float(data["mean"]), max(float(data["sd"]), 1e-3), min(max(float(data["flat"]), 0.0), 1.0),
                   str(data.get("source", "none")), int(data.get("service_releases", 0)),
                   int(data.get("pooled_releases", 0)))


def canary_probability(ratio: float | FloatArray, share: float) -> Any:
    """P(a bad event is the canary's) when the canary has ``share`` of the trials."""
    return ratio * share / (ratio * share + (1.0 - share))


def _binomial_loglik(canary_bad: float, baseline_bad: float, theta: Any) -> Any:
    return canary_bad * np.log(theta) + baseline_bad * np.log1p(-theta)


@dataclass(frozen=True)
class WindowCounts:
    """One window of the attribution data: trials and bad events per version."""

    canary_trials: float
    baseline_trials: float
    canary_bad: float
    baseline_bad: float

    @property
    def share(self) -> float:
        return self.canary_trials / (self.canary_trials + self.baseline_trials)

    @property
    def informative(self) -> bool:
        return (
            self.canary_trials > 0 and self.baseline_trials > 0 and (self.canary_bad + self.baseline_bad) > 0
        )


@dataclass
class AttributionState:
    """The sufficient state of one metric's attribution test (JSON-able via ``to_dict``)."""

    grid_size: int
    canary_trials: float = 0.0
    baseline_trials: float = 0.0
    canary_bad: float = 0.0
    baseline_bad: float = 0.0
    loglik: FloatArray = field(default_factory=lambda: np.zeros(0))
    null_loglik: float = 0.0
    sprt_llr: float = 0.0
    accept_llr: float = 0.0
    windows: int = 0
    prior_trials: float = 0.0  # baseline trials and bad events known before the first window
    prior_bad: float = 0.0

    def __post_init__(self) -> None:
        if self.loglik.size == 0:
            self.loglik = np.zeros(self.grid_size)

    def copy(self) -> AttributionState:
        return AttributionState(
            self.grid_size, self.canary_trials, self.baseline_trials, self.canary_bad, self.baseline_bad,
            self.loglik.copy(), self.null_loglik, self.sprt_llr, self.accept_llr, self.windows,
            self.prior_trials, self.prior_bad,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "canary_trials": self.canary_trials,
            "baseline_trials": self.baseline_trials,
            "canary_bad": self.canary_bad,
            "baseline_bad": self.baseline_bad,
            "loglik": np.round(self.loglik, 9).tolist(),
            "null_loglik": self.null_loglik,
            "sprt_llr": self.sprt_llr,
            "accept_llr": self.accept_llr,
            "windows": self.windows,
            "prior_trials": self.prior_trials,
            "prior_bad": self.prior_bad,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, grid_size: int) -> AttributionState:
        if not data or len(data.get("loglik", [])) != grid_size:
            return cls(grid_size)
        return cls(
            grid_size,
            float(data["canary_trials"]), float(data["baseline_trials"]),
            float(data["canary_bad"]), float(data["baseline_bad"]),
            np.asarray(data["loglik"], dtype=float), float(data["null_loglik"]),
            float(data["sprt_llr"]), float(data["accept_llr"]), int(data.get("windows", 0)),
            float(data.get("prior_trials", 0.0)), float(data.get("prior_bad", 0.0)),
        )

    def with_prior(self, trials: float, bad: float, cap: float) -> AttributionState:
        """This state with the baseline's earlier record as a prior, weighed as at most ``cap`` trials.

        The cap keeps an old rate from outweighing what the baseline does now for long.
        """
        if trials <= 0:
            return self
        scale = min(1.0, cap / trials)
        new = self.copy()
        new.prior_trials, new.prior_bad = trials * scale, bad * scale
        return new


@dataclass(frozen=True)
class TestOutcome:
    """What one attribution test says now, with the numbers that say it."""

    rejected: bool  # regression decided
    accepted: bool  # no-regression side decided
    e_value: float
    threshold: float
    accept_llr: float
    accept_threshold: float
    ratio: float  # maximum-likelihood rate ratio
    ratio_interval: tuple[float, float]
    baseline_rate: float
    null_ratio: float
    alternative_ratio: float | None
    concern_ratio: float


@dataclass(frozen=True)
class SequentialErrorTest:
    """One-sided sequential test of "the canary's rate is no worse than the baseline's + tolerance".

    With ``min_effect`` it is Wald's SPRT at that effect (fastest when the effect is right); without
    it a mixture e-process over every ratio up to ``MIXTURE_REACH`` times the null (valid whatever
    the effect). ``tolerance``, ``min_effect`` and ``concern`` are absolute rate increases
    (``0.001`` = +0.1 percentage point), or relative changes when ``relative`` is set (KPIs).
    ``concern`` is the effect whose absence decides the no-regression side; when the tolerance is
    absolute, the ratio it stands for is computed from the baseline rate seen *before* each window,
    so the parameters stay predictable.
    """

    alpha: float
    tolerance: float = 0.0
    min_effect: float | None = None
    concern: float = 0.01
    relative: bool = False
    lower_is_worse: bool = False
    beta: float = DEFAULT_BETA
    grid: FloatArray = field(default_factory=lambda: RATE_GRID, repr=False, compare=False)
    prior: MixturePrior | None = None  # the mixture's weights over ratios; None: flat (see MixturePrior)

    @property
    def name(self) -> str:
        return "attribution-sprt" if self.min_effect is not None else "attribution-mixture"

    @property
    def sign(self) -> float:
        return -1.0 if self.lower_is_worse else 1.0

    def params(self) -> MetricParams:
        return MetricParams(
            alpha=self.alpha,
            beta=self.beta,
            delta=self.tolerance,
            minEffect=self.min_effect,
            concern=self.concern,
            relative=self.relative,
            lowerIsWorse=self.lower_is_worse,
            grid=[float(self.grid[0]), float(self.grid[-1]), len(self.grid)],
            mixtureReach=MIXTURE_REACH,
        )

    # -------------------------------------------------------------- parameters

    @staticmethod
    def baseline_rate(state: AttributionState) -> float:
        """The baseline's rate so far (with its prior), shrunk towards 1 % by half an event so it is never 0."""
        bad = state.baseline_bad + state.prior_bad
        return (bad + 0.5) / (state.baseline_trials + state.prior_trials + 50.0)

    def ratio_for(self, effect: float, baseline_rate: float) -> float:
        """The rate ratio that an increase (or, for KPIs, a drop) of ``effect`` stands for."""
        scale = 1.0 if self.relative else max(baseline_rate, 1e-12)
        ratio = 1.0 + self.sign * effect / scale
        return min(max(ratio, float(self.grid[0])), float(self.grid[-1]))

    # -------------------------------------------------------------- the fold

    def update(self, state: AttributionState, counts: WindowCounts) -> AttributionState:
        """``state`` after one more window (``state`` is not modified)."""
        new = state.copy()
        new.canary_trials += counts.canary_trials
        new.baseline_trials += counts.baseline_trials
        new.canary_bad += counts.canary_bad
        new.baseline_bad += counts.baseline_bad
        rate = self.baseline_rate(state)  # predictable: data before this window only
        if not counts.informative:
            if counts.canary_trials > 0 and not self.relative:  # no bad event is evidence too
                new.accept_llr = state.accept_llr + self._accept_step(counts, rate, 0.0, 0.0)
            return new
        new.windows += 1
        share = counts.share
        c, b = counts.canary_bad, counts.baseline_bad
        new.loglik = state.loglik + _binomial_loglik(c, b, canary_probability(self.grid, share))
        theta0 = canary_probability(self.ratio_for(self.tolerance, rate), share)
        null = float(_binomial_loglik(c, b, theta0))
        new.null_loglik = state.null_loglik + null
        new.accept_llr = state.accept_llr + self._accept_step(counts, rate, share, null)
        if self.min_effect is not None:
            theta1 = canary_probability(self.ratio_for(self.tolerance + self.min_effect, rate), share)
            new.sprt_llr = state.sprt_llr + float(_binomial_loglik(c, b, theta1)) - null
        return new

    def _accept_step(self, counts: WindowCounts, rate: float, share: float, null: float) -> float:
        """One window's log-ratio for "no regression" against a regression of ``concern``.

        For absolute rates this is the canary's own binomial likelihood at the baseline's rate
        (+ tolerance) against that rate + concern: with a baseline 19 times larger than the canary
        its rate is known well, and the canary-only ratio gathers evidence ~35 % faster than the
        attribution ratio. The plug-in only touches the miss probability ``beta``, never alpha.
        For relative (KPI) tests the attribution ratio is used, whose null needs no baseline rate.
        """
        c = counts.canary_bad
        if self.relative:
            theta_a = canary_probability(self.ratio_for(self.tolerance + self.concern, rate), share)
            return null - float(_binomial_loglik(c, counts.baseline_bad, theta_a))
        p0 = min(rate + self.tolerance, 1.0 - 1e-9)
        pa = min(p0 + self.concern, 1.0 - 1e-9)
        good = max(counts.canary_trials - c, 0.0)
        return c * math.log(p0 / pa) + good * math.log((1.0 - p0) / (1.0 - pa))

    # -------------------------------------------------------------- decisions

    def e_value(self, state: AttributionState) -> float:
        """Evidence against "no regression beyond the tolerance" (an e-process: E[.] <= 1 under it)."""
        if self.min_effect is not None:
            return math.exp(min(state.sprt_llr, 700.0))
        null = self.ratio_for(self.tolerance, self.baseline_rate(state))
        log_grid = np.log(self.grid)
        if self.lower_is_worse:
            mask = (log_grid < math.log(null) - 1e-12) & (log_grid >= math.log(null / MIXTURE_REACH))
        else:
            mask = (log_grid > math.log(null) + 1e-12) & (log_grid <= math.log(null * MIXTURE_REACH))
        if not mask.any():
            return 1.0
        terms = state.loglik[mask] - state.null_loglik
        top = float(terms.max())
        if self.prior is None or self.relative:
            return math.exp(min(700.0, top + math.log(float(np.exp(terms - top).mean()))))
        weights = self.prior.weights(log_grid[mask])
        return math.exp(min(700.0, top + math.log(max(float((weights * np.exp(terms - top)).sum()), 1e-300))))

    def confidence_interval(self, state: AttributionState, alpha: float) -> tuple[float, float]:
        """Anytime-valid interval for the rate ratio, by inverting the one-sided mixture e-processes.

        The lower end is the smallest grid ratio that the upward mixture (the rollback test's own
        construction) cannot reject at ``alpha``, the upper end the largest one the downward mixture
        cannot reject; so whenever the mixture test rolls back, the interval excludes the null.
        """
        loglik = state.loglik
        size = loglik.size
        steps = round(math.log(MIXTURE_REACH) / (math.log(self.grid[1]) - math.log(self.grid[0])))
        bar = math.log(1.0 / alpha)
        # Row k of each view holds the log-likelihoods of the ratios within ``steps`` grid points
        # above (below) ratio k, padded with -inf: O(grid x reach) work, not O(grid^2).
        pad = np.full(steps, -np.inf)
        above = sliding_window_view(np.concatenate((loglik, pad)), steps)[1:size + 1]
        below = sliding_window_view(np.concatenate((pad, loglik)), steps)[:size]
        counts = np.minimum(steps, np.arange(size)[::-1]), np.minimum(steps, np.arange(size))

        def log_mean(rows: FloatArray, count: NDArray[np.int_]) -> FloatArray:
            top = rows.max(axis=1)
            safe = np.where(np.isfinite(top), top, 0.0)
            with np.errstate(divide="ignore"):
                total = np.log(np.exp(rows - safe[:, None]).sum(axis=1))
                return np.where(count > 0, safe + total - np.log(np.maximum(count, 1)) - loglik, -np.inf)

        up = log_mean(above, counts[0])
        down = log_mean(below, counts[1])
        low_ok = np.nonzero(up < bar)[0]
        high_ok = np.nonzero(down < bar)[0]
        low = float(self.grid[low_ok[0]]) if low_ok.size else float(self.grid[-1])
        high = float(self.grid[high_ok[-1]]) if high_ok.size else float(self.grid[0])
        return low, max(low, high)

    def outcome(self, state: AttributionState) -> TestOutcome:
        rate = self.baseline_rate(state)
        e_value = self.e_value(state)
        threshold = 1.0 / self.alpha
        accept_threshold = math.log(1.0 / self.beta)
        return TestOutcome(
            rejected=e_value >= threshold,
            accepted=state.accept_llr >= accept_threshold,
            e_value=e_value,
            threshold=threshold,
            accept_llr=state.accept_llr,
            accept_threshold=accept_threshold,
            ratio=float(self.grid[int(np.argmax(state.loglik))]) if state.windows else 1.0,
            ratio_interval=self.confidence_interval(state, self.alpha),
            baseline_rate=rate,
            null_ratio=self.ratio_for(self.tolerance, rate),
            alternative_ratio=(
                self.ratio_for(self.tolerance + self.min_effect, rate) if self.min_effect is not None else None
            ),
            concern_ratio=self.ratio_for(self.tolerance + self.concern, rate),
        )


def fold(test: SequentialErrorTest, state: AttributionState, windows: list[WindowCounts]) -> AttributionState:
    """Fold a run of windows into ``state``: the offline recomputation path."""
    for counts in windows:
        state = test.update(state, counts)
    return state
