"""Every strategy end to end on simulated traffic: the same engine as production, a virtual clock."""

from __future__ import annotations

from rollwise.simulate import Behaviour, TrafficProfile, simulate
from rollwise.spec import load_spec
from support.common import EXAMPLES


def test_blue_green_good_preview_cuts_over_and_keeps_rollback_window() -> None:
    result = simulate(load_spec(EXAMPLES / "blue-green.yaml"), Behaviour(), Behaviour(), seed=1)
    assert result.phase == "Succeeded"
    cutover = [e for e in result.events if e["type"] == "step" and e["data"].get("kind") == "cutover"]
    assert len(cutover) == 1 and cutover[0]["data"]["weight"] == 100
    assert result.canary_requests == 0  # the preview saw only mirrored traffic, never a user's


def test_blue_green_bad_preview_never_reaches_users() -> None:
    result = simulate(load_spec(EXAMPLES / "blue-green.yaml"), Behaviour(), Behaviour(error_rate=0.05), seed=2)
    assert result.phase == "RolledBack"
    assert not [e for e in result.events if e["data"].get("kind") == "cutover"]
    assert result.canary_requests == 0 and result.canary_bad_requests == 0


def test_shadow_failures_are_reported_not_served() -> None:
    result = simulate(load_spec(EXAMPLES / "shadow.yaml"), Behaviour(), Behaviour(error_rate=0.05), seed=3)
    assert result.phase == "RolledBack"
    assert result.canary_requests == 0  # users only ever saw the primary
    assert result.shadow_mismatches > 0
    assert result.to_dict()["shadow_mismatches"] == result.shadow_mismatches


def test_healthy_shadow_passes_after_its_duration() -> None:
    result = simulate(load_spec(EXAMPLES / "shadow.yaml"), Behaviour(), Behaviour(), seed=4)
    assert result.phase == "Succeeded"
    assert result.duration_s >= 300


def test_regression_after_promotion_step_is_caught_in_a_later_stage() -> None:
    spec = load_spec(EXAMPLES / "canary.yaml")
    canary = Behaviour(change_at=100.0, error_rate_after=0.05)
    result = simulate(spec, Behaviour(), canary, TrafficProfile(rps=200), seed=5)
    assert result.phase == "RolledBack"
    rollback = next(d for d in result.decisions if d["action"] == "rollback")
    assert rollback["at_s"] >= 100.0
    assert rollback["evidence"]["culprit"] == "error-rate"


def test_every_simulated_rollback_explains_metric_numbers_and_rule() -> None:
    from rollwise.analysis.explain import explain_decision
    from rollwise.core.model import Event

    spec = load_spec(EXAMPLES / "canary.yaml")
    for seed, canary in enumerate((Behaviour(error_rate=0.03), Behaviour(latency_p99_ms=900.0))):
        result = simulate(spec, Behaviour(), canary, seed=seed)
        assert result.phase == "RolledBack"
        rollbacks = [e for e in result.events if e["type"] == "decision" and e["data"]["action"] == "rollback"]
        assert rollbacks
        for raw in rollbacks:
            text = explain_decision(Event.model_validate(raw))
            culprit = raw["data"]["culprit"]
            assert culprit in ("error-rate", "latency-p99")
            assert f"Culprit: {culprit}" in text and "Rule: " in text
            assert "canary" in text and any(ch.isdigit() for ch in text.split("Metrics:")[1])


def test_same_seed_same_story() -> None:
    spec = load_spec(EXAMPLES / "canary.yaml")
    first = simulate(spec, Behaviour(), Behaviour(error_rate=0.02), seed=9).to_dict()
    second = simulate(spec, Behaviour(), Behaviour(error_rate=0.02), seed=9).to_dict()
    assert first == second


def test_stages_that_require_repeated_runs_pass_each_run() -> None:
    text = (EXAMPLES / "canary.yaml").read_text().replace("      onInconclusive: hold\n",
                                                           "      onInconclusive: hold\n      runs: 3\n")
    from rollwise.spec import load_spec_text

    spec = load_spec_text(text)
    healthy = simulate(spec, Behaviour(), Behaviour(), seed=11)
    assert healthy.phase == "Succeeded"
    runs = [e for e in healthy.events if e["type"] == "run"]
    assert len(runs) == 2 * 4  # runs 2 and 3 of each of the four judged stages
    one_run = simulate(load_spec(EXAMPLES / "canary.yaml"), Behaviour(), Behaviour(), seed=11)
    assert healthy.duration_s > one_run.duration_s
    # a canary that only fails later (as a non-deterministic agent might) is caught in a later run
    flaky = simulate(spec, Behaviour(), Behaviour(change_at=45.0, error_rate_after=0.05), seed=12)
    assert flaky.phase == "RolledBack"
    assert flaky.steps[-1]["weight"] == 5.0


def test_shadow_responses_that_differ_roll_back_even_while_the_metrics_are_undecided() -> None:
    from rollwise.spec import load_spec_text

    text = (EXAMPLES / "shadow.yaml").read_text()
    text = text.replace("duration: 5m", "duration: 60s").replace("minSamples: 200", "minSamples: 100000000")
    text = text.replace("        - {name: error-rate, type: errorRate, slo: \"< 1%\"}\n", "")
    spec = load_spec_text(text)
    # v3 changes 5 % of responses; its latency is fine, and the analysis can never expand (minSamples)
    result = simulate(spec, Behaviour(), Behaviour(error_rate=0.05), seed=5)
    assert result.phase == "RolledBack", result.decisions
    assert result.decisions[-1]["evidence"]["rule"] == "shadow.maxMismatchRate" and result.canary_requests == 0
    healthy = simulate(spec, Behaviour(), Behaviour(), seed=5)
    assert healthy.phase == "Paused"  # nothing decided either way: a human looks
    assert any("undecided" in e["message"] for e in healthy.events)
