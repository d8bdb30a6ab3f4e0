"""Experiment statistics: agreement with GrowthBook's gbstats and Spotify's confidence, validity under
peeking, CUPED, sequential SRM, power, and (with PostgreSQL) ingestion and readout speed.

Every simulation is vectorised with numpy over the experiments: each "look" is one call of the same
functions the readout uses (``rollwise.experiments``), on arrays of sufficient statistics.

    python bench/experiments.py --output bench/results/experiments.md
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rollwise.experiments import cuped, sequential, srm
from rollwise.experiments.stats import (
    Moments,
    compare,
    mean_estimate,
    ratio_estimate,
    t_halfwidth,
    welch_dof,
    z_halfwidth,
)

ALPHA = 0.05
Lines = list[str]


def _agree(ours: tuple[float, float], theirs: tuple[float, float]) -> float:
    """Largest gap between the two intervals' bounds, as a share of the peer's half-width."""
    half = (theirs[1] - theirs[0]) / 2
    return max(abs(ours[0] - theirs[0]), abs(ours[1] - theirs[1])) / half


# ---------------------------------------------------------------- 1. agreement with gbstats and confidence


def _datasets(rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    n = 40_000
    return {
        "conversion 5 % vs 5.3 %": (rng.binomial(1, 0.05, n).astype(float), rng.binomial(1, 0.053, n).astype(float)),
        "revenue (lognormal, +3 %)": (rng.lognormal(2.0, 1.0, n), rng.lognormal(2.0 + math.log(1.03), 1.0, n)),
        "count (Poisson 3 vs 3.05)": (rng.poisson(3.0, n).astype(float), rng.poisson(3.05, n).astype(float)),
    }


def _gb_stat(y: np.ndarray, proportion: bool) -> Any:
    from gbstats.models.statistics import ProportionStatistic, SampleMeanStatistic

    if proportion:
        return ProportionStatistic(n=len(y), sum=float(y.sum()))
    return SampleMeanStatistic(n=len(y), sum=float(y.sum()), sum_squares=float((y * y).sum()))


def _gb_interval(control: Any, treatment: Any, relative: bool, sequential_mode: bool = False) -> tuple[float, float]:
    from gbstats.frequentist.tests import FrequentistConfig, SequentialConfig, SequentialTwoSidedTTest, TwoSidedTTest

    kind = "relative" if relative else "absolute"
    if sequential_mode:
        test: Any = SequentialTwoSidedTTest(control, treatment, SequentialConfig(alpha=ALPHA, difference_type=kind))
    else:
        test = TwoSidedTTest(control, treatment, FrequentistConfig(alpha=ALPHA, difference_type=kind))
    low, high = test.compute_result().ci
    return float(low), float(high)


def _spotify_interval(yc: np.ndarray, yt: np.ndarray, method: str, relative: bool) -> tuple[float, float]:
    import pandas as pd
    import spotify_confidence as sc

    frame = pd.DataFrame({"variant": ["c", "t"], "sum": [yc.sum(), yt.sum()],
                          "ss": [(yc * yc).sum(), (yt * yt).sum()], "n": [len(yc), len(yt)]})
    cls = sc.ZTest if method == "z" else sc.StudentsTTest
    row = cls(frame, "sum", "ss", "n", "variant").difference("c", "t", absolute=not relative).iloc[0]
    return float(row["ci_lower"]), float(row["ci_upper"])


def agreement(rng: np.random.Generator) -> Lines:
    out = ["## 1. Fixed-horizon estimates and intervals against gbstats and Spotify confidence", "",
           "Same simulated data (40,000 subjects per arm) into each engine. *Gap* = the largest difference between "
           "the two intervals' bounds, as a share of the peer's half-width (≤ 1 % is the target).", "",
           "| data | quantity | peer | peer interval | rollwise interval | gap |", "|---|---|---|---|---|---|"]
    worst: dict[str, float] = {}

    def row(data: str, what: str, peer: str, theirs: tuple[float, float], ours: tuple[float, float]) -> None:
        gap = _agree(ours, theirs)
        worst[peer] = max(worst.get(peer, 0.0), gap)
        out.append(f"| {data} | {what} | {peer} | [{theirs[0]:.6g}, {theirs[1]:.6g}] | [{ours[0]:.6g}, {ours[1]:.6g}] "
                   f"| {gap:.3%} |")

    for name, (yc, yt) in _datasets(rng).items():
        proportion = name.startswith("conversion")
        mc, mt = Moments.of(yc), Moments.of(yt)
        ec, et = mean_estimate(mc), mean_estimate(mt)
        c = compare(et, ec)
        dof = welch_dof(et, ec)
        ours_abs_t = _interval(c.absolute, t_halfwidth(c.absolute_variance, ALPHA, dof))
        ours_rel_t = _interval(c.relative, t_halfwidth(c.relative_variance, ALPHA, dof))
        gc, gt = _gb_stat(yc, proportion), _gb_stat(yt, proportion)
        row(name, "absolute, Welch t", "gbstats 0.8", _gb_interval(gc, gt, relative=False), ours_abs_t)
        row(name, "relative lift, Welch t (delta method)", "gbstats 0.8", _gb_interval(gc, gt, relative=True),
            ours_rel_t)
        row(name, "absolute, z", "confidence 4.1 ZTest", _spotify_interval(yc, yt, "z", False),
            _interval(c.absolute, z_halfwidth(c.absolute_variance, ALPHA)))
        row(name, "absolute, Welch t", "confidence 4.1 StudentsTTest", _spotify_interval(yc, yt, "t", False),
            ours_abs_t)
        spotify_rel = _spotify_interval(yc, yt, "z", True)
        row(name, "relative lift, z (delta method)", "confidence 4.1 ZTest (relative)", spotify_rel,
            _interval(c.relative, z_halfwidth(c.relative_variance, ALPHA)))
        row(name, "relative lift, z (absolute interval ÷ control mean)", "confidence 4.1 ZTest (relative)",
            spotify_rel, (c.absolute / ec.value + (-1) * z_halfwidth(c.absolute_variance, ALPHA) / ec.value,
                          c.absolute / ec.value + z_halfwidth(c.absolute_variance, ALPHA) / ec.value))
        row(name, "relative lift, confidence sequence", "gbstats 0.8 sequential", _gb_interval(gc, gt, True, True),
            sequential.relative_cs(c, ALPHA))
    out += _ratio_and_cuped_rows(rng, row)
    out += ["", "Worst gap per peer: " + ", ".join(f"{peer} {gap:.3%}" for peer, gap in worst.items()) + ".", "",
            "Spotify's relative interval is its absolute interval divided by the control mean (the control mean "
            "treated as known), so it is narrower than the delta-method interval that rollwise and gbstats use by "
            "the control's share of the variance; the row that divides rollwise's absolute interval the same way "
            "agrees with it. gbstats takes a proportion's variance as p(1−p) (n in the denominator), rollwise the "
            "sample variance (n − 1): a 1/n difference.", ""]
    return out


def _interval(point: float, half: float) -> tuple[float, float]:
    return float(point - half), float(point + half)


def _ratio_and_cuped_rows(rng: np.random.Generator, row: Callable[..., None]) -> Lines:
    from gbstats.models.statistics import (
        RatioStatistic,
        RegressionAdjustedStatistic,
        SampleMeanStatistic,
        compute_theta,
    )

    n = 40_000
    sessions = [rng.poisson(4.0, n) + 1.0 for _ in range(2)]
    revenue = [s * rng.gamma(2.0, 2.5 * lift, n) / 2 for s, lift in zip(sessions, (1.0, 1.04), strict=True)]
    arms = [Moments.of(revenue[i], sessions[i]) for i in range(2)]
    c = compare(ratio_estimate(arms[1]), ratio_estimate(arms[0]))
    dof = welch_dof(ratio_estimate(arms[1]), ratio_estimate(arms[0]))

    def gb_ratio(i: int) -> Any:
        return RatioStatistic(n=n, m_statistic=SampleMeanStatistic(n=n, sum=float(revenue[i].sum()),
                                                                    sum_squares=float((revenue[i] ** 2).sum())),
                              d_statistic=SampleMeanStatistic(n=n, sum=float(sessions[i].sum()),
                                                              sum_squares=float((sessions[i] ** 2).sum())),
                              m_d_sum_of_products=float((revenue[i] * sessions[i]).sum()))

    row("revenue per session (ratio, +4 %)", "relative lift, Welch t (delta method)", "gbstats 0.8",
        _gb_interval(gb_ratio(0), gb_ratio(1), relative=True), _interval(c.relative, t_halfwidth(c.relative_variance,
                                                                                                  ALPHA, dof)))
    pre = [rng.lognormal(2.0, 1.0, n) for _ in range(2)]
    post = [0.8 * p + rng.lognormal(1.5, 0.8, n) * lift for p, lift in zip(pre, (1.0, 1.03), strict=True)]
    adjusted = cuped.adjusted_estimates([Moments.of(post[i], pre[i]) for i in range(2)])
    cc = compare(adjusted[1], adjusted[0])

    def gb_cuped(i: int, slope: float) -> Any:
        return RegressionAdjustedStatistic(
            n=n,
            post_statistic=SampleMeanStatistic(n=n, sum=float(post[i].sum()), sum_squares=float((post[i] ** 2).sum())),
            pre_statistic=SampleMeanStatistic(n=n, sum=float(pre[i].sum()), sum_squares=float((pre[i] ** 2).sum())),
            post_pre_sum_of_products=float((post[i] * pre[i]).sum()), theta=slope)

    slope = compute_theta(gb_cuped(0, 0.0), gb_cuped(1, 0.0))
    row("post = 0.8·pre + noise (+3 %)", "absolute, CUPED, Welch t", "gbstats 0.8",
        _gb_interval(gb_cuped(0, slope), gb_cuped(1, slope), relative=False),
        _interval(cc.absolute, t_halfwidth(cc.absolute_variance, ALPHA, welch_dof(adjusted[1], adjusted[0]))))
    return []


# ---------------------------------------------------------------- 2. A/A experiments read after every batch


def _binary_looks(rng: np.random.Generator, rates: list[float], experiments: int, batch: int,
                  looks: int) -> list[Moments]:
    """Cumulative statistics of 0/1 outcomes per arm at every look: arrays (experiments, looks)."""
    arms = []
    for rate in rates:
        sums = np.cumsum(rng.binomial(batch, rate, (experiments, looks)), axis=1).astype(float)
        n = np.broadcast_to(batch * np.arange(1, looks + 1, dtype=float), sums.shape)
        arms.append(Moments(n, sums, sums))
    return arms


def _continuous_looks(rng: np.random.Generator, arms: int, experiments: int, batch: int, looks: int,
                      draw: Callable[[np.random.Generator, tuple[int, int]], np.ndarray]) -> list[Moments]:
    sums = np.zeros((arms, 2, experiments, looks))
    for look in range(looks):
        for arm in range(arms):
            y = draw(rng, (experiments, batch))
            sums[arm, 0, :, look] = y.sum(axis=1)
            sums[arm, 1, :, look] = (y * y).sum(axis=1)
    sums = np.cumsum(sums, axis=-1)
    n = np.broadcast_to(batch * np.arange(1, looks + 1, dtype=float), (experiments, looks))
    return [Moments(n, sums[a, 0], sums[a, 1]) for a in range(arms)]


def _ever_excludes_zero(arms: list[Moments], alpha: float, relative: bool, fixed: bool = False) -> np.ndarray:
    """Per experiment: did any comparison with control exclude zero at any look?"""
    control = mean_estimate(arms[0])
    family = alpha / max(len(arms) - 1, 1)
    hit = np.zeros(arms[0].n.shape[0], dtype=bool)
    for arm in arms[1:]:
        c = compare(mean_estimate(arm), control)
        point, var = (c.relative, c.relative_variance) if relative else (c.absolute, c.absolute_variance)
        half = z_halfwidth(var, family) if fixed else sequential.cs_halfwidth(var, c.n, family)
        with np.errstate(invalid="ignore", divide="ignore"):
            excluded = np.abs(point) > half
        hit |= np.nan_to_num(excluded, nan=0.0).astype(bool).any(axis=1)
    return hit


def aa_tests(rng: np.random.Generator, experiments: int) -> Lines:
    batch, looks = 500, 200
    binary = _binary_looks(rng, [0.05, 0.05], experiments, batch, looks)
    three = _binary_looks(rng, [0.05, 0.05, 0.05], experiments, batch, looks)
    revenue = _continuous_looks(rng, 2, experiments, 200, 100, lambda g, s: g.lognormal(2.0, 1.2, s))
    rows = [
        ("conversion 5 %, 2 arms", binary, f"{looks} looks of {batch}/arm"),
        ("conversion 5 %, 3 arms (Bonferroni α/2 each)", three, f"{looks} looks of {batch}/arm"),
        ("revenue lognormal(2, 1.2), 2 arms", revenue, "100 looks of 200/arm"),
    ]
    out = ["## 2. A/A experiments read after every batch", "",
           f"{experiments:,} experiments per row with no true difference, read after every batch; a false positive "
           f"is an experiment whose interval excluded 0 at *any* look (α = {ALPHA}). The fixed-horizon z interval, "
           "read the same way, is the contrast: it is only valid at one pre-registered look.", "",
           "| experiments | looks | CS, absolute | CS, relative lift | fixed-horizon z peeked (absolute) |",
           "|---|---|---|---|---|"]
    for name, arms, looks_text in rows:
        cs_abs = _ever_excludes_zero(arms, ALPHA, relative=False).mean()
        cs_rel = _ever_excludes_zero(arms, ALPHA, relative=True).mean()
        fixed = _ever_excludes_zero(arms, ALPHA, relative=False, fixed=True).mean()
        out.append(f"| {name} | {looks_text} | {cs_abs:.1%} | {cs_rel:.1%} | {fixed:.1%} |")
    return [*out, ""]


# ---------------------------------------------------------------- 3. CUPED


def cuped_shrinkage(rng: np.random.Generator) -> Lines:
    reps, n = 200, 5_000
    out = ["## 3. CUPED: interval width against √(1−ρ²)", "",
           f"{reps} experiments of {n:,} subjects per arm; y = ρ·x + √(1−ρ²)·noise (normal), and a skewed case "
           "(x lognormal, y = x + lognormal noise, ρ measured). Ratio = CUPED interval width ÷ unadjusted width, "
           "mean over experiments.", "",
           "| covariate | ρ | √(1−ρ²) | measured ratio | gap |", "|---|---|---|---|---|"]
    cases: list[tuple[str, float, Callable[[], tuple[np.ndarray, np.ndarray]]]] = []
    for rho in (0.3, 0.5, 0.7, 0.9, 0.95):
        def normal(rho: float = rho) -> tuple[np.ndarray, np.ndarray]:
            x = rng.standard_normal((reps, n))
            return x, rho * x + math.sqrt(1 - rho * rho) * rng.standard_normal((reps, n))
        cases.append(("normal", rho, normal))

    def skewed() -> tuple[np.ndarray, np.ndarray]:
        x = rng.lognormal(1.0, 0.6, (reps, n))
        return x, x + rng.lognormal(0.5, 0.6, (reps, n))
    cases.append(("lognormal", float("nan"), skewed))
    for name, rho, make in cases:
        pairs = [make() for _ in range(2)]
        arms = [Moments.of(y, x) for x, y in pairs]
        if math.isnan(rho):
            rho = float(np.mean([np.corrcoef(pairs[0][0][i], pairs[0][1][i])[0, 1] for i in range(20)]))
        raw = compare(mean_estimate(arms[1]), mean_estimate(arms[0]))
        adjusted = cuped.adjusted_estimates(arms)
        adj = compare(adjusted[1], adjusted[0])
        ratio = float(np.mean(np.sqrt(adj.absolute_variance / raw.absolute_variance)))
        expected = math.sqrt(1 - rho * rho)
        out.append(f"| {name} | {rho:.3f} | {expected:.4f} | {ratio:.4f} | {abs(ratio / expected - 1):.2%} |")
    return [*out, ""]


# ---------------------------------------------------------------- 4. sequential SRM


def _first_flag(served: list[float], allocation: list[float], experiments: int, batch: int, looks: int,
                rng: np.random.Generator) -> np.ndarray:
    """Subjects at the first look where the SRM e-value crossed 1/α (inf if never)."""
    first = rng.binomial(batch, served[0], (experiments, looks))
    counts = np.stack([np.cumsum(first, axis=1), np.cumsum(batch - first, axis=1)], axis=-1)
    flagged = srm.mismatch(counts, allocation, ALPHA)
    index = np.where(flagged.any(axis=1), flagged.argmax(axis=1), -1)
    return np.where(index >= 0, (index + 1) * batch, np.inf).astype(float)


def srm_check(rng: np.random.Generator, experiments: int) -> Lines:
    batch, looks = 500, 2_000
    bad = _first_flag([0.51, 0.49], [0.5, 0.5], experiments, batch, looks, rng)
    good = _first_flag([0.5, 0.5], [0.5, 0.5], experiments, batch, looks, rng)
    predicted = srm.predicted_n([0.51, 0.49], [0.5, 0.5], ALPHA)
    detected = bad[np.isfinite(bad)]
    q10, q50, q90 = np.percentile(detected, [10, 50, 90])
    return ["## 4. Sequential sample-ratio mismatch", "",
            f"Dirichlet-multinomial mixture e-value (concentration {srm.DEFAULT_CONCENTRATION:,.0f}), read every "
            f"{batch} subjects up to {batch * looks:,}; flagged when it reaches 1/α = {1 / ALPHA:.0f}.", "",
            "| allocation 50/50, served | experiments | flagged | subjects at flag: 10th / median / 90th pct | "
            "predicted (Laplace approximation) |", "|---|---|---|---|---|",
            f"| 51/49 | {experiments:,} | {np.isfinite(bad).mean():.1%} | {q10:,.0f} / {q50:,.0f} / {q90:,.0f} | "
            f"{predicted:,.0f} |",
            f"| 50/50 (correct) | {experiments:,} | {int(np.isfinite(good).sum())} ({np.isfinite(good).mean():.1%}, "
            f"bound α = {ALPHA:.0%}) | – | – |", "",
            "The prediction is where the *expected* log e-value reaches log(1/α); the running e-value crosses on a "
            f"favourable fluctuation first, so the median detection comes earlier (here {q50 / predicted:.2f}× the "
            "prediction) and the 90th percentile later.", ""]


# ---------------------------------------------------------------- 5. power


def fixed_horizon_n(base: float, lift: float, alpha: float, power: float) -> float:
    """Per-arm sample size of the two-sided z test for two proportions."""
    from scipy.stats import norm

    treated = base * (1 + lift)
    z = norm.ppf(1 - alpha / 2) + norm.ppf(power)
    return float(z * z * (base * (1 - base) + treated * (1 - treated)) / (treated - base) ** 2)


def power(rng: np.random.Generator, experiments: int) -> Lines:
    base, lift = 0.05, 0.05
    planned = fixed_horizon_n(base, lift, ALPHA, 0.8)
    batch, looks = 2_000, 300
    arms = _binary_looks(rng, [base, base * (1 + lift)], experiments, batch, looks)
    c = compare(mean_estimate(arms[1]), mean_estimate(arms[0]))
    per_arm = arms[0].n[0]
    out = ["## 5. Power: +5 % relative lift at 5 % base conversion", "",
           f"{experiments:,} experiments, read every {batch:,} subjects per arm up to {batch * looks:,} per arm. The "
           f"fixed-horizon z test is read once at its pre-registered {planned:,.0f} per arm (80 % power); the "
           "sequential ones stop at the first look whose interval excludes 0 on the right side.", "",
           "| method | detected by the planned n | detected by 600k/arm "
           "| subjects/arm at detection: median (90th pct) |",
           "|---|---|---|---|"]
    at_plan = int(np.searchsorted(per_arm, planned))
    fixed_hit = (c.absolute[:, at_plan] - z_halfwidth(c.absolute_variance[:, at_plan], ALPHA)) > 0
    out.append(f"| fixed-horizon z at {per_arm[at_plan]:,.0f}/arm | {fixed_hit.mean():.1%} | – | "
               f"{per_arm[at_plan]:,.0f} (fixed) |")
    for name, tuning in ((f"rollwise CS, tuned at the planned total ({2 * planned:,.0f})", 2 * planned),
                         ("rollwise CS = gbstats sequential (tuning 5,000, its default)", 5_000.0)):
        low = c.absolute - sequential.cs_halfwidth(c.absolute_variance, c.n, ALPHA, tuning)
        hit = low > 0
        first = np.where(hit.any(axis=1), hit.argmax(axis=1), -1)
        times = per_arm[first[first >= 0]]
        out.append(f"| {name} | {(hit[:, :at_plan + 1].any(axis=1)).mean():.1%} | {hit.any(axis=1).mean():.1%} | "
                   f"{np.median(times):,.0f} ({np.percentile(times, 90):,.0f}) |")
    same, calls = _gbstats_decisions(arms, experiments=20)
    out += ["", f"gbstats' own `SequentialTwoSidedTTest` (tuning 5,000) was run at every look of 20 of these "
                f"experiments ({calls:,} readouts): its decision (interval excludes 0) matched rollwise's at "
                f"{same:.2%} of them.", ""]
    return out


def _gbstats_decisions(arms: list[Moments], experiments: int) -> tuple[float, int]:
    from gbstats.models.statistics import ProportionStatistic

    c = compare(mean_estimate(arms[1]), mean_estimate(arms[0]))
    half = sequential.cs_halfwidth(c.absolute_variance, c.n, ALPHA, 5_000.0)
    ours = np.abs(c.absolute) > half
    same = calls = 0
    for e in range(experiments):
        for look in range(arms[0].n.shape[1]):
            control = ProportionStatistic(n=int(arms[0].n[e, look]), sum=float(arms[0].y_sum[e, look]))
            treated = ProportionStatistic(n=int(arms[1].n[e, look]), sum=float(arms[1].y_sum[e, look]))
            low, high = _gb_interval(control, treated, relative=False, sequential_mode=True)
            same += int((low > 0 or high < 0) == bool(ours[e, look]))
            calls += 1
    return same / calls, calls


# ---------------------------------------------------------------- 6. ingestion and readout in PostgreSQL


def _fresh_database(server: str, name: str) -> str:
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(server)
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.set(database=name).render_as_string(hide_password=False)


def _plain_copy(store: Any, rows: list[tuple[str, str, float, float]]) -> float:
    from rollwise.adapters.stores.sql_experiments import _copy_text

    raw = store.engine.raw_connection()
    try:
        began = time.perf_counter()
        with raw.cursor() as cursor, cursor.copy("COPY plain_events (subject, event, value, at) FROM STDIN") as copy:
            copy.write(_copy_text(rows))
        raw.commit()
        return time.perf_counter() - began
    finally:
        raw.close()


def _sums_against_rollups(experiments: Any, experiment: Any) -> float:
    """The largest relative gap between the sums kept at ingestion (by differences) and the same statistics
    aggregated afresh from the rollups: the float error the running sums accumulated."""
    from sqlalchemy import text

    from rollwise.adapters.stores.sql_experiments import _params

    kept = experiments.statistics(experiment)[1]
    worst = 0.0
    with experiments.engine.connect() as conn:
        for row in conn.execute(text(experiments._sql.aggregate_rollups(experiment.spec)), _params(experiment)):
            if not row[2]:
                continue
            for got, want in zip(vars(kept[row[0]][row[1]]).values(), row[2:], strict=True):
                worst = max(worst, abs(float(got) - float(want)) / max(abs(float(want)), 1e-300))
    return worst


class _BackendCpu:
    """CPU seconds the PostgreSQL backends serving one database have used (from /proc: the server runs on this
    machine). Wall-clock time on a machine shared with other work counts their CPU too; this does not."""

    def __init__(self, server: str, database: str) -> None:
        import psycopg
        from sqlalchemy.engine import make_url

        admin = make_url(server).set(drivername="postgresql", database="postgres")
        self._conn = psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True)
        self._database = database
        self._tick = os.sysconf("SC_CLK_TCK")

    def seconds(self) -> float:
        pids = [row[0] for row in self._conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'",
            (self._database,))]
        total = 0
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / self._tick

    def close(self) -> None:
        self._conn.close()


def _event_rows(rng: np.random.Generator, subjects: int, size: int) -> list[tuple[str, str, float, float]]:
    names = np.array(["session", "revenue", "purchase", "latency_ms"])
    who = rng.integers(0, subjects, size)
    kind = names[rng.choice(4, size, p=[0.4, 0.1, 0.1, 0.4])]
    value = np.where(kind == "revenue", rng.gamma(2.0, 20.0, size), np.where(kind == "latency_ms",
                                                                             rng.gamma(4.0, 25.0, size), 1.0))
    at = np.where(rng.random(size) < 0.1, 500.0, 2_000.0) + rng.random(size)  # 10 % before the start: CUPED
    return list(zip((f"u{w}" for w in who.tolist()), kind.tolist(), value.tolist(), at.tolist(), strict=True))


def _concurrent(experiments: Any, batches: list[list[tuple[str, str, float, float]]], writers: int) -> float:
    """Seconds for ``writers`` threads (one connection each) to write ``batches`` between them."""
    from concurrent.futures import ThreadPoolExecutor

    began = time.perf_counter()
    with ThreadPoolExecutor(writers) as pool:
        list(pool.map(experiments.record_events, batches))
    return time.perf_counter() - began


def store_section(server: str, events: int, batch: int = 100_000, subjects: int | None = None) -> Lines:
    from rollwise.adapters.stores.sql import SqlStore
    from rollwise.adapters.stores.sql_experiments import SqlExperimentStore
    from rollwise.experiments.model import ExperimentSpec
    from rollwise.experiments.readout import readout

    url = _fresh_database(server, "rollwise_bench_experiments")
    store = SqlStore(url)
    experiments = SqlExperimentStore(store)
    spec = ExperimentSpec.model_validate({
        "name": "checkout", "hypothesis": "one-page checkout sells more", "owner": "bench", "flag": "checkout",
        "variants": ["control", "treatment"], "primary": {"name": "purchase", "kind": "conversion"},
        "secondary": [{"name": "revenue_per_session", "event": "revenue", "kind": "ratio", "denominator": "session"}]})
    experiment = experiments.create(spec, now=1_000.0)
    subjects = subjects or max(events // 10, 1_000)
    rng = np.random.default_rng(7)
    variant = rng.integers(0, 2, subjects)
    exposures = [(f"u{i}", spec.variants[variant[i]], 1_000.0 + i * 1e-3) for i in range(subjects)]
    began = time.perf_counter()
    for start in range(0, subjects, 100_000):
        experiments.record_exposures("checkout", exposures[start:start + 100_000])
    exposure_s = time.perf_counter() - began
    written, ingest_s, plain_s, plain_n, unread_s = 0, 0.0, 0.0, 0, 0.0
    server_cpu, client_cpu, cpu = 0.0, 0.0, _BackendCpu(server, "rollwise_bench_experiments")
    with store.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE plain_events (LIKE metric_events)")
    while written < events:
        size = min(batch, events - written)
        rows = _event_rows(rng, subjects, size)
        before, client_before, began = cpu.seconds(), time.thread_time(), time.perf_counter()
        experiments.record_events(rows)
        ingest_s += time.perf_counter() - began
        client_cpu += time.thread_time() - client_before
        server_cpu += cpu.seconds() - before
        if plain_n < 1_000_000:  # the floors: the same batch COPY'd into a plain table, and through the store
            plain_s += _plain_copy(store, rows)  # under event names no experiment reads (nothing to fold)
            unread = [(s, "unread_" + e, v, a) for s, e, v, a in rows]
            began = time.perf_counter()
            experiments.record_events(unread)
            unread_s += time.perf_counter() - began
            plain_n += size
        written += size
    cpu.close()
    # two writers at once, rows built before
    extra = [_event_rows(rng, subjects, batch) for _ in range(max(1_000_000 // batch, 2))]
    two_s = _concurrent(experiments, extra, 2)
    extra_n = sum(len(b) for b in extra)
    del extra
    with store.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE metric_events")
        conn.exec_driver_sql("ANALYZE experiment_exposures")
        conn.commit()
    timings = []
    for _ in range(3):
        began = time.perf_counter()
        result = readout(experiment, *experiments.statistics(experiment))
        timings.append(time.perf_counter() - began)
    began = time.perf_counter()
    drift = _sums_against_rollups(experiments, experiment)
    rollup_scan_s = time.perf_counter() - began
    began = time.perf_counter()
    with store.engine.connect() as conn:
        conn.exec_driver_sql("SELECT count(*), sum(value) FROM metric_events").all()
    scan_s = time.perf_counter() - began
    load = os.getloadavg()[0]
    store.close()
    primary = result.metrics[0].comparisons[0]
    return ["## 6. Ingestion and readout in PostgreSQL", "",
            f"PostgreSQL at {server.split('@')[-1].rsplit('/', 1)[0]}, a fresh database. {subjects:,} subjects exposed "
            f"({subjects / exposure_s:,.0f} exposures/s, batches of 100,000: COPY into a temporary table, then one "
            "statement: insert … on conflict do nothing, the subjects' rollup rows per metric given the variant, "
            "their values added to the variant sums); "
            f"{events:,} metric events written with `SqlExperimentStore.record_events` in batches of {batch:,}, "
            "rows built before each timed call. Each batch, in one transaction: COPY into a temporary table, "
            "append to `metric_events`, then one statement per experiment that reads the batch's events: fold "
            "the batch per (metric, subject), UPSERT that into `experiment_rollups`, and add each changed row's "
            "(new − old) per-subject values to its variant's sums in `experiment_sums`.", "",
            "| what | figure | target |", "|---|---|---|",
            f"| ingestion, events + rollups + sums | {events / ingest_s:,.0f} events/s ({ingest_s:.1f} s for "
            f"{events:,}) | ≥ 100,000 events/s |",
            f"| the same, two writers at once (threads, a connection each; {extra_n:,} more events) | "
            f"{extra_n / two_s:,.0f} events/s | – |",
            f"| CPU per 100,000 events: PostgreSQL backend {server_cpu / (events / 1e5):.2f} s + rollwise "
            f"(COPY text, driver) {client_cpu / (events / 1e5):.2f} s → one writer with a core of its own | "
            f"{events / (server_cpu + client_cpu):,.0f} events/s | – |",
            f"| floor 1: the same batches COPY'd into a plain table (first {plain_n:,}) | "
            f"{plain_n / plain_s:,.0f} events/s | – |",
            f"| floor 2: the same batches through `record_events` under event names no experiment reads (COPY "
            f"into the temporary table + append to `metric_events`, nothing to fold; first {plain_n:,}) | "
            f"{plain_n / unread_s:,.0f} events/s | – |",
            f"| readout (SRM counts + 2 metrics: conversion with CUPED, revenue per session), best of 3 | "
            f"{min(timings):.3f} s (all: {', '.join(f'{t:.3f}' for t in timings)}) | < 2 s |",
            f"| the same statistics aggregated afresh from the rollups (one row per subject and metric, no join) | "
            f"{rollup_scan_s:.2f} s | – |",
            f"| one plain scan `SELECT count(*), sum(value) FROM metric_events` "
            f"({events + plain_n + extra_n:,} rows) | "
            f"{scan_s:.2f} s | – |", "",
            f"Load average (1 min) at the end of this section: {load:.1f} on {os.cpu_count()} cores (other work "
            "shares the machine and the PostgreSQL server).", "",
            f"The sums kept by differences against the same statistics aggregated afresh: largest relative gap "
            f"{drift:.1e} (float rounding of the running sums).", "",
            f"Readout check: primary lift {primary.relative:+.2%}, {result.srm.status} SRM, "
            f"{sum(result.counts.values()):,} subjects.", ""]


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--postgres", default=None, help="PostgreSQL URL for the ingestion and readout section")
    parser.add_argument("--events", type=int, default=10_000_000, help="events for the readout section")
    parser.add_argument("--batch", type=int, default=100_000, help="events per record_events call (section 6)")
    parser.add_argument("--subjects", type=int, default=None, help="subjects exposed (section 6; default events/10)")
    parser.add_argument("--only", default=None, help="comma-separated sections to run (default: all)")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    command = "python bench/experiments.py " + " ".join(sys.argv[1:] if argv is None else argv)
    lines = ["# Experiment statistics", "", f"Command: `{command.strip()}`", "",
             f"Machine: {platform.machine()}, Python {platform.python_version()}, numpy {np.__version__}; "
             f"seed {args.seed}; α = {ALPHA}.", ""]
    sections: list[tuple[str, Callable[[], Lines]]] = [
        ("agreement", lambda: agreement(rng)),
        ("a/a", lambda: aa_tests(rng, args.experiments)),
        ("cuped", lambda: cuped_shrinkage(rng)),
        ("srm", lambda: srm_check(rng, args.experiments)),
        ("power", lambda: power(rng, args.experiments)),
    ]
    if args.postgres:
        sections.append(("store", lambda: store_section(args.postgres, args.events, args.batch, args.subjects)))
    wanted = set(args.only.split(",")) if args.only else None
    for name, section in sections:
        if wanted is not None and name not in wanted:
            continue
        began = time.perf_counter()
        lines += section()
        print(f"{name}: {time.perf_counter() - began:.1f} s", file=sys.stderr)
    lines.append(f"Whole run: {time.perf_counter() - started:.0f} s.")
    text = "\n".join(lines) + "\n"
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
