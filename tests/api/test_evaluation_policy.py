"""An evaluation in a spec from the API stays inside the operator's allow-lists: suite path, grader
command, agent and judge URLs each refused by field name when outside."""

from __future__ import annotations

from pathlib import Path

from rollwise.api.policy import SpecPolicy
from rollwise.spec import load_spec_text


def _spec(suite: Path, evaluation: str = "") -> str:
    return f"""
name: agent
service: agent
versions:
  stable: {{name: v1, address: 127.0.0.1:9001}}
  canary: {{name: v2, address: 127.0.0.1:9002}}
traffic: {{router: none}}
strategy:
  canary:
    steps: [{{setWeight: 10}}]
    analysis:
      evaluations:
        - {{name: qa, suite: "{suite}"{evaluation}}}
"""


def _fields(policy: SpecPolicy, text: str) -> list[str]:
    return [".".join(where) for where, _ in policy.refusals(load_spec_text(text))]


def test_evaluation_fields_are_refused_outside_the_allow_lists(tmp_path: Path) -> None:
    allowed = tmp_path / "suites"
    allowed.mkdir()
    policy = SpecPolicy(allow_paths=(allowed,), allow_urls=("http://127.0.0.1:7000/agents/",))
    inside = allowed / "suite.jsonl"
    assert _fields(policy, _spec(inside)) == []
    assert _fields(policy, _spec(tmp_path / "secret.jsonl")) == ["strategy.canary.analysis.evaluations.0.suite"]
    assert _fields(policy, _spec(inside, ", grader: command, command: 'sh -c id'")) == [
        "strategy.canary.analysis.evaluations.0.command"]
    hostile = (", endpoint: {canaryUrl: 'http://169.254.169.254/latest/'}, grader: llmJudge, "
               "judge: {url: 'http://127.0.0.1:7000/agents/../admin'}")
    assert _fields(policy, _spec(inside, hostile)) == [
        "strategy.canary.analysis.evaluations.0.endpoint.canaryUrl",
        "strategy.canary.analysis.evaluations.0.judge.url",
    ]
    fine = ", endpoint: {canaryUrl: 'http://127.0.0.1:7000/agents/v2'}"
    assert _fields(policy, _spec(inside, fine)) == []
    through_envoy = ", endpoint: {canaryUrl: 'http://127.0.0.1:10000/answer', canaryHeaders: {x-eval: canary}}"
    assert _fields(policy, _spec(inside, through_envoy)) == []  # the rollout's own listener (the default)
    other_port = ", endpoint: {canaryUrl: 'http://127.0.0.1:10001/answer'}"
    assert _fields(policy, _spec(inside, other_port)) == ["strategy.canary.analysis.evaluations.0.endpoint.canaryUrl"]
    assert _fields(SpecPolicy(allow_paths=(allowed,), allow_commands=True),
                   _spec(inside, ", grader: command, command: 'grade'")) == []


def test_a_blue_green_post_promotion_evaluation_is_checked_too(tmp_path: Path) -> None:
    text = f"""
name: agent
service: agent
versions:
  stable: {{name: v1, address: 127.0.0.1:9001}}
  canary: {{name: v2, address: 127.0.0.1:9002}}
traffic: {{router: none}}
strategy:
  blueGreen:
    postPromotionAnalysis:
      evaluations: [{{name: qa, suite: "{tmp_path / 'suite.jsonl'}", grader: command, command: id}}]
"""
    assert _fields(SpecPolicy(allow_paths=(tmp_path,)), text) == [
        "strategy.blueGreen.postPromotionAnalysis.evaluations.0.command"]
