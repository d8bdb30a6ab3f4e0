"""How fast and how safely do judges decide? Canary scenarios on simulated traffic, side by side.

Every method sees the same simulated service (``rollwise.simulate.world``: 200 req/s, canary
weights 5 -> 10 -> 25 -> 50 -> 100 %, baseline 0.1 % errors, p99 100 ms, 5 % conversion) with the
same seeds. Judges are driven window by window with the engine's stage semantics (minSamples,
minStageTime, maxStageTime -> inconclusive, HOLD -> noDataLimit), which is what the engine does,
without its store round-trips so that hundreds of seeds run in minutes.

Methods:
  sequential        rollwise's default judge (mixture e-processes, no effect size stated), 1-s windows
  sequential+min    the same with minEffect stated (SPRT) at the effect the Wald bound assumes (errors
                    0.1 %->2 %: 1.9 pp; ->1 %: 0.9 pp; slow 1 %->3 %: 2 pp), else errors 1 pp, slow 2 pp
  flagger           Flagger as documented: 1-min checks on the canary alone, success >= 99 %,
                    request-duration p99 <= 500 ms, threshold 5 failed checks (cumulative, never reset),
                    "no values" counts as a failed check, one weight step per passing check
  flagger@125ms     the same with the p99 bar tuned to this simulation: 125 ms, the first bucket
                    bound above the baseline's p99 that healthy canaries pass (best case for Flagger)
  argo              5-min measurements, same conditions, failureLimit 3, consecutiveErrorLimit 4
  kayenta           rollwise's Kayenta-style judge (Mann-Whitney over 10-s buckets, 50 points/stage)
  wald bound        expected requests of the best possible test (Wald-Wolfowitz), computed at the
                    α share the judge gives the metric (α / number of metrics: the same hypotheses),
                    and at the whole α (the strictest reading)

Metrics outage: a rollback counts as *caused by the outage* when it is decided on a window without
data, or when the judge, replayed on exactly the windows with data that the run saw (same stages,
the gap removed), does not roll back: then the decision needed the gap, not the data. A second,
noisier count is also shown: rollbacks in the outage's aftermath (until 60 s after data returns)
that the same seed without the outage does not have; it charges the outage with ordinary α-level
rollbacks of a fresh random path, and those concentrate in a canary's first minute of data, which
is what the aftermath is.

Usage:  python bench/decisions.py --seeds 500 --jobs 2 --output markdown > bench/results/decisions.md
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from scipy.stats import norm

from rollwise.analysis.kayenta import KayentaJudge
from rollwise.analysis.sequential import SequentialJudge
from rollwise.core.model import Action, RouteState, StageContext, Window, WindowQuery
from rollwise.core.protocols import Judge
from rollwise.simulate.world import Behaviour, SimulatedWorld, TrafficProfile
from rollwise.spec.models import AnalysisSpec

STAGES = (5, 10, 25, 50)
RPS = 200.0
ALPHA = 0.01
BASE = Behaviour(error_rate=0.001, latency_p50_ms=20.0, latency_p99_ms=100.0, conversion=0.05)
SLOW_MS = 100.0  # the baseline's p99: "slow" means slower than this
FLAGGER_DOC_P99_MS = 500.0  # Flagger's documented request-duration bar
FLAGGER_TUNED_P99_MS = 125.0  # the next bucket bound above the baseline p99: a bar healthy canaries pass
AFTERMATH_S = 60.0


def p99_for_exceedance(share: float, p50: float = 20.0, bar: float = SLOW_MS) -> float:
    """The lognormal p99 for which ``share`` of requests are slower than ``bar``."""
    sigma = (math.log(bar) - math.log(p50)) / float(norm.ppf(1.0 - share))
    return p50 * math.exp(sigma * float(norm.ppf(0.99)))


def errors_of(window: Window) -> float:
    return float(window.canary.errors) if window.canary is not None else 0.0


def slow_of(window: Window) -> float:
    return float(window.canary.count_above(SLOW_MS)) if window.canary is not None else 0.0


def lost_conversions_of(window: Window) -> float:
    return window.canary.kpis.get("visit", 0.0) * 0.005 if window.canary is not None else 0.0


@dataclass
class Scenario:
    name: str
    canary: Behaviour
    healthy: bool
    bad: Callable[[Window], float] = errors_of
    profile: Callable[[], TrafficProfile] = lambda: TrafficProfile(rps=RPS)
    kpi: bool = False
    bound: tuple[float, float] | None = None  # (p0, p1) for the Wald bound on canary requests
    seed_share: float = 1.0  # fraction of --seeds to run (slow scenarios run fewer)
    max_time: float = 4 * 3600.0
    min_effect: tuple[float, float] = (0.01, 0.02)  # (errors, slow) for sequential+min
    outages: list[tuple[float, float]] = field(default_factory=list)


SCENARIOS = [
    Scenario("healthy A/A", Behaviour(), healthy=True),
    Scenario("errors 0.1%→1%", Behaviour(error_rate=0.01), healthy=False, bound=(0.001, 0.01), seed_share=0.4,
             min_effect=(0.009, 0.02)),
    Scenario("errors 0.1%→2%", Behaviour(error_rate=0.02), healthy=False, bound=(0.001, 0.02), seed_share=0.4,
             min_effect=(0.019, 0.02)),
    Scenario("slow >p99 1%→3%", Behaviour(latency_p99_ms=p99_for_exceedance(0.03)), healthy=False,
             bad=slow_of, bound=(0.01, 0.03), seed_share=0.4, min_effect=(0.01, 0.02)),
    Scenario("degrading 0.1%→2% over 2 min", Behaviour(error_drift_per_hour=0.019 * 30), healthy=False,
             seed_share=0.2),
    Scenario("KPI conversion −10%", Behaviour(conversion=0.045), healthy=False, bad=lost_conversions_of,
             kpi=True, seed_share=0.05),
    Scenario("low traffic 2 req/s, errors 0.1%→2%", Behaviour(error_rate=0.02), healthy=False,
             profile=lambda: TrafficProfile(rps=2.0), bound=(0.001, 0.02), seed_share=0.1,
             min_effect=(0.019, 0.02)),
    Scenario("metrics outage 6 min (healthy)", Behaviour(), healthy=True,
             profile=lambda: TrafficProfile(rps=RPS, outages=[(20.0, 380.0)]), seed_share=1.0,
             outages=[(20.0, 380.0)]),
    Scenario("bursty baseline (healthy)", Behaviour(), healthy=True,
             profile=lambda: TrafficProfile(rps=RPS, burst_probability=0.05, burst_factor=5.0,
                                            burst_error_rate=0.01), seed_share=0.2),
]


def analysis_for(scenario: Scenario, min_effect: bool, judge: str = "sequential",
                 single_metric: bool = False) -> AnalysisSpec:
    """The spec each method runs. ``single_metric``: only the metric the scenario regresses, so it gets the
    whole α, like the one test the Wald bound describes (a spec watching one metric)."""
    errors: dict[str, Any] = {"name": "errors", "type": "errorRate"}
    latency: dict[str, Any] = {"name": "latency", "type": "latency", "quantile": 0.99}
    if min_effect:
        errors["minEffect"], latency["minEffect"] = scenario.min_effect
    metrics = [errors, latency]
    if single_metric:
        metrics = [latency] if scenario.bad is slow_of else [errors]
    if scenario.kpi:
        metrics.append({"name": "conversion", "type": "kpi", "numerator": "checkout", "denominator": "visit",
                        "maxIncrease": 0.0})
    return AnalysisSpec.model_validate({
        "judge": judge, "interval": "1s", "alpha": ALPHA, "minSamples": 100, "minStageTime": "10s",
        "maxStageTime": "30m", "noDataLimit": "15m", "metrics": metrics,
    })


def sequential_analysis(method: str, scenario: Scenario) -> AnalysisSpec:
    """The spec of a ``sequential``, ``sequential+min`` or ``sequential+min/1`` method."""
    return analysis_for(scenario, min_effect=method.startswith("sequential+min"), single_metric=method.endswith("/1"))


@dataclass
class Run:
    outcome: str  # promoted | rolledback | inconclusive | paused | timeout
    time: float
    bad: float
    stage: int
    stage_times: list[float] = field(default_factory=list)
    blind: bool = False  # decided on a window without data
    fed: list[tuple[int, Window]] = field(default_factory=list)  # (stage, window) the judge saw, if recorded


def _world(scenario: Scenario, seed: int) -> SimulatedWorld:
    return SimulatedWorld(BASE, scenario.canary, scenario.profile(), seed=seed, latency_slo_ms=SLOW_MS, t0=0.0)


def _route(weight: float) -> RouteState:
    return RouteState(stable="v1", canary="v2", canary_weight=weight)


def _query(start: float, end: float) -> WindowQuery:
    return WindowQuery("bench", "svc", "v1", "v2", start, end)


def _history_carry(world: SimulatedWorld, analysis: AnalysisSpec) -> dict[str, Any]:
    """What the engine reads once when a rollout starts: the stable version's recent history."""
    if analysis.baselineHistory <= 0:
        return {}
    stats = world.baseline_history(_query(-analysis.baselineHistory, 0.0))
    return {"history": {"start": -analysis.baselineHistory, "end": 0.0,
                        "baseline": stats.to_dict() if stats is not None else None}}


