"""The bridges' pure half: what Argo/Flagger send read into a request (every mistake one line naming the
parameter), the example manifests' calls readable by it, and a session's windows bounded and judged."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import pytest
import yaml

from rollwise.analysis import judge_for
from rollwise.bridges.contract import BridgeError, bridge_request, flagger_call
from rollwise.bridges.judging import MAX_WINDOWS, Session, judge_call
from rollwise.core.model import VersionStats, Window
from support.common import EXAMPLES

KUBERNETES = EXAMPLES / "kubernetes"


def test_defaults_and_the_session_name() -> None:
    call = bridge_request({"baseline": "v1", "canary": "v2"})
    assert (call.session, call.prometheus, call.lookback_s) == ("v1->v2", "http://127.0.0.1:9090", 60.0)
    assert [m.name for m in call.analysis.metrics] == ["error-rate"] and call.analysis.judge == "sequential"
    assert call.analysis.metrics[0].slo is not None and call.analysis.metrics[0].slo.value == 0.01


@pytest.mark.parametrize(("params", "field"), [
    ({"canary": "v2"}, "baseline"),
    ({"baseline": "v1", "canary": 'v2"} or vector(1) or {a="'}, "canary"),
    ({"baseline": "v1", "canary": "v2", "errorRate": "lots"}, "errorRate"),
    ({"baseline": "v1", "canary": "v2", "maxIncrease": "-3%"}, "maxIncrease"),
    ({"baseline": "v1", "canary": "v2", "latencyP99": "soon"}, "latencyP99"),
    ({"baseline": "v1", "canary": "v2", "judge": "astrology"}, "judge"),
    ({"baseline": "v1", "canary": "v2", "requests": "sum(rate(x[1m]))"}, "requests"),
    ({"baseline": "v1", "canary": "v2", "lookback": "3 fortnights"}, "lookback"),
    ({"baseline": "v1", "canary": "v2", "errorrate": "2%"}, "errorrate"),
    ({"baseline": "v1", "canary": {"nested": 1}}, "canary"),
])
def test_a_mistake_names_its_parameter(params: dict[str, Any], field: str) -> None:
    with pytest.raises(BridgeError) as caught:
        bridge_request(params)
    assert caught.value.field == field and str(caught.value).startswith(f"{field}: ")
    assert "\n" not in str(caught.value)


def test_flagger_payload_from_its_documentation() -> None:
    # https://docs.flagger.app/usage/webhooks: the payload Flagger POSTs to every hook
    payload = {"name": "podinfo", "namespace": "test", "phase": "Progressing", "checksum": "85d557f47b",
               "type": "rollout", "metadata": {"baseline": "podinfo-primary", "canary": "podinfo", "token": "rw_x"}}
    call = flagger_call("rollout", payload)
    assert call.request.session == "flagger:test/podinfo:85d557f47b" and call.phase == "Progressing"
    with pytest.raises(BridgeError, match=r"^hook: "):
        flagger_call("post-rollout", payload)
    with pytest.raises(BridgeError, match=r"^namespace: "):
        flagger_call("rollout", {**payload, "namespace": ""})


def _argo_args(text: str) -> str:
    """The template as Argo renders it: ``{{ args.NAME }}`` replaced by a value."""
    return re.sub(r"\{\{\s*args\.([a-z-]+)\s*\}\}", lambda m: {"stable-hash": "6d4f8c7b9",
                  "canary-hash": "7f9b5d6c4"}.get(m.group(1), "rw_token"), text)


def test_the_example_manifests_lint_and_send_what_rollwise_reads() -> None:
    files = sorted(KUBERNETES.glob("*.yaml"))
    lint = subprocess.run([sys.executable, "-m", "yamllint", "--strict", "-c", str(EXAMPLES / "ci" / ".yamllint.yaml"),
                           *map(str, files)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout
    template = yaml.safe_load(_argo_args((KUBERNETES / "argo-analysistemplate.yaml").read_text()))
    web = template["spec"]["metrics"][0]["provider"]["web"]
    assert web["url"].endswith("/api/v1/bridges/argo") and web["method"] == "POST"
    call = bridge_request(web["jsonBody"])
    assert (call.baseline, call.canary, call.session) == ("6d4f8c7b9", "7f9b5d6c4", "checkout-7f9b5d6c4")
    assert set(call.queries) == {"requests", "errors", "latency_buckets"}
    canary = yaml.safe_load((KUBERNETES / "flagger-canary.yaml").read_text())
    hooks = canary["spec"]["analysis"]["webhooks"]
    assert {h["type"] for h in hooks} == {"confirm-rollout", "pre-rollout", "rollout", "confirm-promotion"}
    for hook in hooks:
        assert hook["url"].endswith(f"/api/v1/bridges/flagger/{hook['type']}")
        body = {"name": "podinfo", "namespace": "test", "phase": "Progressing", "checksum": "1",
                "metadata": hook["metadata"]}
        assert flagger_call(hook["type"], body).request.canary == "podinfo"


def _window(start: float, errors: int) -> Window:
    return Window(start, start + 1, VersionStats(requests=100, errors=1), VersionStats(requests=100, errors=errors))


def test_windows_are_bounded_without_losing_counts_and_a_rollback_sticks() -> None:
    call = bridge_request({"baseline": "v1", "canary": "v2", "judge": "threshold", "minSamples": "10000000"})
    session = Session("s", started_at=0.0)
    for i in range(MAX_WINDOWS + 30):
        session = judge_call(session, call, judge_for(call.analysis), _window(float(i), 0), float(i + 1))
    assert len(session.windows) == MAX_WINDOWS and session.verdict == "continue"
    assert session.answer["canary"]["requests"] == 100 * (MAX_WINDOWS + 30)
    restored = Session.from_json(session.to_json())
    assert restored.windows == session.windows
    for i in range(3):
        restored = judge_call(restored, call, judge_for(call.analysis), _window(1000.0 + i, 60), 1001.0 + i)
    assert restored.verdict == "rollback"
    before = len(restored.windows)
    after = judge_call(restored, call, judge_for(call.analysis), _window(2000.0, 0), 2001.0)
    assert after.verdict == "rollback" and len(after.windows) == before
