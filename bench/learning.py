"""What past releases teach: priors learned from history, measured on the decision benchmark's canaries.

Priors. A service's history is made the way production makes it: past rollouts of the service run
through the real engine on the simulator (``rollwise.simulate``) with a ``MemoryReleaseHistory``,
so each finished rollout records its effects (``core.releases.effects_of``) exactly as a
``rollwise serve`` would into the SQL store. Histories:

  none          no past release (the flat mixture: today's default)
  resembling    checkout: 10 error regressions (0.1 % -> 1.5..2.5 %), 10 latency regressions (slow
                1 % -> 2.5..3.5 %), 4 healthy releases; search (another service, for the shrinkage):
                6 error regressions 0.1 % -> 0.5 %, 6 latency regressions 1 % -> 6 %
  misleading    the same, checkout's regressions 5x larger than the new one (errors +9.5 pp,
                slow +10 pp)

Each history's priors are fitted once (``learning.priors.fit_priors``), as the engine does when a
rollout begins, and the new rollouts are then judged like bench/decisions.py judges them (same
scenarios, seeds, spec, Wald bound and "bad" counts) with those priors in the carry.

Defaults across traffic. ``examples/canary.yaml`` as shipped (or ``--spec``), driven by the real
engine on the simulator at 10, 100 and 1000 req/s and base error rates 0.1 %, 1 % and 5 %: a
regression (0.1 % -> 2 %, 1 % -> 4 %, 5 % -> 10 %) and a healthy canary in each cell. Bad = canary
errors served until the rollback; the Wald bound as bench/decisions.py computes it (5 % canary, the
metric's α share α/2, null = the baseline's rate), and again at the spec's own null (baseline +
maxIncrease) with the comparison's α share (α/4: the metric's half goes to its SLO gate and burn
projection). "Overshoot" is the culprit's e-value over its bar at the rollback: how much evidence
had piled up within the last window.

Memory of incidents (``--only memory``, needs ``pip install -e '.[memory]'``): simulated incidents of six
kinds in a LanceDB incident memory, each asked for its three most similar (bench/learning_memory.py);
the share whose top three hold one of the same kind, by embedding only, signature only and the hybrid.

Usage:  python bench/learning.py --seeds 100 --sweep-seeds 40 > bench/results/learning.md
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import decisions as bench
from rollwise.analysis.sequential import SequentialJudge
from rollwise.core.memory_store import MemoryReleaseHistory
from rollwise.learning.priors import LEARNABLE, fit_priors
from rollwise.simulate import Behaviour, TrafficProfile, simulate
from rollwise.spec import load_spec_text

PAST_SPEC = """
name: {name}
service: {service}
versions:
  stable: {{name: v1, address: 127.0.0.1:9001}}
  canary: {{name: v2, address: 127.0.0.1:9002}}
strategy:
  canary:
    analysis:
      interval: 1s
      alpha: 0.01
      minSamples: 100
      minStageTime: 10s
      maxStageTime: 30m
      metrics:
        - {{name: errors, type: errorRate}}
        - {{name: latency, type: latency, quantile: 0.99}}
    steps:
      - setWeight: 5
      - pause: {{duration: 10s}}
      - setWeight: 10
      - pause: {{duration: 10s}}
      - setWeight: 25
      - pause: {{duration: 10s}}
      - setWeight: 50
      - pause: {{duration: 10s}}
      - setWeight: 100