def run_judge(judge: Judge, analysis: AnalysisSpec, scenario: Scenario, seed: int, step: float,
              record: bool = False, priors: dict[str, Any] | None = None) -> Run:
    """A rollout driven like the engine drives it, one window per ``step`` seconds.

    ``priors``: what the engine puts in ``carry.priors`` when it begins (see bench/learning.py).
    """
    fed: list[tuple[int, Window]] = []
    world = _world(scenario, seed)
    t, bad = 0.0, 0.0
    carry = _history_carry(world, analysis)
    if priors is not None:
        carry["priors"] = priors
    stage_times = []
    for index, weight in enumerate(STAGES):
        world.apply("bench", _route(weight))
        start, windows, silent_since = t, [], None
        stage_carry = dict(carry)
        while True:
            window = world.collect(_query(t, t + step))
            t += step
            windows.append(window)
            if record:
                fed.append((index, window))
            bad += scenario.bad(window)
            verdict = judge.evaluate(StageContext(
                analysis=analysis, stage_index=index, canary_weight=weight, stage_started_at=start, now=t,
                windows=tuple(windows), carry=stage_carry, run=1,
            ))
            if verdict.action == Action.ROLLBACK:
                return Run("rolledback", t, bad, index, stage_times, blind=not window.has_data, fed=fed)
            if verdict.action == Action.HOLD:
                silent_since = t - step if silent_since is None else silent_since
                if t - silent_since >= analysis.noDataLimit:
                    return Run("paused", t, bad, index, stage_times)
            else:
                silent_since = None
            if verdict.action == Action.EXPAND and t - start >= analysis.minStageTime:
                carry.update(verdict.details.carry or {})
                stage_times.append(t - start)
                break
            if verdict.action == Action.INCONCLUSIVE or t - start >= analysis.maxStageTime:
                return Run("inconclusive", t, bad, index, stage_times)
            if t >= scenario.max_time:
                return Run("timeout", t, bad, index, stage_times)
    return Run("promoted", t, bad, len(STAGES), stage_times)


