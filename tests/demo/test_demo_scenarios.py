"""Whole rollouts on real processes: the engine decides from real Envoy (or PromQL) numbers."""

from __future__ import annotations

import pytest

from rollwise.core.model import Phase
from rollwise.demo.scenarios import run_scenario

pytestmark = [pytest.mark.envoy, pytest.mark.slow, pytest.mark.timeout(240)]


def test_healthy_canary_is_promoted_without_a_dropped_request() -> None:
    result = run_scenario("good-canary", rate=150, max_seconds=90)

    assert result.phase == Phase.SUCCEEDED, result.reason
    assert result.load.transport_errors == 0  # every failure is a service's own (0.5 %) 500
    assert result.load.failures == result.load.by_status.get(500, 0)
    assert result.load.by_version.get("v2", 0) > 0
    weights = [e.data.get("weight") for e in result.events if e.type == "step" and "weight" in e.data]
    assert weights == sorted(weights)


def test_failing_canary_is_rolled_back_and_traffic_returns_to_stable() -> None:
    result = run_scenario("bad-canary", rate=150, max_seconds=90)

    assert result.phase == Phase.ROLLED_BACK, result.reason
    assert "error-rate" in result.reason or "latency-p99" in result.reason
    assert result.load.transport_errors == 0
    assert result.load.errors_by_version.get("v1", 0) <= 0.03 * result.load.by_version["v1"]
    v2_errors = result.load.errors_by_version.get("v2", 0)
    assert v2_errors > 0  # some users did see the bad canary before the decision...
    assert v2_errors < result.load.by_version["v2"] * 0.3  # ...and they were few


def test_failing_shadow_is_caught_while_users_only_see_stable() -> None:
    result = run_scenario("shadow", rate=150, max_seconds=90)

    assert result.phase == Phase.ROLLED_BACK, result.reason
    served = {version for version in result.load.by_version if version != "-"}
    assert served == {"v1"}  # nobody was served by the shadow
    # "-": no answer at all (the load generator's own drop or a connect error under a loaded CI machine)
    assert result.load.by_version.get("-", 0) <= 0.01 * result.load.sent
    assert result.load.errors_by_version.get("v3", 0) == 0
    assert result.shadow is not None and result.shadow["compared"] > 100
    # v3 fails 5 % and changes 20 % of payloads: the comparator sees it, the client never does
    assert result.shadow["mismatches"] >= 0.1 * result.shadow["compared"]


@pytest.mark.prometheus
def test_rollout_decided_from_promql(prometheus_binary: str) -> None:
    result = run_scenario(
        "bad-canary", rate=150, max_seconds=120, metrics="prometheus", prometheus_binary=prometheus_binary
    )

    assert result.phase == Phase.ROLLED_BACK, result.reason
    assert result.load.transport_errors == 0


def test_time_bomb_after_promotion_is_undone_by_the_watch_with_an_incident() -> None:
    result = run_scenario("time-bomb", rate=150, max_seconds=150)

    assert result.phase == Phase.ROLLED_BACK, result.reason
    undo = [e for e in result.events if e.type == "command" and e.data.get("command") == "undo"]
    assert undo and undo[0].actor == "rollwise-watch"  # nobody but the watch undid it
    assert any(e.type == "phase" and e.data.get("phase") == "Succeeded" for e in result.events)  # it passed first
    incident = result.incident
    assert incident is not None and incident.culprit is not None
    assert incident.culprit["version"] == "v2" and incident.culprit["source"] == "rollwise"
    assert incident.attribution["confidence"] >= 0.4  # the demo policy's minConfidence: it acted on it
    assert incident.attribution["onset"]["effect_low"] > 0  # the error rate rose, with its interval
    assert [a["outcome"] for a in incident.actions if a["kind"] == "undo"] == ["done"]
    assert incident.status == "resolved" and incident.recovery_s is not None
    tail = [s for s in result.samples if s.version][-50:]
    assert tail and all(s.version == "v1" for s in tail)  # users are back on v1
