"""Controllers as a fleet: how many rollouts one controller keeps up with, and what a second one adds.

1,000 canary rollouts (threshold judge, analysis every 10 s, a long pause so they stay active) in a
fresh PostgreSQL database; routers and metrics are the simulator's (``simulate.SimulatedWorld``),
so the numbers are the engine, the leases and the store, not Envoy. Phase 1 runs one controller
process, phase 2 two (each its own process, sharing the rollouts under leases), each for
``--seconds`` after a warm-up. Reported per phase: rollout ticks per second, the longest gap
between two ticks of one rollout (each must be ticked within its 10 s interval), and where the CPU
went (controllers vs PostgreSQL's backends), which is what bounds a 2-core machine.

    python bench/fleet.py --rollouts 1000 --seconds 30 --output bench/results/fleet-throughput.md

``--ads`` measures the Envoy fleet over ADS instead (issue 14 part 1): 6 real Envoys in 3 regions fed by
the ADS server (in this process, on a SQLite store), one rollout routed by ``envoy-ads``; each weight
change is committed to the store and applied through the ``envoy-ads`` router, which returns once every
Envoy has ACKed it (as recorded in the store). Reported: apply -> ACK by all (median, p99) over the weight
changes and cutovers, and failed client requests from a bounded client thread sending through all six.

    python bench/fleet.py --ads --changes 50 --cutovers 5 --output bench/results/fleet-ads.md
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import os
import platform
import statistics
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


ADS_SPEC = """
name: shop
service: shop
versions:
  stable: {{name: v1, address: "{v1}"}}
  canary: {{name: v2, address: "{v2}"}}
traffic: {{router: envoy-ads}}
metrics: {{source: envoy}}
strategy:
  canary:
    steps:
      - setWeight: 0
      - pause: {{duration: 1h}}