def run_checker(scenario: Scenario, seed: int, interval: float, failure_limit: int, error_limit: int | None,
                p99_bar_ms: float) -> Run:
    """Flagger / Argo style: one point-estimate check per interval; failures accumulate, never reset."""
    world = _world(scenario, seed)
    t, bad, failures, errors_in_row, index = 0.0, 0.0, 0, 0, 0
    world.apply("bench", _route(STAGES[0]))
    stage_start, stage_times = 0.0, []
    while t < scenario.max_time:
        window = world.collect(_query(t, t + interval))
        t += interval
        bad += scenario.bad(window)
        if window.canary is None or window.baseline is None or window.canary.requests == 0:
            ok = False
            errors_in_row += 1
            if error_limit is not None and errors_in_row > error_limit:
                return Run("rolledback", t, bad, index, stage_times, blind=True)
            if error_limit is not None:
                continue  # Argo: a measurement error is not a failed measurement
        else:
            errors_in_row = 0
            canary, baseline = window.canary, window.baseline
            p99 = canary.quantile(0.99) or 0.0
            ok = (1.0 - canary.error_rate) >= 0.99 and p99 <= p99_bar_ms
            if scenario.kpi:
                conv_c = canary.kpis.get("checkout", 0.0) / max(1.0, canary.kpis.get("visit", 0.0))
                conv_b = baseline.kpis.get("checkout", 0.0) / max(1.0, baseline.kpis.get("visit", 0.0))
                ok = ok and conv_c >= 0.95 * conv_b
        if not ok:
            failures += 1
            if failures >= failure_limit:
                return Run("rolledback", t, bad, index, stage_times, blind=window.canary is None)
            continue
        stage_times.append(t - stage_start)
        stage_start = t
        index += 1
        if index == len(STAGES):
            return Run("promoted", t, bad, index, stage_times)
        world.apply("bench", _route(STAGES[index]))
    return Run("timeout", t, bad, index, stage_times)


