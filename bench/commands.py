"""Command -> route confirmed by Envoy, with a separate ``rollwise controller`` process running.

    .venv/bin/python bench/commands.py [--samples 40] [--poll 0.25] [--out bench/results/envoy.md]

A person's command only changes the store; the controller that owns Envoy notices on its next
pass (``Store.due``), applies the route and waits for Envoy's admin API to show it. Measured from
just before the command is committed (the code ``rollwise rollout abort|promote`` runs, without the
CLI's own start-up) to the moment Envoy's ``/config_dump`` serves the new weights, polled every
5 ms. Half the samples abort a canary at 10 % (one tick), half promote one from a pause to its next
weight (two ticks in the same controller pass: the step, then the weight). Real demo services behind Envoy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from rollwise.core.clock import SystemClock
from rollwise.core.engine import RolloutEngine
from rollwise.demo.load import quantile
from rollwise.envoy_names import cluster_name
from rollwise.local_processes import free_port
from rollwise.spec.loader import load_spec_text
from rollwise.wiring import open_store

SECTION = "## Command -> data plane confirmed (`bench/commands.py`)"
SPEC = """
name: {name}
service: shop
versions:
  stable: {{name: v1, address: "{v1}"}}
  canary: {{name: v2, address: "{v2}"}}
traffic: {{router: envoy, listen: "127.0.0.1:{listen}", adminPort: {admin}}}
strategy:
  canary:
    steps:
{steps}
"""


def start_service(version: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "rollwise.demo.service", "--port", str(port), "--version",
                                version], stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                return process, f"127.0.0.1:{port}"
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("demo service did not start")


def canary_weight(admin: str, rollout: str) -> float | None:
    """The canary's percent in the rollout's default route, as Envoy serves it now."""
    dump: dict[str, Any] = httpx.get(f"{admin}/config_dump", params={"resource": "dynamic_route_configs"},
                                     timeout=2.0).json()
    for config in dump.get("configs", []):
        for host in config.get("route_config", {}).get("virtual_hosts", []):
            if host["name"] != rollout:
                continue
            action = next(r["route"] for r in host["routes"] if r.get("name") == "default")
            clusters = {c["name"]: int(c.get("weight", 0)) for c in action.get("weighted_clusters", {}).get(
                "clusters", [])}
            return clusters.get(cluster_name(rollout, "v2"), 0) / 100.0
    return None


def wait_for(admin: str, rollout: str, weight: float, timeout: float = 30.0) -> float:
    """Seconds (perf_counter) at which Envoy first served ``weight`` for ``rollout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if canary_weight(admin, rollout) == weight:
                return time.perf_counter()
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.005)
    raise RuntimeError(f"{rollout}: Envoy never served {weight}%")


def measure(samples: int, poll: float, folder: Path) -> dict[str, list[float]]:
    services = [start_service("v1"), start_service("v2")]
    store_url = f"sqlite:///{folder / 'bench.db'}"
    listen, admin_port = free_port(), free_port()
    admin = f"http://127.0.0.1:{admin_port}"
    env = {**os.environ, "HOME": str(folder), "ROLLWISE_STORE": store_url}
    log = open(folder / "controller.log", "wb")  # noqa: SIM115 - closed with the controller
    controller = subprocess.Popen([sys.executable, "-m", "rollwise", "controller", "--poll", str(poll)], env=env,
                                  stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    store = open_store(store_url)
    engine = RolloutEngine(store=store, clock=SystemClock())
    promotes = samples - samples // 2
    weights = [10 + 80 * i / max(1, promotes) for i in range(promotes + 1)]

    def start(name: str, steps: list[float]) -> None:
        lines = "\n".join(f"      - setWeight: {w:g}\n      - pause: {{duration: 1h}}" for w in steps)
        spec = load_spec_text(SPEC.format(name=name, v1=services[0][1], v2=services[1][1], listen=listen,
                                          admin=admin_port, steps=lines))
        engine.start(spec, actor="bench")
        wait_for(admin, name, steps[0], timeout=120.0)

    timings: dict[str, list[float]] = {"abort": [], "promote": []}
    try:
        start("climb", weights)
        for index in range(1, len(weights)):
            began = time.perf_counter()
            engine.command("climb", "promote", actor="bench")
            timings["promote"].append((wait_for(admin, "climb", weights[index]) - began) * 1000)
        for index in range(samples // 2):
            name = f"stop{index}"
            start(name, [10.0])
            began = time.perf_counter()
            engine.command(name, "abort", actor="bench")
            timings["abort"].append((wait_for(admin, name, 0.0) - began) * 1000)
    except Exception:
        sys.stderr.write((folder / "controller.log").read_text()[-3000:])
        raise
    finally:
        controller.send_signal(2)  # Ctrl-C: the controller stops its Envoy
        try:
            controller.wait(timeout=20)
        except subprocess.TimeoutExpired:
            controller.kill()
            controller.wait()
        log.close()
        for process, _ in services:
            process.terminate()
            process.wait(timeout=5)
    return timings


def report(timings: dict[str, list[float]], samples: int, poll: float) -> str:
    lines = [
        SECTION,
        "",
        f"Command: `.venv/bin/python bench/commands.py --samples {samples} --poll {poll:g} "
        "--out bench/results/envoy.md`  ",
        "A separate `rollwise controller` process owns Envoy; the command is committed in the bench process "
        "(CLI start-up excluded); the clock stops when Envoy's `/config_dump` serves the new weights. "
        "Machine: 2 cores shared with other jobs; load average at the end: "
        + " / ".join(f"{x:.1f}" for x in os.getloadavg()),
        "",
        f"| command | samples | median ms | p99 ms | max ms | engine ticks (one controller pass, poll {poll:g} s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    passes = {"abort": 1, "promote": 2}
    everything = [t for values in timings.values() for t in values]
    for name, values in (*timings.items(), ("all", everything)):
        lines.append(f"| {name} | {len(values)} | {statistics.median(values):.0f} | {quantile(values, 0.99):.0f} "
                     f"| {max(values):.0f} | {passes.get(name, '1-2')} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--poll", type=float, default=0.25)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rollwise-bench-") as folder:
        timings = measure(args.samples, args.poll, Path(folder))
    text = report(timings, args.samples, args.poll)
    print(text)
    if args.out:
        existing = args.out.read_text() if args.out.exists() else ""
        kept = existing.split(SECTION)[0].rstrip()
        args.out.write_text((kept + "\n\n" if kept else "") + text)


if __name__ == "__main__":
    main()
