"""Controllers as a fleet: how many rollouts one controller keeps up with, and what a second one adds.

1,000 canary rollouts (threshold judge, analysis every 10 s, a long pause so they stay active) in a
fresh PostgreSQL database; routers and metrics are the simulator's (``simulate.SimulatedWorld``),
so the numbers are the engine, the leases and the store, not Envoy. Phase 1 runs one controller
process, phase 2 two (each its own process, sharing the rollouts under leases), each for
``--seconds`` after a warm-up. Reported per phase: rollout ticks per second, the longest gap
between two ticks of one rollout (each must be ticked within its 10 s interval), and where the CPU
went (controllers vs PostgreSQL's backends), which is what bounds a 2-core machine.

    python bench/fleet.py --rollouts 1000 --seconds 30 --output bench/results/fleet-throughput.md
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import os
import platform
import sys
import time
import uuid
from typing import Any

import psutil
from sqlalchemy import create_engine, text

SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
INTERVAL_S = 10.0
SPEC = """
name: {name}
service: svc-{name}
versions:
  stable: {{name: v1, address: 127.0.0.1:9001}}
  canary: {{name: v2, address: 127.0.0.1:9002}}
traffic: {{router: none}}
strategy:
  canary:
    analysis:
      judge: threshold
      interval: 10s
      adaptive: false
      maxStageTime: 2h
      metrics:
        - {{name: error-rate, type: errorRate, slo: "< 5%"}}
    steps:
      - setWeight: 5
      - pause: {{duration: 1h}}
      - setWeight: 100
"""


def _database() -> str:
    name = f"rollwise_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(SERVER, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return SERVER.rsplit("/", 1)[0] + "/" + name


def _drop(url: str) -> None:
    admin = create_engine(SERVER, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    admin.dispose()


def _simulated_controller(url: str, ident: str) -> Any:
    """A controller with simulated router and metrics (``SimulatedWorld``), the real store and leases."""
    from rollwise.analysis import judge_for
    from rollwise.controller import Controller
    from rollwise.core.clock import SystemClock
    from rollwise.core.engine import RolloutEngine
    from rollwise.simulate.world import Behaviour, SimulatedWorld
    from rollwise.wiring import Runtime, open_leases, open_store

    world = SimulatedWorld(Behaviour(), Behaviour(), seed=sum(map(ord, ident)), t0=time.time())

    class SimulatedRuntime(Runtime):
        def engine_for(self, spec: Any, store: Any, clock: Any) -> RolloutEngine:
            return RolloutEngine(store=store, clock=clock, judges=judge_for, router=world, metrics=world)

        def router_for(self, spec: Any) -> Any:
            return world

    store = open_store(url)
    return Controller(store, runtime=SimulatedRuntime(store=store), clock=SystemClock(),
                      leases=open_leases(store), identity=ident, lease_ttl=30.0)


def _controller(url: str, ident: str, warm_s: float, seconds: float, out: Any) -> None:
    """One controller process, ticking as fast as it can; reports each tick's time per rollout."""
    ctl = _simulated_controller(url, ident)
    ticked: dict[str, list[float]] = {}
    tick = ctl._tick

    def timed_tick(name: str) -> Any:
        result = tick(name)
        ticked.setdefault(name, []).append(time.monotonic())
        return result

    ctl._tick = timed_tick  # type: ignore[method-assign]
    started = time.monotonic()
    begin, end = started + warm_s, started + warm_s + seconds
    while time.monotonic() < end:
        ctl.tick_all()
    ctl.close()
    ticks, gaps = 0, []
    for times in ticked.values():
        inside = [t for t in times if begin <= t <= end]
        ticks += len(inside)
        before = [t for t in times if t < begin]
        marks = [before[-1] if before else begin, *inside, end]  # open gaps at both ends count too
        gaps.append(max(b - a for a, b in itertools.pairwise(marks)))
    out.put({"id": ident, "ticks": ticks, "max_gap": max(gaps, default=float("nan")),
             "rollouts": len(ticked)})


