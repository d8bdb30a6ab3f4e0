"""``rollwise controllers``: the controllers sharing a store, alive or gone, and the leases each holds."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from rollwise.core.clock import SystemClock
from rollwise.core.engine import RolloutEngine
from rollwise.spec.loader import load_spec_text
from rollwise.wiring import open_leases, open_store
from support.specs import SHOP

STEPS = "  canary:\n    steps:\n      - setWeight: 10\n      - pause: {duration: 1h}\n"


def _controllers(store_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rollwise", "controllers", "--store", store_url, *args],
                          capture_output=True, text=True, timeout=60)


def test_lists_live_and_gone_controllers_with_their_leases(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'r.db'}"
    store = open_store(store_url)
    RolloutEngine(store, SystemClock()).start(load_spec_text(SHOP + STEPS))
    leases = open_leases(store)
    assert leases is not None
    leases.claim("gone-ctl", time.time() - 60, 10)  # last heard of a minute ago, its lease long expired
    held = leases.claim("live-ctl", time.time(), 600)  # alive however slowly the CLI starts
    assert set(held) == {"shop"}

    rows = json.loads(_controllers(store_url, "--output", "json").stdout)
    assert [(r["id"], r["alive"]) for r in rows] == [("live-ctl", True), ("gone-ctl", False)]
    assert [(lease["rollout"], lease["token"]) for lease in rows[0]["leases"]] == [("shop", held["shop"])]
    assert held["shop"] == 2  # taken from gone-ctl (token 1): one more
    text = _controllers(store_url).stdout
    assert "live-ctl" in text and "alive" in text and f"shop#{held['shop']}" in text and "gone" in text


def test_a_store_that_does_not_exist_is_left_uncreated(tmp_path: Path) -> None:
    result = _controllers(f"sqlite:///{tmp_path / 'none.db'}")
    assert result.returncode == 0 and "no controllers" in result.stdout
    assert not (tmp_path / "none.db").exists()


def test_a_lease_shorter_than_the_poll_is_refused_in_one_line(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'r.db'}"
    result = subprocess.run([sys.executable, "-m", "rollwise", "controller", "--store", store,
                             "--poll", "1", "--lease-ttl", "0.5"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: --lease-ttl must be positive and longer than --poll (1.0s)"]