def wald_bound(p0: float, p1: float, canary_rps: float, alpha: float = ALPHA) -> tuple[float, float]:
    """(seconds, bad requests): Wald's expected sample size of the optimal test, known baseline rate."""
    beta = 0.05
    kl = p1 * math.log(p1 / p0) + (1 - p1) * math.log((1 - p1) / (1 - p0))
    n = ((1 - beta) * math.log((1 - beta) / alpha) + beta * math.log(beta / (1 - alpha))) / kl
    return n / canary_rps, n * p1


METHODS = ("sequential", "sequential+min", "sequential+min/1", "flagger", "flagger@125ms", "argo", "kayenta")


def run_method(method: str, scenario: Scenario, seed: int) -> Run:
    if method == "flagger":
        return run_checker(scenario, seed, interval=60.0, failure_limit=5, error_limit=None,
                           p99_bar_ms=FLAGGER_DOC_P99_MS)
    if method == "flagger@125ms":
        return run_checker(scenario, seed, interval=60.0, failure_limit=5, error_limit=None,
                           p99_bar_ms=FLAGGER_TUNED_P99_MS)
    if method == "argo":
        return run_checker(scenario, seed, interval=300.0, failure_limit=4, error_limit=4,
                           p99_bar_ms=FLAGGER_TUNED_P99_MS)
    if method == "kayenta":
        analysis = analysis_for(scenario, min_effect=False, judge="kayenta")
        return run_judge(KayentaJudge(analysis), analysis, scenario, seed, step=10.0)
    analysis = sequential_analysis(method, scenario)
    return run_judge(SequentialJudge(analysis), analysis, scenario, seed, step=1.0, record=bool(scenario.outages))


