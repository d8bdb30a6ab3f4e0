"""Region waves as users run them: `validate`, `simulate --region-fault`, and a real `controller` process
driving a gated wave over the file router while a person approves from another CLI process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from support.common import REPO
from support.specs import simulated_waves_spec


def rollwise(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rollwise", *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO, env=env)


SIMULATED = simulated_waves_spec(("one", "[a]"), ("two", "[b, c]"))


def test_simulate_a_fault_in_one_region_rolls_every_wave_back(tmp_path: Path) -> None:
    spec = tmp_path / "waves.yaml"
    spec.write_text(SIMULATED)
    done = rollwise("simulate", str(spec), "--region-fault", "b=0.05", "--output", "json", "--seed", "2")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["phase"] == "RolledBack"
    assert [(w["name"], w["status"], w["weight"]) for w in result["waves"]] == [
        ("one", "rolled-back", 0), ("two", "rolled-back", 0)]
    assert result["waves"][1]["failure"] and not result["waves"][0]["failure"]

    healthy = json.loads(rollwise("simulate", str(spec), "--output", "json").stdout)
    assert healthy["phase"] == "Succeeded" and {w["status"] for w in healthy["waves"]} == {"promoted"}

    refused = rollwise("simulate", str(spec), "--region-fault", "z=0.05")
    assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
        "error: --region-fault: region 'z' is in no wave of the spec"]


def test_validate_names_the_wave_field(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(SIMULATED.replace("regions: [b, c]", "regions: [b, a]"))
    done = rollwise("validate", str(spec))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "strategy.canary.waves.1.regions" in lines[0] and "'a'" in lines[0]
    assert "Traceback" not in done.stderr


FILE_ROUTED = """
name: shop
service: shop
versions:
  stable: {{name: v1, address: "127.0.0.1:9"}}
  canary: {{name: v2, address: "127.0.0.1:10"}}
traffic: {{router: file, path: "{path}"}}
strategy:
  canary:
    steps:
      - setWeight: 30
      - pause: {{duration: 1s}}
    waves:
      - {{name: one, regions: [a]}}
      - {{name: two, regions: [b, c], parallelism: 1, gate: {{untilApproved: true}}}}
"""


@pytest.mark.timeout(300)
def test_a_controller_process_drives_waves_and_a_person_approves_the_gated_one(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'r.db'}"
    route = tmp_path / "route.json"
    spec = tmp_path / "shop.yaml"
    spec.write_text(FILE_ROUTED.format(path=route))
    env = {**os.environ, "HOME": str(tmp_path), "ROLLWISE_STORE": store}

    def status() -> dict[str, Any]:
        done = rollwise("rollout", "status", "shop", "--output", "json", env=env)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    def until(check: Any, limit: float = 90.0) -> dict[str, Any]:
        deadline = time.monotonic() + limit
        while True:
            current = status()
            if check(current) or time.monotonic() > deadline:
                return current
            time.sleep(0.5)

    assert rollwise("rollout", "start", str(spec), "--no-wait", env=env).returncode == 0
    controller = subprocess.Popen([sys.executable, "-m", "rollwise", "controller", "--poll", "0.1"], cwd=REPO,
                                  env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
    try:
        gated = until(lambda s: s["phase"] == "Paused")
        assert [w["status"] for w in gated["waves"]] == ["promoted", "waiting-approval"]
        assert json.loads(route.read_text())["region_weights"] == {"a": 100.0, "b": 0.0, "c": 0.0}
        text = rollwise("rollout", "status", "shop", env=env).stdout
        assert "waiting-approval" in text and "promoted" in text  # the per-wave table

        approved = rollwise("rollout", "approve", "shop", "--reason", "europe looks fine", env=env)
        assert approved.returncode == 0, approved.stderr
        final = until(lambda s: s["phase"] == "Succeeded")
        assert final["phase"] == "Succeeded"
        assert [w["status"] for w in final["waves"]] == ["promoted", "promoted"]
        until(lambda s: s["route_applied_revision"] == s["route_revision"], limit=30)
    finally:
        controller.terminate()
        controller.wait(timeout=30)
    applied = [json.loads(line)["region_weights"] for line in (tmp_path / "route.json.log").read_text().splitlines()]
    distinct = [w for i, w in enumerate(applied) if i == 0 or w != applied[i - 1]]
    assert distinct == [
        {},  # deployed, nothing routed yet
        {"a": 0.0, "b": 0.0, "c": 0.0}, {"a": 30.0, "b": 0.0, "c": 0.0},  # wave one
        {"a": 100.0, "b": 0.0, "c": 0.0},  # promoted; wave two waits for approval
        {"a": 100.0, "b": 30.0, "c": 0.0},  # one region at a time
        {"a": 100.0, "b": 100.0, "c": 0.0}, {"a": 100.0, "b": 100.0, "c": 30.0},
        {},  # every wave promoted: every region on the canary
    ]
    assert json.loads(route.read_text())["canary_weight"] == 100
    events = json.loads(rollwise("history", "shop", "--output", "json", env=env).stdout)
    approval = next(e for e in events if e["type"] == "wave" and e["data"]["action"] == "start"
                    and e["data"]["wave"] == "two")
    assert "approved by" in approval["message"]
    explained = rollwise("explain", "shop", env=env)
    assert "Waves:" in explained.stdout and "Rule: wave-promoted" in explained.stdout
