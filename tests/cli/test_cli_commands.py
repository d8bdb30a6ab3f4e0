"""Manual controls through the CLI, with a separate ``rollwise controller`` driving the rollout:
``approve`` answers only an approval gate, and history says who did what (issue 11, item 6)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.common import REPO
from support.specs import SHOP

SPEC = SHOP + """
  canary:
    steps:
      - setWeight: 10
      - pause: {duration: 1h}
      - setWeight: 50
      - pause: {untilApproved: true}
      - setWeight: 80
"""


def rollwise(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rollwise", *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO)


def status(store: str) -> dict[str, Any]:
    result = rollwise("rollout", "status", "shop", "--store", store, "-o", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def wait_for(store: str, check: Callable[[dict[str, Any]], bool], timeout_s: float = 300.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        current = status(store)
        if check(current):
            return current
        assert time.monotonic() < deadline, current
        time.sleep(0.5)


def history(store: str) -> list[dict[str, Any]]:
    result = rollwise("history", "shop", "--store", store, "-o", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


@pytest.fixture
def controlled(tmp_path: Path) -> Iterator[str]:
    """A store with the rollout started (--no-wait) and a separate controller process driving it."""
    store = f"sqlite:///{tmp_path / 'commands.db'}"
    spec = tmp_path / "shop.yaml"
    spec.write_text(SPEC)
    started = rollwise("rollout", "start", str(spec), "--no-wait", "--store", store)
    assert started.returncode == 0, started.stderr
    controller = subprocess.Popen([sys.executable, "-m", "rollwise", "controller", "--store", store,
                                   "--poll", "0.05", "--max-seconds", "900"], cwd=REPO,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield store
    finally:
        controller.terminate()
        try:
            controller.wait(timeout=10)
        except subprocess.TimeoutExpired:
            controller.kill()
            controller.wait(timeout=5)


@pytest.mark.timeout(900)
def test_approve_answers_only_a_gate_and_history_names_who_did_what(controlled: str) -> None:
    store = controlled
    wait_for(store, lambda s: s["step"] == 1 and s["canary_weight"] == 10)

    refused = rollwise("rollout", "approve", "shop", "--store", store, "--actor", "alice")
    assert refused.returncode == 1 and "not waiting for approval" in refused.stderr
    assert rollwise("rollout", "pause", "shop", "--store", store, "--actor", "bob", "-r", "incident").returncode == 0
    refused = rollwise("rollout", "approve", "shop", "--store", store, "--actor", "alice")
    assert refused.returncode == 1 and "approve answers only an approval gate" in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert status(store)["phase"] == "Paused" and status(store)["paused_reason"] == "paused by bob (incident)"

    assert rollwise("rollout", "resume", "shop", "--store", store, "--actor", "bob").returncode == 0
    promoted = rollwise("rollout", "promote", "shop", "--store", store, "--actor", "alice", "-r", "looks good")
    assert promoted.returncode == 0, promoted.stderr
    wait_for(store, lambda s: s["phase"] == "Paused" and s["step"] == 3)
    approved = rollwise("rollout", "approve", "shop", "--store", store, "--actor", "carol", "-r", "qa ok")
    assert approved.returncode == 0, approved.stderr
    wait_for(store, lambda s: s["phase"] == "Succeeded")

    steps = {e["data"]["step"]: e for e in history(store) if e["type"] == "step"}
    assert (steps[1]["message"], steps[1]["actor"]) == ("step 1 done: promoted by alice (looks good)", "alice")
    assert (steps[3]["message"], steps[3]["actor"]) == ("step 3 done: approved by carol (qa ok)", "carol")
    assert (steps[2]["message"], steps[2]["actor"]) == ("weight 10% -> 50% (v2)", "engine")
    commands = [(e["actor"], e["data"]["command"]) for e in history(store) if e["type"] == "command"]
    assert commands == [("bob", "pause"), ("bob", "resume"), ("alice", "promote"), ("carol", "approve")]
