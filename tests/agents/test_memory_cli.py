"""`rollwise memory` and a rollout whose agent memory is versioned with it, run as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lancedb")

from tests.agents.test_agent_rollout_cli import _rollwise, _spec, agents  # noqa: F401
from tests.support.memory import canary_writes, rows, seeded


def memory(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rollwise", "memory", *args], capture_output=True, text=True,
                          timeout=120)


def test_a_rolled_back_agent_leaves_the_stable_memory_as_tagged(tmp_path: Path, agents: dict[str, str]) -> None:  # noqa: F811
    db = tmp_path / "memory"
    before = seeded(db, 50).to_arrow().sort_by("id")
    spec = _spec(tmp_path, agents, traffic=f"{{router: file, path: '{tmp_path / 'route.json'}'}}")
    spec.write_text(spec.read_text() + f"memory: {{uri: '{db}', table: memories, onPromote: keep}}\n")
    store = f"sqlite:///{tmp_path / 'store.db'}"
    started = _rollwise("rollout", "start", str(spec), "--max-seconds", "180", store=store)
    status = json.loads(_rollwise("rollout", "status", "agent-eval", "-o", "json", store=store).stdout)
    assert status["phase"] == "RolledBack", started.stdout[-2000:] + started.stderr[-2000:]

    import lancedb

    assert lancedb.connect(str(db)).open_table("memories").to_arrow().sort_by("id").equals(before)
    listed = memory("list", "--uri", str(db), "--json")
    assert listed.returncode == 0, listed.stderr
    found = json.loads(listed.stdout)
    assert [(e["action"], e["release"]) for e in found["journal"]] == [("begin", "v2"), ("rollback", "v1")]
    tags = {t for v in found["stable"] for t in v["tags"]}
    assert {"agent-eval.run1.stable", "agent-eval.run1.restored"} <= tags
    assert any("agent-eval.run1.final" in v["tags"] for v in found["canary"])  # readable for the postmortem


def test_list_diff_and_an_audited_restore(tmp_path: Path) -> None:
    table = seeded(tmp_path, 40)
    table.tags.create("release-v1", table.version)
    table.add(rows(range(40, 45), "later"))
    table.delete("id < 3")
    table.update(where="id = 10", values={"text": "edited"})

    diffed = memory("diff", "release-v1", str(table.version), "--uri", str(tmp_path), "--json")
    assert diffed.returncode == 0, diffed.stderr
    assert json.loads(diffed.stdout) == {"added": [40, 41, 42, 43, 44], "removed": [0, 1, 2], "changed": [10]}

    restored = memory("restore", "release-v1", "--uri", str(tmp_path), "--reason", "bad writes")
    assert restored.returncode == 0, restored.stderr
    table.checkout_latest()
    table.checkout("release-v1")
    tagged = table.to_arrow().sort_by("id")
    table.checkout_latest()
    assert table.to_arrow().sort_by("id").equals(tagged)
    entry = json.loads(memory("list", "--uri", str(tmp_path), "--json").stdout)["journal"][-1]
    assert entry["action"] == "restore" and entry["reason"] == "bad writes" and entry["tag"] == "release-v1"

    again = memory("diff", "release-v1", str(entry["before"]), "--uri", str(tmp_path), "--json")
    assert json.loads(again.stdout)["added"] == [40, 41, 42, 43, 44]  # the version before stays readable


@pytest.mark.parametrize(("args", "says"), [
    (["restore", "nope", "--reason", "x"], "TAG: memories has no tag 'nope'"),
    (["diff", "nope", "1"], "no version or tag 'nope'"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], says: str) -> None:
    seeded(tmp_path, 5)
    result = memory(*args, "--uri", str(tmp_path))
    assert result.returncode == 2 and says in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_missing_folder_is_named(tmp_path: Path) -> None:
    result = memory("list", "--uri", str(tmp_path / "absent"))
    assert result.returncode == 2 and "--uri: no memory folder" in result.stderr


def test_canary_writes_helper_makes_a_difference(tmp_path: Path) -> None:
    """The kill tests' canary writes change the canary copy (so 'before' and 'after' really differ)."""
    from rollwise.adapters.agents.lancedb_memory import LanceMemory
    from rollwise.agents.memory import Marks, MemoryLifecycle

    seeded(tmp_path, 50)
    MemoryLifecycle(LanceMemory(tmp_path)).begin(Marks("r", 1), "v2")
    canary_writes(tmp_path, 50)
    assert len(LanceMemory(tmp_path).rows("canary")) == 50 + 25 - 10


def test_the_canary_writes_stay_readable_for_the_postmortem(tmp_path: Path) -> None:
    from rollwise.adapters.agents.lancedb_memory import LanceMemory
    from rollwise.agents.memory import Marks, MemoryLifecycle

    seeded(tmp_path, 50)
    lifecycle = MemoryLifecycle(LanceMemory(tmp_path))
    lifecycle.begin(Marks("agent", 1), "v2")
    canary_writes(tmp_path, 50)
    lifecycle.rollback(Marks("agent", 1), "v1")
    diffed = memory("diff", "canary:agent.run1.base", "canary:agent.run1.final", "--uri", str(tmp_path), "--json")
    assert diffed.returncode == 0, diffed.stderr
    assert json.loads(diffed.stdout) == {"added": list(range(50, 75)), "removed": list(range(20, 30)),
                                         "changed": list(range(10))}
    unchanged = memory("diff", "agent.run1.stable", "agent.run1.restored", "--uri", str(tmp_path), "--json")
    assert json.loads(unchanged.stdout) == {"added": [], "removed": [], "changed": []}
