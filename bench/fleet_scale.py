"""1,000 rollouts on real ``rollwise controller`` processes: is each ticked within its interval, and what
does a second controller add?

Each phase gets a fresh PostgreSQL database (127.0.0.1:5432, dropped afterwards) holding ``--rollouts``
canaries (threshold judge, one analysis window per ``--interval``, 5 % then a 1 h pause, so they stay
active) with ``traffic: {router: simulated}`` and ``metrics: {source: simulated}``: the real engine,
store, leases and watch of the ``rollwise controller`` CLI, and no data plane. One or two controller
processes (``--id``, default ``--lease-ttl``) then run; after every rollout has its first window, the
windows written during ``--seconds`` are read back from the store. A window is one judged tick (collect,
judge, commit), a fixed amount of work, so windows per second is the throughput; each rollout's gap
between two windows minus its interval is how late that tick was.

Two workloads: **keep-up** (``--interval 10``: 1,000 rollouts ask for 100 windows/s; is every one on
time?) and **saturated** (``--saturate-interval 1``: 1,000/s asked, more than any controller here does, so
windows/s is what the controllers can do, 1 vs 2). CPU comes from the processes' own counters
(controllers, and the database's backends for this database), so the figures say how much of the
machine each window took, whatever else ran beside.

    python bench/fleet_scale.py --rollouts 1000 --seconds 60 --output bench/results/fleet-scale.md
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import create_engine, text

SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SPEC = """
name: {name}
service: svc-{name}
versions:
  stable: {{name: v1}}
  canary: {{name: v2}}
traffic: {{router: simulated}}
metrics: {{source: simulated}}
strategy:
  canary:
    analysis:
      judge: threshold
      interval: {interval}s
      adaptive: false
      maxStageTime: 2h
      metrics:
        - {{name: error-rate, type: errorRate, slo: "< 5%"}}
    steps:
      - setWeight: 5
      - pause: {{duration: 1h}}
      - setWeight: 100
"""


@dataclass
class Phase:
    workload: str
    controllers: int
    interval: float
    seconds: float = 0.0
    windows: int = 0
    lags: list[float] = field(default_factory=list)
    overdue: int = 0  # rollouts whose next window was late when the phase ended
    missed: int = 0  # rollouts with no window at all during the phase
    ctl_cpu: float = 0.0
    pg_cpu: float = 0.0
    load: float = 0.0
    warm_s: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def per_s(self) -> float:
        return self.windows / self.seconds if self.seconds else 0.0


def _admin() -> Any:
    return create_engine(SERVER, isolation_level="AUTOCOMMIT")


def _database() -> str:
    name = f"rollwise_scale_{uuid.uuid4().hex[:8]}"
    admin = _admin()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return SERVER.rsplit("/", 1)[0] + "/" + name


def _drop(url: str) -> None:
    admin = _admin()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    admin.dispose()


def _create_rollouts(url: str, count: int, interval: float) -> None:
    from rollwise.core.clock import SystemClock
    from rollwise.core.engine import RolloutEngine
    from rollwise.spec import load_spec_text
    from rollwise.wiring import open_store

    store = open_store(url)
    engine = RolloutEngine(store, SystemClock())
    for index in range(count):
        engine.start(load_spec_text(SPEC.format(name=f"r{index:04d}", interval=f"{interval:g}")))
    store.close()  # type: ignore[attr-defined]


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
    """PostgreSQL's backends serving ``database`` (the process title names it), not other users' work."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(database in part for part in proc.info["cmdline"] or []) and proc.pid != os.getpid():
                found.append(proc)
        except psutil.Error:
            pass
    return found


def _windows(conn: Any) -> dict[str, list[float]]:
    ends: dict[str, list[float]] = {}
    for rollout, end in conn.execute(text('SELECT rollout, "end" FROM windows ORDER BY rollout, "end"')):
        ends.setdefault(rollout, []).append(end)
    return ends


def _wait_first_windows(conn: Any, count: int, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if conn.execute(text("SELECT count(DISTINCT rollout) FROM windows")).scalar_one() >= count:
            return
        time.sleep(1.0)
    raise SystemExit(f"not every rollout had a window within {limit_s:.0f} s of warm-up")


def _run_phase(phase: Phase, rollouts: int, seconds: float, logs: Path) -> Phase:
    url = _database()
    procs: list[subprocess.Popen[bytes]] = []
    db = create_engine(url)
    try:
        _create_rollouts(url, rollouts, phase.interval)
        env = {**os.environ, "ROLLWISE_STORE": url}
        started = time.monotonic()
        for index in range(phase.controllers):
            log = (logs / f"{phase.workload}-{phase.controllers}-{index}.log").open("wb")
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "rollwise", "controller", "--id", f"scale-{phase.controllers}-{index}"],
                env=env, stdout=log, stderr=subprocess.STDOUT))
        with db.connect() as conn:
            _wait_first_windows(conn, rollouts, limit_s=600.0)
        phase.warm_s = time.monotonic() - started
        watched = [psutil.Process(p.pid) for p in procs]
        backends = _backends(url.rsplit("/", 1)[1])
        ctl0, pg0, phase.load = _cpu(watched), _cpu(backends), os.getloadavg()[0]
        begin = time.time()
        time.sleep(seconds)
        end = time.time()
        phase.ctl_cpu, phase.pg_cpu = _cpu(watched) - ctl0, _cpu(backends) - pg0
        with db.connect() as conn:
            ends = _windows(conn)
        _score(phase, ends, begin, end)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        db.dispose()
        _drop(url)
    for index in range(phase.controllers):
        text_ = (logs / f"{phase.workload}-{phase.controllers}-{index}.log").read_text(errors="replace")
        phase.errors += [line for line in text_.splitlines() if "Traceback" in line or "ERROR" in line][:3]
    return phase