def _median(values: list[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def replay_without_gaps(method: str, scenario: Scenario, seed: int, fed: list[tuple[int, Window]]) -> bool:
    """Whether the judge rolls back when shown only the windows with data, the gap closed up."""
    analysis = sequential_analysis(method, scenario)
    judge = SequentialJudge(analysis)
    carry = _history_carry(_world(scenario, seed), analysis)  # the same history the run read
    t = 0.0
    for stage in sorted({index for index, _ in fed}):
        start, windows, stage_carry, verdict = t, [], dict(carry), None
        for index, window in fed:
            if index != stage or not window.has_data:
                continue
            shifted = Window(t, t + (window.end - window.start), window.baseline, window.canary)
            t = shifted.end
            windows.append(shifted)
            verdict = judge.evaluate(StageContext(
                analysis=analysis, stage_index=stage, canary_weight=STAGES[stage], stage_started_at=start,
                now=t, windows=tuple(windows), carry=stage_carry, run=1,
            ))
            if verdict.action == Action.ROLLBACK:
                return True
        if verdict is not None:
            carry.update(verdict.details.carry or {})
    return False


def outage_caused(method: str, scenario: Scenario, seed: int, run: Run) -> bool:
    """Whether a rollback was decided blind, or needed the gap: the same data without it does not roll back."""
    if run.outcome != "rolledback" or not scenario.outages:
        return False
    if run.blind:
        return True
    if not run.fed:
        return outage_aftermath(method, scenario, seed, run)
    return not replay_without_gaps(method, scenario, seed, run.fed)


def outage_aftermath(method: str, scenario: Scenario, seed: int, run: Run) -> bool:
    """Whether a rollback was decided blind or in the outage's aftermath and needed the outage."""
    if run.outcome != "rolledback" or not scenario.outages:
        return False
    if run.blind:
        return True
    if not any(start <= run.time <= end + AFTERMATH_S for start, end in scenario.outages):
        return False
    clear = Scenario(scenario.name, scenario.canary, scenario.healthy, scenario.bad,
                     lambda: TrafficProfile(rps=RPS), scenario.kpi, min_effect=scenario.min_effect)
    return run_method(method, clear, seed).outcome != "rolledback"


def summarise(scenario: Scenario, runs: list[Run], caused: int = 0) -> dict[str, Any]:
    rolled = [r for r in runs if r.outcome == "rolledback"]
    promoted = [r for r in runs if r.outcome == "promoted"]
    stages_judged = sum(min(r.stage + 1, len(STAGES)) for r in runs)
    return {
        "runs": len(runs),
        "rollback_rate": len(rolled) / len(runs),
        "false_rollback_rate": len(rolled) / len(runs) if scenario.healthy else 0.0,
        "false_rollback_per_stage": len(rolled) / stages_judged if scenario.healthy else 0.0,
        "promote_rate": len(promoted) / len(runs),
        "inconclusive_rate": sum(r.outcome in ("inconclusive", "paused", "timeout") for r in runs) / len(runs),
        "median_time_to_decision_s": _median([r.time for r in runs if r.outcome in ("rolledback", "promoted")]),
        "median_time_to_rollback_s": _median([r.time for r in rolled]),
        "median_bad_served": _median([r.bad for r in runs]),
        "median_bad_at_rollback": _median([r.bad for r in rolled]),
        "median_time_to_promote_s": _median([r.time for r in promoted]),
        "outage_caused_rollbacks": caused,
        "blind_rollbacks": sum(r.blind for r in rolled),
    }


def _seeds_for(scenario: Scenario, seeds: int) -> int:
    return max(20, round(seeds * scenario.seed_share))


def run_cell(index: int, method: str, seeds: int) -> dict[str, Any]:
    """One (scenario, method) cell: every seed, summarised. Picklable, for ``--jobs``."""
    scenario = SCENARIOS[index]
    began = time.process_time()
    runs = [run_method(method, scenario, seed) for seed in range(_seeds_for(scenario, seeds))]
    caused = sum(outage_caused(method, scenario, seed, run) for seed, run in enumerate(runs))
    aftermath = sum(outage_aftermath(method, scenario, seed, run) for seed, run in enumerate(runs))
    stats = {**summarise(scenario, runs, caused), "outage_aftermath_rollbacks": aftermath,
             "cpu_s": round(time.process_time() - began, 1)}
    print(f"{scenario.name:40s} {method:15s} {stats}", file=sys.stderr)
    return stats


def run_all(seeds: int, methods: tuple[str, ...], only: str | None, jobs: int = 1) -> dict[str, Any]:
    results: dict[str, Any] = {"seeds": seeds, "alpha": ALPHA, "rps": RPS, "stages": list(STAGES), "scenarios": []}
    chosen = [i for i, s in enumerate(SCENARIOS) if not only or only.lower() in s.name.lower()]
    cells = [(i, method) for i in chosen for method in methods]
    # Every cell is seeded on its own, so running them in parallel gives the same numbers.
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {cell: pool.submit(run_cell, cell[0], cell[1], seeds) for cell in cells}
        done = {cell: future.result() for cell, future in futures.items()}
    for index in chosen:
        scenario = SCENARIOS[index]
        entry: dict[str, Any] = {"name": scenario.name, "healthy": scenario.healthy,
                                 "seeds": _seeds_for(scenario, seeds),
                                 "methods": {method: done[(index, method)] for method in methods}}
        if scenario.bound is not None:
            rps = (RPS if "low traffic" not in scenario.name else 2.0) * STAGES[0] / 100.0
            share = ALPHA / (3 if scenario.kpi else 2)  # the judge's α share per metric (equal weights)
            seconds, bad = wald_bound(*scenario.bound, canary_rps=rps, alpha=share)
            strict_s, strict_bad = wald_bound(*scenario.bound, canary_rps=rps)
            entry["wald_bound"] = {"time_s": seconds, "bad": bad, "alpha": share,
                                   "strict_time_s": strict_s, "strict_bad": strict_bad}
        results["scenarios"].append(entry)
    results["acceptance"] = acceptance(results)
    return results


def acceptance(results: dict[str, Any]) -> list[dict[str, Any]]:
    by_name = {s["name"]: s for s in results["scenarios"]}
    checks: list[dict[str, Any]] = []

    def add(what: str, value: float | None, target: str, ok: bool | None) -> None:
        checks.append({"check": what, "value": value, "target": target, "ok": ok})

    aa = by_name.get("healthy A/A")
    if aa:
        seq = aa["methods"].get("sequential")
        if seq:
            add("false rollbacks per stage, healthy A/A (sequential)", seq["false_rollback_per_stage"], "≤ 1 %",
                seq["false_rollback_per_stage"] <= 0.01)
            flag = aa["methods"].get("flagger")
            if flag and flag["median_time_to_promote_s"] and seq["median_time_to_promote_s"]:
                ratio = seq["median_time_to_promote_s"] / flag["median_time_to_promote_s"]
                add("time to promote 5→100 %, sequential / flagger", ratio, "≤ 1/3", ratio <= 1 / 3)
    outage = next((s for n, s in by_name.items() if n.startswith("metrics outage")), None)
    for method in ("sequential", "sequential+min", "sequential+min/1"):
        if outage and method in outage["methods"]:
            stats = outage["methods"][method]
            caused = stats["outage_caused_rollbacks"]
            add(f"rollbacks caused by a metrics outage (blind, or not reproduced on the same data without the gap), "
                f"{outage['seeds']} runs ({method})", caused, "0", caused == 0)
            after = stats.get("outage_aftermath_rollbacks")
            if after is not None:
                add(f"rollbacks in the 60 s after the outage that the same seed without it lacks ({method}; "
                    "noisy, see the docstring)", after, "–", None)
            add(f"rollbacks decided on a window without data ({method})", stats["blind_rollbacks"], "0",
                stats["blind_rollbacks"] == 0)
            rate = stats["false_rollback_per_stage"]
            add(f"ordinary false rollbacks per stage in the outage scenario ({method})", rate, "≤ 1 %",
                rate <= 0.01)
    for name in ("errors 0.1%→2%", "slow >p99 1%→3%"):
        scenario = by_name.get(name)
        if not scenario or "wald_bound" not in scenario:
            continue
        bounds = scenario["wald_bound"]
        for method, limit in (("sequential", 3.0), ("sequential+min", 1.5)):
            stats = scenario["methods"].get(method)
            if stats and stats["median_bad_at_rollback"] is not None:
                ratio = stats["median_bad_at_rollback"] / bounds["bad"]
                add(f"{name}: median bad / Wald bound at the metric's α share ({method})", ratio, f"≤ {limit}",
                    ratio <= limit)
                strict = stats["median_bad_at_rollback"] / bounds["strict_bad"]
                add(f"{name}: median bad / Wald bound at the whole α ({method})", strict, f"≤ {limit}",
                    strict <= limit)
        single = scenario["methods"].get("sequential+min/1")
        if single and single["median_bad_at_rollback"] is not None:
            ratio = single["median_bad_at_rollback"] / bounds["strict_bad"]
            add(f"{name}: median bad / Wald bound at the whole α (sequential+min, spec watching this metric only)",
                ratio, "≤ 1.5", ratio <= 1.5)
        for method in ("sequential", "sequential+min", "sequential+min/1"):
            seq = scenario["methods"].get(method)
            for flagger in ("flagger", "flagger@125ms"):
                flag = scenario["methods"].get(flagger)
                if seq and flag and seq["median_bad_served"] and flag["median_bad_served"]:
                    ratio = flag["median_bad_served"] / seq["median_bad_served"]
                    missed = flag["promote_rate"] > 0.5
                    add(f"{name}: {flagger} bad / {method} bad" + (" (flagger promoted it)" if missed else ""),
                        ratio, "≥ 10", ratio >= 10)
    return checks


def _fmt(value: float | None, kind: str) -> str:
    if value is None:
        return "–"
    if kind == "pct":
        return f"{100 * value:.1f} %"
    if kind == "s":
        return f"{value / 60:.1f} min" if value >= 600 else f"{value:.0f} s"
    return f"{value:.3g}"


def markdown(results: dict[str, Any], command: str) -> str:
    lines = [
        "# Decision benchmark: rollwise's sequential judge vs peers",
        "",
        f"Command: `{command}`",
        "",
        f"Simulated service: {results['rps']:.0f} req/s, canary stages {results['stages']} % then 100 %, "
        f"α = {results['alpha']:.0%}; baseline 0.1 % errors, p99 100 ms, 5 % conversion. Medians over seeds. "
        "Bad = canary requests that failed (or were slower than the baseline's p99, or expected lost "
        "conversions for the KPI case) until the decision. Times are from the start of the rollout.",
        "",
        "| scenario | method | runs | rollback | promoted | undecided | time to decision | bad served | "
        "bad at rollback | time to promote |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for scenario in results["scenarios"]:
        for method, s in scenario["methods"].items():
            lines.append(
                f"| {scenario['name']} | {method} | {s['runs']} | {_fmt(s['rollback_rate'], 'pct')} | "
                f"{_fmt(s['promote_rate'], 'pct')} | {_fmt(s['inconclusive_rate'], 'pct')} | "
                f"{_fmt(s['median_time_to_decision_s'], 's')} | {_fmt(s['median_bad_served'], 'n')} | "
                f"{_fmt(s['median_bad_at_rollback'], 'n')} | {_fmt(s['median_time_to_promote_s'], 's')} |"
            )
        if "wald_bound" in scenario:
            b = scenario["wald_bound"]
            lines.append(f"| {scenario['name']} | **Wald bound, α share {b['alpha']:.3g}** | – | – | – | – | "
                         f"{_fmt(b['time_s'], 's')} | {b['bad']:.2f} | {b['bad']:.2f} | – |")
            lines.append(f"| {scenario['name']} | **Wald bound, whole α** | – | – | – | – | "
                         f"{_fmt(b['strict_time_s'], 's')} | {b['strict_bad']:.2f} | {b['strict_bad']:.2f} | – |")
    lines += ["", "## Acceptance targets", "", "| check | measured | target | met |", "|---|---|---|---|"]
    for check in results["acceptance"]:
        value = check["value"]
        shown = _fmt(value, "pct") if "per stage" in check["check"] else _fmt(value, "n")
        met = "–" if check["ok"] is None else "yes" if check["ok"] else "NO"
        lines.append(f"| {check['check']} | {shown} | {check['target']} | {met} |")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=100, help="runs of the healthy A/A scenario (others fewer)")
    parser.add_argument("--output", choices=("json", "markdown"), default="markdown")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--only", default=None, help="run only scenarios whose name contains this")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (results do not depend on it)")
    args = parser.parse_args()
    results = run_all(args.seeds, tuple(m for m in args.methods.split(",") if m), args.only, args.jobs)
    if args.output == "json":
        print(json.dumps(results, indent=2))
    else:
        print(markdown(results, "python bench/decisions.py " + " ".join(sys.argv[1:])))


if __name__ == "__main__":
    main()