"""

NEW_ERRORS = 0.019  # the new regression: errors 0.1 % -> 2 %
NEW_SLOW = 0.02  # slow 1 % -> 3 %


def _errors(increase: float) -> Behaviour:
    return Behaviour(error_rate=bench.BASE.error_rate + increase)


def _slow(increase: float) -> Behaviour:
    return Behaviour(latency_p99_ms=bench.p99_for_exceedance(0.01 + increase))


def _releases(scale: float) -> list[tuple[str, Behaviour]]:
    """(service, canary behaviour) of every past release; ``scale`` multiplies checkout's regressions."""
    rng = random.Random(7)
    past: list[tuple[str, Behaviour]] = []
    for _ in range(10):
        past.append(("checkout", _errors(scale * NEW_ERRORS * rng.uniform(0.75, 1.3))))
        past.append(("checkout", _slow(scale * NEW_SLOW * rng.uniform(0.75, 1.25))))
    past += [("checkout", Behaviour())] * 4
    for _ in range(6):
        past.append(("search", _errors(0.004)))
        past.append(("search", _slow(0.05)))
    return past


def history(scale: float | None) -> MemoryReleaseHistory:
    """Past rollouts run through the engine, each recording what it measured when it ended."""
    releases = MemoryReleaseHistory()
    if scale is None:
        return releases
    for index, (service, canary) in enumerate(_releases(scale)):
        spec = load_spec_text(PAST_SPEC.format(name=f"{service}-{index}", service=service))
        simulate(spec, bench.BASE, canary, TrafficProfile(rps=bench.RPS), seed=50_000 + index,
                 max_duration_s=3600.0, releases=releases)
    return releases


def priors_carry(releases: MemoryReleaseHistory) -> dict[str, Any]:
    """``carry.priors`` as the engine would fix it for a new checkout rollout."""
    analysis = bench.analysis_for(bench.SCENARIOS[0], min_effect=False)
    effects = releases.past_effects(LEARNABLE)
    priors = fit_priors("checkout", analysis.metrics, effects)
    return {"metrics": {name: prior.to_dict() for name, prior in priors.items()}, "releases": len(effects)}


HISTORIES: dict[str, Callable[[], MemoryReleaseHistory]] = {
    "none": lambda: history(None),
    "resembling": lambda: history(1.0),
    "misleading (5x larger)": lambda: history(5.0),
}
CHECKED = ("healthy A/A", "errors 0.1%→2%", "slow >p99 1%→3%")


def _cell(args: tuple[str, dict[str, Any], int]) -> dict[str, Any]:
    name, priors, seeds = args
    scenario = next(s for s in bench.SCENARIOS if s.name == name)
    analysis = bench.analysis_for(scenario, min_effect=False)
    judge = SequentialJudge(analysis)
    runs = [bench.run_judge(judge, analysis, scenario, seed, step=1.0, priors=priors) for seed in range(seeds)]
    return bench.summarise(scenario, runs)


def measure(seeds: int, jobs: int) -> dict[str, Any]:
    began = time.process_time()
    carries = {label: priors_carry(make()) for label, make in HISTORIES.items()}
    cells = [(label, name) for label in carries for name in CHECKED]
    counts = {name: seeds * (3 if name == "healthy A/A" else 1) for name in CHECKED}
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        stats = list(pool.map(_cell, [(name, carries[label], counts[name]) for label, name in cells]))
    results = {cell: stat for cell, stat in zip(cells, stats, strict=True)}
    return {"carries": carries, "results": results, "counts": counts,
            "cpu_s": time.process_time() - began}


def _bound(name: str) -> tuple[float, float]:
    scenario = next(s for s in bench.SCENARIOS if s.name == name)
    assert scenario.bound is not None
    rps = bench.RPS * bench.STAGES[0] / 100.0
    share = bench.wald_bound(*scenario.bound, canary_rps=rps, alpha=bench.ALPHA / 2)[1]
    return share, bench.wald_bound(*scenario.bound, canary_rps=rps)[1]


