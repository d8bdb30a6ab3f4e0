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

Usage:  python bench/learning.py --seeds 200 > bench/results/learning.md   (writes the Priors section)
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
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
        parts = [f"{name} ~{statistics.fmean([p['mean']]):.2f} ln → ratio {2.718281828 ** p['mean']:.3g} "
                 f"×/÷ {2.718281828 ** p['sd']:.2f}, {p['service_releases']} own / {p['pooled_releases']} all"
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    command = "python bench/learning.py " + " ".join(sys.argv[1:])
    print("\n".join(["# What past releases teach", "", f"Command: `{command}`", "",
                     priors_section(args.seeds, args.jobs)]))


if __name__ == "__main__":
    main()