def _cpu(processes: list[psutil.Process]) -> float:
    total = 0.0
    for proc in processes:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def _backends(database: str) -> list[psutil.Process]:
    """PostgreSQL's backend processes serving ``database`` (their title names it), not other users' work."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(database in part for part in proc.info["cmdline"] or []) and proc.pid != os.getpid():
            found.append(proc)
    return found


def _phase(url: str, controllers: int, warm_s: float, seconds: float) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_controller, args=(url, f"bench-{controllers}-{i}", warm_s, seconds, out))
             for i in range(controllers)]
    for proc in procs:
        proc.start()
    time.sleep(warm_s)
    watched = [psutil.Process(p.pid) for p in procs]
    backends = _backends(url.rsplit("/", 1)[1])
    ctl0, pg0, load0 = _cpu(watched), _cpu(backends), os.getloadavg()[0]
    time.sleep(seconds)
    ctl1, pg1 = _cpu(watched), _cpu(backends)
    results = [out.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join()
    ticks = sum(r["ticks"] for r in results)
    return {"controllers": controllers, "ticks_per_s": ticks / seconds, "ticks": ticks,
            "max_gap": max(r["max_gap"] for r in results), "cpu_s": ctl1 - ctl0,
            "pg_cpu_s": pg1 - pg0, "load": load0, "per": results}


def _start_rollouts(url: str, count: int) -> None:
    from rollwise.core.clock import SystemClock
    from rollwise.core.engine import RolloutEngine
    from rollwise.spec import load_spec_text
    from rollwise.wiring import open_store

    store = open_store(url)
    engine = RolloutEngine(store, SystemClock())
    for index in range(count):
        engine.start(load_spec_text(SPEC.format(name=f"r{index:04d}")))
    setup = _simulated_controller(url, "bench-setup")
    setup.tick_all()  # every rollout begun (deployed, first route), so both phases time the same steady work
    setup.close()


def _report(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    one = rows[0]["ticks_per_s"]
    lines = [
        "# Controllers as a fleet: throughput", "",
        f"Command: `python bench/fleet.py --rollouts {args.rollouts} --seconds {args.seconds} "
        f"--warm {args.warm} --output {args.output}`", "",
        f"Machine: {platform.machine()}, Python {platform.python_version()}, {os.cpu_count()} cores shared with "
        "other work; PostgreSQL on the same machine. Simulated routers and metrics, real store and leases. "
        f"{args.rollouts} active canaries, analysis every {INTERVAL_S:.0f} s.", "",
        "| controllers | rollout ticks/s | vs one | longest gap between ticks of a rollout | controller CPU s "
        "| PostgreSQL CPU s | CPU ms per tick (ctl + pg) | load avg at start |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        per_tick = 1000 * (row["cpu_s"] + row["pg_cpu_s"]) / max(1, row["ticks"])
        lines.append(
            f"| {row['controllers']} | {row['ticks_per_s']:.0f} | {row['ticks_per_s'] / one:.2f}× "
            f"| {row['max_gap']:.2f} s (interval {INTERVAL_S:.0f} s) | {row['cpu_s']:.1f} | {row['pg_cpu_s']:.1f} "
            f"| {1000 * row['cpu_s'] / max(1, row['ticks']):.2f} + {1000 * row['pg_cpu_s'] / max(1, row['ticks']):.2f}"
            f" = {per_tick:.2f} | {row['load']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rollouts", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warm", type=float, default=15.0)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    url = _database()
    try:
        _start_rollouts(url, args.rollouts)
        rows = [_phase(url, 1, args.warm, args.seconds), _phase(url, 2, args.warm, args.seconds)]
    finally:
        _drop(url)
    report = _report(rows, args)
    for row in rows:
        report += f"\nper controller ({row['controllers']}): " + ", ".join(
            f"{r['id']}: {r['ticks']} ticks of {r['rollouts']} rollouts, max gap {r['max_gap']:.2f} s"
            for r in row["per"])
    sys.stdout.write(report + "\n")
    if args.output:
        with open(args.output, "w") as handle:
            handle.write(report + "\n")


if __name__ == "__main__":
    main()
