"""Evaluations inside the sequential judge: their share of alpha, their evidence, their carry."""

from __future__ import annotations

import random

from rollwise.agents.runner import Batch, TaskResult
from rollwise.analysis.sequential import SequentialJudge
from rollwise.core.evidence import dump_evidence, parse_evidence
from rollwise.core.model import Action, StageContext, VersionStats, Window
from rollwise.spec.models import AnalysisSpec


def _analysis(**evaluation: object) -> AnalysisSpec:
    return AnalysisSpec.model_validate({
        "alpha": 0.01, "minSamples": 0,
        "metrics": [{"name": "errors", "type": "errorRate", "weight": 1}],
        "evaluations": [{"name": "qa", "suite": "suite.jsonl", "runs": 3, "weight": 3, **evaluation}],
    })


def _batch(stable: float, canary: float, chooser: random.Random, tasks: int = 10,
           canary_tasks: list[float] | None = None) -> dict:  # type: ignore[type-arg]
    results = []
    for i in range(tasks):
        q = canary_tasks[i % len(canary_tasks)] if canary_tasks else canary
        p = stable if canary_tasks is None else (1.0 if canary_tasks[i % len(canary_tasks)] else 0.0)
        results.append(TaskResult(id=f"t{i}", stable=[int(chooser.random() < p) for _ in range(3)],
                                  canary=[int(chooser.random() < q) for _ in range(3)], ms=(10.0, 12.0),
                                  tokens=(21.0, 30.0)))
    return Batch(tasks=results).to_dict()


def _windows(batches: list[dict], requests: int = 200) -> tuple[Window, ...]:  # type: ignore[type-arg]
    live = VersionStats(requests=requests, errors=0)
    return tuple(Window(start=float(i), end=float(i + 1), baseline=live, canary=live, evaluations={"qa": b})
                 for i, b in enumerate(batches))


def _context(analysis: AnalysisSpec, windows: tuple[Window, ...], carry: dict | None = None,  # type: ignore[type-arg]
             stage: int = 0) -> StageContext:
    return StageContext(analysis=analysis, stage_index=stage, canary_weight=10, stage_started_at=0.0,
                        now=float(len(windows)), windows=windows, carry=carry or {})


def test_a_worse_canary_is_rolled_back_by_its_evaluation_with_readable_evidence() -> None:
    chooser = random.Random(1)
    analysis = _analysis()
    judge = SequentialJudge(analysis)
    windows = _windows([_batch(0.9, 0.5, chooser) for _ in range(40)])
    looks = [judge.evaluate(_context(analysis, windows[:n])) for n in range(1, 41)]
    verdict = next(v for v in looks if v.action == Action.ROLLBACK)
    assert looks[0].action == Action.CONTINUE  # one look of 10 tasks is not enough evidence
    assert verdict.culprit == "qa" and verdict.rule == "e-value-bonferroni"
    evidence = parse_evidence(dump_evidence(verdict.evidence))
    qa = evidence.culprit_metric()
    assert qa is not None and qa.test == "paired-betting-e-process"
    assert qa.params.alphaShare == 0.01 * 3 / 4  # weighted Bonferroni over the live metric and the evaluation
    assert qa.statistic is not None and qa.threshold is not None and qa.statistic >= qa.threshold
    assert qa.canary.latencyMs == 12.0 and qa.baseline.tokens == 7.0
    assert qa.canary.trials == qa.canary.tasks * 3  # type: ignore[operator]
    assert judge.plans[0].alpha == 0.01 / 4


def test_an_equal_canary_expands_and_carries_half_its_accept_evidence() -> None:
    chooser = random.Random(2)
    # minSamples counts live canary requests: an analysis of evaluations only does not wait for them
    analysis = AnalysisSpec.model_validate({"alpha": 0.01, "evaluations": [
        {"name": "qa", "suite": "suite.jsonl", "runs": 3}]})
    assert analysis.minSamples == 100
    windows = _windows([_batch(0.8, 0.8, chooser, tasks=20) for _ in range(12)], requests=0)
    verdict = SequentialJudge(analysis).evaluate(_context(analysis, windows))
    assert verdict.action == Action.EXPAND, verdict.reason
    carry = verdict.details.carry
    assert carry is not None
    state = carry["sequential"]["evaluation:qa"]
    assert state["accept"]["logWealth"] >= 3.0 and state["canary"]["tasks"] == 240
    # the next stage starts from the carry with half the no-regression evidence: not yet decided
    next_stage = SequentialJudge(analysis).evaluate(_context(analysis, _windows([_batch(0.8, 0.8, chooser, 1)]),
                                                             carry=carry, stage=1))
    assert next_stage.action == Action.CONTINUE
    metric = next_stage.metrics[0]
    assert metric.params.acceptLlr is not None and metric.params.acceptLlr < 3.0
    assert metric.canary.tasks == 241


def test_a_flaky_canary_is_rolled_back_only_when_consistency_is_gated() -> None:
    # stable: each task always passes or always fails (4 of 5 pass); canary: every task passes 80 % of runs
    chooser = random.Random(3)
    pattern = [1.0, 1.0, 1.0, 1.0, 0.0]
    batches = []
    for _ in range(30):
        batch = Batch.from_dict(_batch(0, 0, chooser, tasks=10, canary_tasks=pattern))
        tasks = [TaskResult(id=t.id, stable=t.stable, canary=[int(chooser.random() < 0.8) for _ in range(3)])
                 for t in batch.tasks]
        batches.append(Batch(tasks=tasks).to_dict())
    windows = _windows(batches)
    for gated, rolled_back in ((False, False), (True, True)):
        analysis = _analysis(consistency=gated)
        verdict = SequentialJudge(analysis).evaluate(_context(analysis, windows))
        assert (verdict.action == Action.ROLLBACK) is rolled_back, verdict.reason
        if rolled_back:
            assert verdict.rule == "pass-k-e-value" and verdict.culprit == "qa"


def test_windows_keep_their_batches_through_the_store_format() -> None:
    window = _windows([_batch(0.5, 0.5, random.Random(4), tasks=2)])[0]
    again = Window.from_dict(window.to_dict())
    assert again.evaluations == window.evaluations
    assert Batch.from_dict(again.evaluations["qa"]).tasks[0].ms == (10.0, 12.0)  # type: ignore[index]


def test_explain_words_the_consistency_rule() -> None:
    from rollwise.analysis.explain import RULES

    assert "pass^k" in RULES["pass-k-e-value"]