def priors_section(seeds: int = 200, jobs: int = 2) -> str:
    """The "Priors" section of bench/results/learning.md."""
    measured = measure(seeds, jobs)
    lines = ["## Priors", "",
             f"Seeds: regressions 0..{seeds - 1}, healthy A/A 0..{measured['counts']['healthy A/A'] - 1} "
             f"(bench/decisions.py's scenarios, 200 req/s, 5 % first stage, α = 1 %, two metrics at α/2 each).",
             "", "Learned priors (per metric: rate ratio exp(mean), spread ×/÷ exp(sd), flat share):", ""]
    for label, carry in measured["carries"].items():
        parts = [f"{name}: ratio {math.exp(p['mean']):.3g} ×/÷ {math.exp(p['sd']):.2f}, flat {p['flat']:g}, "
                 f"{p['service_releases']} own / {p['pooled_releases']} all regressions"
                 for name, p in carry["metrics"].items()]
        lines.append(f"- {label}: {carry['releases']} past effects; " + ("; ".join(parts) or "flat mixture"))
    lines += ["", "| history | scenario | runs | rollback | false rollback per stage | median bad at rollback | "
              "/ Wald (α share) | / Wald (whole α) | time to decision |", "|---|---|---|---|---|---|---|---|---|"]
    for (label, name), s in measured["results"].items():
        ratio_share = ratio_whole = "–"
        if name != "healthy A/A" and s["median_bad_at_rollback"] is not None:
            share, whole = _bound(name)
            ratio_share = f"{s['median_bad_at_rollback'] / share:.2f}"
            ratio_whole = f"{s['median_bad_at_rollback'] / whole:.2f}"
        lines.append(f"| {label} | {name} | {s['runs']} | {100 * s['rollback_rate']:.1f} % | "
                     f"{100 * s['false_rollback_per_stage']:.2f} % | {bench._fmt(s['median_bad_at_rollback'], 'n')} | "
                     f"{ratio_share} | {ratio_whole} | {bench._fmt(s['median_time_to_decision_s'], 's')} |")
    lines += ["", f"CPU: {measured['cpu_s']:.0f} s in the parent (workers not counted).", ""]
    return "\n".join(lines)


SWEEP_RPS = (10.0, 100.0, 1000.0)
SWEEP_RATES = ((0.001, 0.02), (0.01, 0.04), (0.05, 0.10))  # (base, regressed canary)
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "canary.yaml"


def _sweep_cell(args: tuple[str, float, float, float, int]) -> dict[str, Any]:
    """One (traffic, base, canary) cell: every seed through the engine on the simulator."""
    text, rps, base, canary, seeds = args
    spec = load_spec_text(text)
    bads, overshoots, rules, held, stages, rolled = [], [], [], 0, 0, 0
    for seed in range(seeds):
        result = simulate(spec, Behaviour(error_rate=base), Behaviour(error_rate=canary), TrafficProfile(rps=rps),
                          seed=seed, max_duration_s=4 * 3600.0)
        stages += sum(1 for step in result.steps if 0 < step["weight"] < 100)  # judged stages
        if result.phase != "RolledBack":
            held += result.phase == "Paused"
            continue
        rolled += 1
        bads.append(float(result.canary_bad_requests))
        evidence = result.decisions[-1]["evidence"] if result.decisions else {}
        rules.append(str(evidence.get("rule")))
        culprit = [m for m in evidence.get("metrics", []) if m.get("metric") == evidence.get("culprit")]
        if culprit and culprit[0].get("statistic") and culprit[0].get("threshold"):
            overshoots.append(culprit[0]["statistic"] / culprit[0]["threshold"])
    return {"rps": rps, "base": base, "canary": canary, "runs": seeds, "rolled": rolled, "held": held,
            "stages": stages, "median_bad": statistics.median(bads) if bads else None,
            "median_overshoot": statistics.median(overshoots) if overshoots else None,
            "rules": {rule: rules.count(rule) for rule in sorted(set(rules))}}


def sweep(text: str, seeds: int, jobs: int) -> list[dict[str, Any]]:
    cells = [(text, rps, base, canary, seeds) for rps in SWEEP_RPS for base, bad in SWEEP_RATES
             for canary in (bad, base)]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(_sweep_cell, cells))


