"""How fast the simulator runs the real engine: simulated seconds per wall-clock second.

Runs a healthy canary whose pauses add up to one simulated hour, with the threshold judge and
with the sequential judge, side by side, and prints the speed-up over real time for each.

    python bench/simulate.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

from rollwise.simulate import Behaviour, simulate
from rollwise.spec import load_spec_text

SPEC = """
name: hour
service: hour
versions:
  stable: {{name: v1, address: 127.0.0.1:9001}}
  canary: {{name: v2, address: 127.0.0.1:9002}}
strategy:
  canary:
    analysis:
      judge: {judge}
      interval: 10s
      adaptive: false
      maxStageTime: 20m
      metrics:
        - {{name: error-rate, type: errorRate, slo: "< 5%"}}
        - {{name: latency-p99, type: latency, slo: "< 500ms"}}
    steps:
      - setWeight: 5
      - pause: {{duration: 15m}}
      - setWeight: 10
      - pause: {{duration: 15m}}
      - setWeight: 25
      - pause: {{duration: 15m}}
      - setWeight: 50
      - pause: {{duration: 15m}}
      - setWeight: 100
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print("| judge | simulated s | wall s (median) | speed-up over real time |")
    print("|---|---|---|---|")
    for judge in ("threshold", "sequential"):
        spec = load_spec_text(SPEC.format(judge=judge))
        walls = []
        simulated = 0.0
        for seed in range(args.repeat):
            started = time.perf_counter()
            result = simulate(spec, Behaviour(), Behaviour(), seed=seed)
            walls.append(time.perf_counter() - started)
            simulated = result.duration_s
            assert result.phase == "Succeeded", result.phase
        wall = statistics.median(walls)
        print(f"| {judge} | {simulated:.0f} | {wall:.3f} | {simulated / wall:,.0f}x |")


if __name__ == "__main__":
    main()
