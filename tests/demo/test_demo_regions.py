"""``rollwise demo --scenario regions`` as a user runs it: six real Envoys on ADS in three regions, wave a
promoted, v2 failing in region b only, every region rolled back; the demo's exit code says whether that
happened, and its JSON, store and postmortem say how."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rollwise.demo.cli import DEMO_ORDER
from rollwise.wiring import open_store

pytestmark = [pytest.mark.envoy, pytest.mark.slow, pytest.mark.timeout(240)]


def test_regions_is_in_the_default_demo() -> None:
    assert "regions" in DEMO_ORDER


def test_a_failure_in_region_b_rolls_back_every_region_after_wave_a_was_promoted(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'demo.db'}"
    env = {**os.environ, "HOME": str(tmp_path)}
    for key in ("ROLLWISE_SLACK_WEBHOOK_URL", "ROLLWISE_TEAMS_WEBHOOK_URL", "ROLLWISE_WEBHOOK_URL"):
        env.pop(key, None)
    done = subprocess.run([sys.executable, "-m", "rollwise", "demo", "--scenario", "regions", "--output", "json",
                           "--store", store, "--reports", str(tmp_path / "reports"), "--max-seconds", "90"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads(done.stdout)

    assert data["phase"] == "RolledBack" and "problems" not in data
    waves = {w["name"]: w for w in data["waves"]}
    assert [w["regions"] for w in data["waves"]] == [["a"], ["b"], ["c"]]
    assert waves["a"]["canary_requests"] > 0 and waves["a"]["canary_errors"] == 0  # region a: v2 is fine
    assert waves["b"]["canary_errors"] > 0 and waves["b"]["failure"]  # region b: v2 fails, judged there
    assert waves["a"]["promoted"] and not waves["b"]["promoted"]  # a reached 100 % first
    assert waves["a"]["status"] == waves["b"]["status"] == "rolled-back"
    assert waves["c"]["status"] == "pending" and waves["c"]["canary_requests"] == 0  # never started
    assert set(data["served_after"]) == {"a", "b", "c"}
    assert all(set(versions) == {"v1"} for versions in data["served_after"].values())  # every Envoy, v1 only

    the_store = open_store(store)
    try:
        events = [e for e in the_store.events(data["name"]) if e.type == "wave"]
    finally:
        the_store.close()  # type: ignore[attr-defined]
    actions = [(e.data["wave"], e.data["action"]) for e in events]
    assert actions.index(("a", "promoted")) < actions.index(("b", "start")) < actions.index(("b", "rolled-back"))
    rollback = events[actions.index(("b", "rolled-back"))].data["evidence"]["wave"]
    assert rollback["regions"] == ["b"]  # on its own region's evidence...
    assert sorted(rollback["rolledBack"]) == ["a", "b"]  # ...and every region updated so far went back

    report = Path(data["report"]).read_text(encoding="utf-8")
    assert 'id="waves"' in report and "rolled-back" in report
