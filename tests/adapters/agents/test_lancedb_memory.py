"""The memory lifecycle on a real LanceDB folder: rollback row for row, promotion policies, kills."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("lancedb")

from tests.support.memory import canary_writes, rows, seeded

from rollwise.adapters.agents.lancedb_memory import LanceMemory
from rollwise.agents.memory import Marks, MemoryLifecycle

WORKER = Path(__file__).parents[2] / "support" / "memory.py"
MARKS = Marks("agent", 1)


def arrow(folder: Path, table: str = "memories", ref: str | int | None = None) -> Any:
    import lancedb

    handle = lancedb.connect(str(folder)).open_table(table)
    if ref is not None:
        handle.checkout(ref)
    return handle.to_arrow().sort_by("id")


def begun(folder: Path, size: int = 200, policy: str = "keep") -> MemoryLifecycle:
    """A rollout that began, whose canary wrote to its copy and whose stable wrote one row meanwhile."""
    seeded(folder, size)
    lifecycle = MemoryLifecycle(LanceMemory(folder), policy)  # type: ignore[arg-type]
    assert lifecycle.begin(MARKS, "v2")
    canary_writes(folder, size)
    import lancedb

    lancedb.connect(str(folder)).open_table("memories").add(rows(range(10_000, 10_001), "stable-late"))
    return lifecycle


def test_rollback_restores_the_tagged_stable_row_for_row_and_keeps_the_canary_readable(tmp_path: Path) -> None:
    before = seeded(tmp_path / "ref", 200).to_arrow().sort_by("id")
    lifecycle = begun(tmp_path / "db")
    assert not lifecycle.begin(MARKS, "v2")  # a re-applied route does not copy again
    canary = arrow(tmp_path / "db", "memories-canary")
    assert canary.num_rows == 290 and "CANARY-EDITED" in canary.column("text").to_pylist()

    assert lifecycle.rollback(MARKS, "v1")
    assert arrow(tmp_path / "db").equals(before)
    assert arrow(tmp_path / "db", ref=MARKS.stable).equals(before)
    assert arrow(tmp_path / "db", "memories-canary", MARKS.final).equals(canary)  # the postmortem's view
    assert arrow(tmp_path / "db", ref=MARKS.stable_before_end).num_rows == 201  # stable's late write kept by tag
    version = LanceMemory(tmp_path / "db").versions("stable")[-1].version
    assert not lifecycle.rollback(MARKS, "v1")  # idempotent: no second restore
    assert LanceMemory(tmp_path / "db").versions("stable")[-1].version == version
    assert [e["action"] for e in LanceMemory(tmp_path / "db").journal()] == ["begin", "rollback"]


def test_a_rollback_before_the_copy_was_made_still_restores(tmp_path: Path) -> None:
    """Killed between tagging the stable and copying it, then rolled back: the restore needs no canary."""
    before = seeded(tmp_path, 30).to_arrow().sort_by("id")
    memory = LanceMemory(tmp_path)
    memory.tag("stable", MARKS.stable)
    import lancedb

    lancedb.connect(str(tmp_path)).open_table("memories").delete("id < 5")
    assert MemoryLifecycle(memory).rollback(MARKS, "v1")
    assert arrow(tmp_path).equals(before)
    assert not MemoryLifecycle(memory).promote(MARKS, "v2")  # nothing to apply: the canary never had a copy


@pytest.mark.parametrize("policy", ["keep", "replay", "discard"])
def test_promotion_applies_the_canary_writes_by_policy(tmp_path: Path, policy: str) -> None:
    lifecycle = begun(tmp_path, policy=policy)
    canary = arrow(tmp_path, "memories-canary")
    stable = arrow(tmp_path)
    assert lifecycle.promote(MARKS, "v2")
    live = arrow(tmp_path)
    if policy == "keep":
        assert live.equals(canary)
    elif policy == "discard":
        assert live.equals(stable)
    else:  # replay: the canary's new ids are appended; stable's rows (and its late write) are untouched
        assert live.num_rows == 201 + 100
        assert live.filter(live.column("id").to_numpy() < 200).equals(stable.slice(0, 200))
        assert set(live.column("id").to_pylist()) == set(stable.column("id").to_pylist()) | set(range(200, 300))
    assert not lifecycle.promote(MARKS, "v2")
    assert arrow(tmp_path).equals(live)
    assert LanceMemory(tmp_path).journal()[-1] | {"at": 0} == {
        "at": 0, "action": "promote", "rollout": "agent", "run": 1, "release": "v2", "policy": policy,
        "stable": LanceMemory(tmp_path).tags("stable")[MARKS.promoted],
        "canary": LanceMemory(tmp_path).tags("canary")[MARKS.final]}


def _kill_at_random(folder: Path, action: str, policy: str, delay: float) -> tuple[bool, float]:
    """Run one step in a subprocess, SIGKILL it ``delay`` seconds after it is ready (unless it ended).

    Returns whether it was still running when killed, and how long after ``ready`` it was killed or ended.
    """
    child = subprocess.Popen([sys.executable, str(WORKER), str(folder), action, policy],
                             stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[3])
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    ready = time.monotonic()
    if delay == float("inf"):  # the reference run: how long the step takes, from ready to done
        assert child.stdout.readline().strip() == "done"
        span = time.monotonic() - ready
        child.wait(timeout=30)
        child.stdout.close()
        return False, span
    try:
        child.wait(timeout=delay)
        alive = False
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        alive = True
    child.stdout.close()
    return alive, time.monotonic() - ready


@pytest.mark.slow  # 33 kills, each a fresh Python that imports LanceDB: about 4 minutes on a busy 2-core machine
@pytest.mark.parametrize(("action", "policy"), [("rollback", "keep"), ("promote", "keep"), ("promote", "replay")])
def test_a_sigkill_at_any_moment_leaves_the_before_or_the_after_version(tmp_path: Path, action: str,
                                                                       policy: str) -> None:
    size = 20_000  # big enough that a copy or merge takes a while to write
    template = tmp_path / "template"
    lifecycle = begun(template, size, policy)
    before = arrow(template)
    done = tmp_path / "done"
    shutil.copytree(template, done)
    _, span = _kill_at_random(done, action, policy, float("inf"))  # ran to the end: the after version
    after = arrow(done)
    assert not after.equals(before)
    rng = random.Random(16)
    alive = 0
    landed = {"before": 0, "after": 0}
    for attempt in range(11):
        folder = tmp_path / f"kill{attempt}"
        shutil.copytree(template, folder)
        alive += _kill_at_random(folder, action, policy, rng.uniform(0, span))[0]
        seen = arrow(folder)
        assert seen.equals(before) or seen.equals(after), f"kill {attempt}: a mix of versions"
        landed["before" if seen.equals(before) else "after"] += 1
        getattr(lifecycle.__class__(LanceMemory(folder), lifecycle.on_promote), action)(MARKS, "v")  # the re-run
        assert arrow(folder).equals(after), f"kill {attempt}: the re-run did not complete the step"
    print(f"{action}/{policy}: {alive} of 11 kills landed before the worker exited (span {span:.2f} s); "
          f"the table was left at the before version {landed['before']} times, the after {landed['after']}")
    assert alive >= 3, "too few kills landed while the step was running"
