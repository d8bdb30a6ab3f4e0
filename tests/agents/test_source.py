"""The evaluation hook: each collected window carries one batch per evaluation, built by the wiring."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollwise.agents.runner import Batch, draw_tasks
from rollwise.agents.suite import parse_suite
from rollwise.core.model import WindowQuery
from rollwise.core.protocols import MetricsError
from rollwise.spec import load_spec_text
from rollwise.wiring import Runtime
from support.fake_agent import start_in_thread  # type: ignore[import-not-found]

SPEC = """
name: agent
service: agent
versions:
  stable: {{name: v1, address: "{stable}"}}
  canary: {{name: v2, address: "{canary}"}}
traffic: {{router: none}}
strategy:
  canary:
    steps: [{{setWeight: 10}}]
    analysis:
      evaluations:
        - {{name: qa, suite: "{suite}", runs: 2, tasksPerLook: 6, endpoint: {{protocol: {protocol}, path: {path}}}}}
"""


@pytest.fixture
def agents() -> Iterator[tuple[str, str]]:
    good, bad = start_in_thread(rate=1.0, seed=1), start_in_thread(rate=0.0, seed=2)
    try:
        yield f"127.0.0.1:{good.server_address[1]}", f"127.0.0.1:{bad.server_address[1]}"
    finally:
        for server in (good, bad):
            server.shutdown()
            server.server_close()


def _query(start: float = 0.0) -> WindowQuery:
    return WindowQuery(rollout="agent", service="agent", baseline_version="v1", canary_version="v2",
                       start=start, end=start + 10)


@pytest.mark.parametrize(("protocol", "path"), [("json-post", "/answer"), ("openai-chat", "/v1/chat/completions")])
def test_each_window_carries_a_batch_run_on_both_agents(tmp_path: Path, agents: tuple[str, str], protocol: str,
                                                        path: str) -> None:
    suite = tmp_path / "suite.jsonl"
    suite.write_text("\n".join(json.dumps({"input": f"what is {a}+1?", "expected": str(a + 1)}) for a in range(9)))
    spec = load_spec_text(SPEC.format(stable=agents[0], canary=agents[1], suite=suite, protocol=protocol, path=path))
    runtime = Runtime(workdir=tmp_path / "rw", notifier=None)
    source = runtime.metrics_for(spec)
    assert source is not None
    window = source.collect(_query())
    assert window.has_data and window.evaluations is not None
    batch = Batch.from_dict(window.evaluations["qa"])
    assert len(batch.tasks) == 6
    assert all(t.stable == [1, 1] and t.canary == [0, 0] for t in batch.tasks)
    assert batch.tasks[0].tokens == (14.0, 14.0)
    runtime.close()


def test_the_llm_judge_grades_through_the_same_endpoint_protocol(tmp_path: Path, agents: tuple[str, str]) -> None:
    suite = tmp_path / "suite.jsonl"
    suite.write_text("\n".join(json.dumps({"input": f"what is {a}+2?", "expected": str(a + 2)}) for a in range(5)))
    text = SPEC.format(stable=agents[0], canary=agents[1], suite=suite, protocol="json-post", path="/answer")
    text = text.replace("runs: 2,", f"runs: 2, grader: llmJudge, judge: {{url: 'http://{agents[0]}/judge'}},")
    source = Runtime(workdir=tmp_path / "rw", notifier=None).metrics_for(load_spec_text(text))
    assert source is not None
    batch = Batch.from_dict(source.collect(_query()).evaluations["qa"])  # type: ignore[index]
    assert all(t.stable == [1, 1] and t.canary == [0, 0] for t in batch.tasks)


def test_a_missing_suite_is_a_metrics_error_not_a_crash(tmp_path: Path, agents: tuple[str, str]) -> None:
    spec = load_spec_text(SPEC.format(stable=agents[0], canary=agents[1], suite=tmp_path / "nope.jsonl",
                                      protocol="json-post", path="/answer"))
    source = Runtime(workdir=tmp_path / "rw", notifier=None).metrics_for(spec)
    assert source is not None
    with pytest.raises(MetricsError, match=r"evaluation qa: .*nope\.jsonl"):
        source.collect(_query())


def test_draws_are_reproducible_and_with_replacement() -> None:
    tasks = parse_suite("\n".join(json.dumps({"input": f"t{i}"}) for i in range(5)))
    first = [t.id for t in draw_tasks(tasks, 50, "agent/qa/v2/0.000")]
    assert first == [t.id for t in draw_tasks(tasks, 50, "agent/qa/v2/0.000")]
    assert first != [t.id for t in draw_tasks(tasks, 50, "agent/qa/v2/10.000")]
    assert len(set(first)) == 5 and len(first) == 50


def test_validate_names_a_bad_evaluation_field(tmp_path: Path) -> None:
    spec = tmp_path / "agent.yaml"
    spec.write_text(SPEC.format(stable="127.0.0.1:1", canary="127.0.0.1:2", suite="s.jsonl", protocol="json-post",
                                path="/answer").replace("runs: 2", "runs: 0"))
    result = subprocess.run([sys.executable, "-m", "rollwise", "validate", str(spec)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert "evaluations" in result.stdout + result.stderr and "runs" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