def _max_increase(text: str) -> float:
    spec = load_spec_text(text)
    analysis = spec.analysis()
    errors = [m for m in analysis.metrics if m.type == "errorRate"] if analysis else []
    return float(errors[0].maxIncrease or 0.0) if errors else 0.0


def defaults_section(spec_path: Path = EXAMPLE, seeds: int = 40, jobs: int = 2) -> str:
    """The "Defaults across traffic" section: the example spec as shipped, away from the benchmark's point."""
    text = spec_path.read_text()
    began = time.time()
    cells = sweep(text, seeds, jobs)
    delta = _max_increase(text)
    interval = load_spec_text(text).analysis().interval  # type: ignore[union-attr]
    lines = ["## Defaults across traffic", "",
             f"Spec: `{spec_path.name}` as given (interval {interval:g} s, maxIncrease {100 * delta:g} pp); "
             f"seeds 0..{seeds - 1} per cell; 5 % first stage. Wall time {time.time() - began:.0f} s.", "",
             "| req/s | errors | runs | rolled back | held at cap | median bad at rollback | / Wald (null = base) "
             "| / Wald (spec's null) | overshoot (E / bar) | rules |", "|---|---|---|---|---|---|---|---|---|---|"]
    for cell in cells:
        rps, base, canary = cell["rps"], cell["base"], cell["canary"]
        label = f"{100 * base:g} % → {100 * canary:g} %" if canary != base else f"{100 * base:g} % (healthy)"
        ratio = own = "–"
        if canary != base and cell["median_bad"] is not None:
            canary_rps = rps * bench.STAGES[0] / 100.0
            ratio = f"{cell['median_bad'] / bench.wald_bound(base, canary, canary_rps, bench.ALPHA / 2)[1]:.2f}"
            own_null = min(base + delta, canary * 0.999)
            own = f"{cell['median_bad'] / bench.wald_bound(own_null, canary, canary_rps, bench.ALPHA / 4)[1]:.2f}"
        rolled = f"{cell['rolled']}" + (f" ({100 * cell['rolled'] / max(cell['stages'], 1):.2f} %/stage)"
                                         if canary == base else "")
        overshoot = cell["median_overshoot"]
        lines.append(f"| {rps:g} | {label} | {cell['runs']} | {rolled} | {cell['held']} | "
                     f"{bench._fmt(cell['median_bad'], 'n')} | {ratio} | {own} | "
                     f"{'–' if overshoot is None else f'{overshoot:.3g}'} | "
                     + ", ".join(f"{k} {v}" for k, v in cell["rules"].items()) + " |")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--sweep-seeds", type=int, default=40, help="seeds per traffic/error-rate cell")
    parser.add_argument("--spec", type=Path, default=EXAMPLE, help="the spec the traffic sweep drives")
    parser.add_argument("--only", choices=("priors", "defaults", "risk", "memory"), default=None)
    parser.add_argument("--incidents-per-kind", type=int, default=10,
                        help="simulated incidents per kind for the memory section (six kinds, three seeds)")
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the git repository whose history the risk section backtests (default: this one)")
    args = parser.parse_args()
    command = "python bench/learning.py " + " ".join(sys.argv[1:])
    parts = ["# What past releases teach", "", f"Command: `{command}`", ""]
    if args.only in (None, "priors"):
        parts.append(priors_section(args.seeds, args.jobs))
    if args.only in (None, "defaults"):
        parts.append(defaults_section(args.spec, args.sweep_seeds, args.jobs))
    if args.only in (None, "risk"):
        import learning_risk  # bench/learning_risk.py: the change-risk backtests

        parts.append(learning_risk.risk_section(args.repo))
    if args.only in (None, "memory"):
        import learning_memory  # bench/learning_memory.py: similar-incident retrieval (needs the memory extra)

        parts.append(learning_memory.memory_section(args.incidents_per_kind))
    print("\n".join(parts))


if __name__ == "__main__":
    main()