"""


def _ads_client(urls: list[str], rate: float, stop: Any, results: Any) -> None:
    """Round-robin GETs through every Envoy on keep-alive connections, at most ``rate`` per second."""
    import httpx

    clients = [httpx.Client(base_url=u, timeout=5) for u in urls]
    sent = failed = 0
    versions: dict[str, int] = {}
    errors: list[str] = []
    started = time.monotonic()
    try:
        while not stop.is_set():
            client = clients[sent % len(clients)]
            try:
                response = client.get(f"/item/{sent}")
                if response.status_code != 200:
                    failed += 1
                    errors.append(f"HTTP {response.status_code}")
                versions[response.headers.get("x-version", "-")] = versions.get(response.headers.get("x-version",
                                                                                                      "-"), 0) + 1
            except httpx.HTTPError as exc:
                failed += 1
                errors.append(type(exc).__name__)
            sent += 1
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    finally:
        for client in clients:
            client.close()
    results.put({"sent": sent, "failed": failed, "versions": versions, "errors": errors[:5]})


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def ads_main(args: argparse.Namespace) -> None:
    import random
    import subprocess
    import tempfile
    from pathlib import Path

    here = Path(__file__).resolve().parent  # bench/envoy.py would shadow the `envoy` protos of xds-protos
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    from rollwise.core.clock import SystemClock
    from rollwise.fleet.local_envoys import start_envoy
    from rollwise.local_processes import free_port
    from rollwise.spec.loader import load_spec_text
    from rollwise.wiring import Runtime, open_store, start_ads

    tmp = Path(tempfile.mkdtemp(prefix="rollwise-bench-ads-"))
    database = _database() if args.postgres else None
    store = open_store(database or f"sqlite:///{tmp / 'store.db'}")
    runtime = Runtime(workdir=tmp / "rw", store=store)
    ads = start_ads(store, f"127.0.0.1:{free_port()}", runtime)
    services: list[tuple[int, Any]] = []
    envoys = []
    rng = random.Random(7)
    try:
        for version in ("v1", "v2"):
            port = free_port()
            services.append((port, subprocess.Popen([sys.executable, "-m", "rollwise.demo.service", "--port",
                                                     str(port), "--version", version], stdin=subprocess.DEVNULL)))
        regions = [r for r in ("eu", "us", "ap") for _ in range(2)]
        envoys = [start_envoy(tmp / "envoys", f"edge-{r}-{i % 2 + 1}", f"127.0.0.1:{ads.port}", region=r, wait=False,
                              delta=args.delta) for i, r in enumerate(regions)]
        for envoy in envoys:
            envoy.wait_live()
        time.sleep(1.0)  # the demo services are up by now
        spec = load_spec_text(ADS_SPEC.format(v1=f"127.0.0.1:{services[0][0]}", v2=f"127.0.0.1:{services[1][0]}"))
        engine = runtime.engine_for(spec, store, SystemClock())
        engine.start(spec)
        engine.tick("shop")
        engine.tick("shop")
        router = runtime.router_for(spec)
        assert router is not None
        # The client thread runs in its own process: in this one it would hold the GIL the server needs.
        stop, results = mp.Event(), mp.Queue()
        client = mp.Process(target=_ads_client, args=([e.url for e in envoys], args.rate, stop, results))
        client.start()
        time.sleep(0.5)
        plan = [("weight", rng.randrange(1, 100)) for _ in range(args.changes)]
        for i in range(args.cutovers):  # spread the cutovers among the weight changes
            plan.insert((i + 1) * len(plan) // (args.cutovers + 1), ("cutover", 0))
        timings: dict[str, list[float]] = {"weight": [], "cutover": []}
        cut_to = 100.0
        for kind, weight in plan:
            if kind == "cutover":
                weight, cut_to = cut_to, 100.0 - cut_to
            record = store.get("shop")
            route = record.route.model_copy(update={"canary_weight": float(weight),
                                                    "revision": record.route.revision + 1})
            saved = store.save(record.model_copy(update={"route": route}))
            started = time.perf_counter()
            router.apply("shop", saved.route)
            timings[kind].append(1000 * (time.perf_counter() - started))
            time.sleep(args.gap)
        time.sleep(0.5)
        stop.set()
        traffic = results.get(timeout=30)
        client.join()
    finally:
        ads.close()
        runtime.close()
        for envoy in envoys:
            envoy.stop()
        for _, process in services:
            process.terminate()
            process.wait(5)
        store.close()  # type: ignore[attr-defined]
        if database is not None:
            _drop(database)
    everything = timings["weight"] + timings["cutover"]
    flags = ((" --postgres" if args.postgres else "") + (" --delta" if args.delta else "")
             + (f" --output {args.output}" if args.output else ""))
    protocol = "incremental (Delta xDS)" if args.delta else "state of the world"
    kind = "PostgreSQL" if args.postgres else "SQLite"
    lines = [
        "## Envoy fleet over ADS: apply -> ACK by all (part 1)", "",
        f"Command: `python bench/fleet.py --ads --changes {args.changes} --cutovers {args.cutovers} "
        f"--rate {args.rate:g} --gap {args.gap:g}{flags}`", "",
        f"6 real Envoys 1.40 (`--concurrency 1`) in 3 regions on one ADS server ({protocol}, in the "
        f"process, {kind} store); {platform.machine()}, {os.cpu_count()} cores shared with other work "
        f"(load average {os.getloadavg()[0]:.1f} at the end). Each change: commit the route to the store, then "
        "`envoy-ads` router `apply`, which pokes the server and returns when every Envoy's ACK of that "
        "revision is in the store.", "",
        "| changes | n | median ms | p99 ms | max ms |", "|---|---|---|---|---|",
    ]
    for name, values in (("weight changes", timings["weight"]), ("cutovers 100/0 <-> 0/100", timings["cutover"]),
                         ("all", everything)):
        if values:
            lines.append(f"| {name} | {len(values)} | {statistics.median(values):.1f} | "
                         f"{_quantile(values, 0.99):.1f} | {max(values):.1f} |")
    slowest = ", ".join(f"{v:.0f}" for v in sorted(everything)[-5:])
    lines += ["", f"Slowest five (ms): {slowest}."]
    lines += ["", "Client thread (its own process) through all six Envoys "
              f"(keep-alive, ≤ {args.rate:g} req/s) during all "
              f"{len(everything)} changes: **{traffic.get('sent', 0)} requests, {traffic.get('failed', 0)} failed** "
              f"(versions seen: {traffic.get('versions')}; first errors: {traffic.get('errors') or 'none'})."]
    report = "\n".join(lines) + "\n"
    sys.stdout.write(report)
    if args.output:
        with open(args.output, "w") as handle:
            handle.write(report)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rollouts", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warm", type=float, default=15.0)
    parser.add_argument("--output", default=None)
    parser.add_argument("--ads", action="store_true", help="Measure the Envoy fleet over ADS instead.")
    parser.add_argument("--changes", type=int, default=50, help="--ads: weight changes")
    parser.add_argument("--cutovers", type=int, default=5, help="--ads: cutovers 100/0 <-> 0/100")
    parser.add_argument("--rate", type=float, default=200.0, help="--ads: client requests per second at most")
    parser.add_argument("--gap", type=float, default=0.05, help="--ads: seconds between two changes")
    parser.add_argument("--postgres", action="store_true", help="--ads: a fresh PostgreSQL database, not SQLite")
    parser.add_argument("--delta", action="store_true", help="--ads: the Envoys speak incremental xDS (DELTA_GRPC)")
    args = parser.parse_args()
    if args.ads:
        ads_main(args)
        return
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