def _score(phase: Phase, ends: dict[str, list[float]], begin: float, end: float) -> None:
    """Windows ended in [begin, end); each one's lateness (gap to the previous window minus the interval),
    and each rollout's open gap at the end when it is already past its interval (late, still waiting)."""
    phase.seconds = end - begin
    for times in ends.values():
        inside = [t for t in times if begin <= t < end]
        before = [t for t in times if t < begin]
        phase.windows += len(inside)
        if not inside:
            phase.missed += 1
        marks = ([before[-1]] if before else []) + inside
        phase.lags += [b - a - phase.interval for a, b in itertools.pairwise(marks)]
        if marks and end - marks[-1] > phase.interval:
            phase.overdue += 1
            phase.lags.append(end - marks[-1] - phase.interval)


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _report(phases: list[Phase], args: argparse.Namespace) -> str:
    lines = [
        "# 1,000 rollouts on real controller processes", "",
        f"Command: `python bench/fleet_scale.py --rollouts {args.rollouts} --seconds {args.seconds:g} "
        f"--interval {args.interval:g} --saturate-interval {args.saturate_interval:g}`", "",
        f"Machine: {platform.machine()}, Python {platform.python_version()}, {os.cpu_count()} cores shared with "
        "other sessions and with PostgreSQL. `rollwise controller` processes (default --lease-ttl 10, --poll 0.25) "
        f"on a fresh PostgreSQL database per row; {args.rollouts} canaries, router and metrics simulated. "
        "A window = one judged tick (collect, judge, commit). Lateness = gap between two windows of a rollout "
        "minus its interval (a rollout still waiting past its interval at the end counts with its wait so far).",
        "",
        "| workload | controllers | windows/s (asked) | vs one | late p50 / p99 / max s | rollouts late at end "
        "| controller CPU s | PostgreSQL CPU s | CPU ms per window (ctl + pg) | load avg | warm-up s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    first: dict[str, float] = {}
    for p in phases:
        first.setdefault(p.workload, p.per_s)
        ctl_ms, pg_ms = (1000 * p.ctl_cpu / max(1, p.windows), 1000 * p.pg_cpu / max(1, p.windows))
        lines.append(
            f"| {p.workload} (interval {p.interval:g} s) | {p.controllers} | {p.per_s:.1f} "
            f"({args.rollouts / p.interval:.0f}) | {p.per_s / first[p.workload]:.2f}× "
            f"| {_quantile(p.lags, 0.5):.2f} / {_quantile(p.lags, 0.99):.2f} / {max(p.lags, default=float('nan')):.2f} "
            f"| {p.overdue} ({p.missed} without a window) | {p.ctl_cpu:.1f} | {p.pg_cpu:.1f} "
            f"| {ctl_ms:.2f} + {pg_ms:.2f} = {ctl_ms + pg_ms:.2f} | {p.load:.1f} | {p.warm_s:.0f} |")
    for p in phases:
        if p.errors:
            lines.append(f"\nerrors in the {p.workload}/{p.controllers} logs: " + " | ".join(p.errors))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rollouts", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=10.0, help="keep-up workload's analysis interval")
    parser.add_argument("--saturate-interval", type=float, default=1.0,
                        help="saturated workload's interval; 0 skips it")
    parser.add_argument("--controllers", default="1,2", help="controller counts to run, e.g. 1,2")
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    counts = [int(c) for c in args.controllers.split(",")]
    workloads = [("keep-up", args.interval)]
    if args.saturate_interval > 0:
        workloads.append(("saturated", args.saturate_interval))
    phases = []
    with tempfile.TemporaryDirectory(prefix="rollwise-scale-") as tmp:
        for workload, interval in workloads:
            for count in counts:
                phase = _run_phase(Phase(workload, count, interval), args.rollouts, args.seconds, Path(tmp))
                sys.stderr.write(f"{workload} x{count}: {phase.per_s:.1f} windows/s\n")
                phases.append(phase)
    report = _report(phases, args)
    sys.stdout.write(report)
    if args.output:
        Path(args.output).write_text(report)


if __name__ == "__main__":
    main()
