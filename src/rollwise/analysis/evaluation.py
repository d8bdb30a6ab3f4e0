"""Evaluations as metrics of the sequential judge: the paired test on each look's batches.

An evaluation gets its share ``w * alpha`` of the false-rollback budget by the same weighted
Bonferroni as the live metrics (``sequential.plan_metrics`` counts its weight). Within it, the mean
pass share gets all of it, or half when consistency (pass^k) is gated too, the other half going to
the pass^k test. Latency and token cost are reported, never gated.

State is folded from the windows' batches (``Window.evaluations[name]``) on top of what earlier
stages carried (``carry["sequential"]["evaluation:<name>"]``); like the live metrics' no-regression
side, only half the accept evidence is carried into a new stage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from rollwise.agents.paired import BetState, PairedTest, pass_k
from rollwise.agents.runner import Batch, TaskResult
from rollwise.core.evidence import MetricEvidence, MetricParams, SideCounts
from rollwise.core.model import Action, Window
from rollwise.core.units import format_percent
from rollwise.spec.models import AnalysisSpec, EvaluationSpec

TEST_NAME = "paired-betting-e-process"
CARRY_PREFIX = "evaluation:"


@dataclass(frozen=True)
class EvaluationPlan:
    spec: EvaluationSpec
    weight: float
    alpha: float
    blocking: bool
    mean: PairedTest
    consistency: PairedTest | None


def plan_evaluations(analysis: AnalysisSpec, total_weight: float, any_critical: bool) -> list[EvaluationPlan]:
    plans = []
    for spec in analysis.evaluations:
        weight = spec.weight / total_weight
        alpha = analysis.alpha * weight
        share = alpha / 2 if spec.consistency else alpha
        plans.append(EvaluationPlan(
            spec=spec, weight=weight, alpha=alpha, blocking=spec.critical or not any_critical,
            mean=PairedTest(alpha=share, tolerance=spec.maxDecrease, concern=spec.minEffect),
            consistency=PairedTest(alpha=share, tolerance=spec.maxDecrease, concern=spec.minEffect)
            if spec.consistency else None,
        ))
    return plans


@dataclass(frozen=True)
class Side:
    """One version's totals over the tasks folded so far."""

    tasks: int = 0
    runs: int = 0
    passes: int = 0
    all_pass: int = 0
    ms: float = 0.0
    tokens: float = 0.0
    token_runs: int = 0

    def plus(self, runs: list[int], ms: float, tokens: float | None) -> Side:
        return Side(self.tasks + 1, self.runs + len(runs), self.passes + sum(runs), self.all_pass + pass_k(runs),
                    self.ms + ms * len(runs), self.tokens + (tokens or 0.0),
                    self.token_runs + (len(runs) if tokens is not None else 0))

    def counts(self) -> SideCounts:
        counts = SideCounts(trials=self.runs, bad=self.runs - self.passes, tasks=self.tasks)
        if self.tasks:
            counts.passK = self.all_pass / self.tasks
            counts.latencyMs = self.ms / max(self.runs, 1)
        if self.token_runs:
            counts.tokens = self.tokens / self.token_runs
        return counts

    @property
    def rate(self) -> float:
        return self.passes / self.runs if self.runs else 0.0


@dataclass(frozen=True)
class EvaluationFold:
    rollback: BetState = field(default_factory=BetState)
    accept: BetState = field(default_factory=BetState)
    k_rollback: BetState = field(default_factory=BetState)
    k_accept: BetState = field(default_factory=BetState)
    stable: Side = field(default_factory=Side)
    canary: Side = field(default_factory=Side)

    def to_dict(self) -> dict[str, Any]:
        sides = {name: vars(getattr(self, name)) for name in ("stable", "canary")}
        return {"rollback": self.rollback.to_dict(), "accept": self.accept.to_dict(),
                "kRollback": self.k_rollback.to_dict(), "kAccept": self.k_accept.to_dict(), **sides}

    @classmethod
    def from_dict(cls, data: Any) -> EvaluationFold:
        if not isinstance(data, dict):
            return cls()
        return cls(BetState.from_dict(data.get("rollback")), BetState.from_dict(data.get("accept")),
                   BetState.from_dict(data.get("kRollback")), BetState.from_dict(data.get("kAccept")),
                   Side(**data.get("stable", {})), Side(**data.get("canary", {})))


def fold_stage(plan: EvaluationPlan, carried: Any, windows: tuple[Window, ...]) -> EvaluationFold:
    """The evaluation's state after this stage's windows, from what earlier stages carried."""
    fold = EvaluationFold.from_dict(carried)
    half = 0.5 * plan.mean.accept_bar
    fold = replace(fold, accept=replace(fold.accept, log_wealth=min(fold.accept.log_wealth, half)),
                   k_accept=replace(fold.k_accept, log_wealth=min(fold.k_accept.log_wealth, half)))
    for window in windows:
        batch = (window.evaluations or {}).get(plan.spec.name)
        if batch is not None:
            fold = fold_batch(plan, fold, Batch.from_dict(batch).tasks)
    return fold


def fold_batch(plan: EvaluationPlan, fold: EvaluationFold, tasks: list[TaskResult]) -> EvaluationFold:
    rollback, accept = plan.mean.fold(fold.rollback, fold.accept, [t.difference for t in tasks])
    k_rollback, k_accept = fold.k_rollback, fold.k_accept
    if plan.consistency is not None:
        diffs = [float(pass_k(t.stable) - pass_k(t.canary)) for t in tasks]
        k_rollback, k_accept = plan.consistency.fold(k_rollback, k_accept, diffs)
    stable, canary = fold.stable, fold.canary
    for task in tasks:
        stable = stable.plus(task.stable, task.ms[0], task.tokens[0])
        canary = canary.plus(task.canary, task.ms[1], task.tokens[1])
    return EvaluationFold(rollback, accept, k_rollback, k_accept, stable, canary)


@dataclass
class EvaluationJudgement:
    result: MetricEvidence
    rollbacks: list[tuple[float, str, str, str]]
    decided: bool


def judge(plan: EvaluationPlan, fold: EvaluationFold) -> EvaluationJudgement:
    """The evaluation's evidence, whether it rolls back (and why), and whether it is decided."""
    name, test = plan.spec.name, plan.mean
    rates = (f"canary {format_percent(fold.canary.rate)} vs stable {format_percent(fold.stable.rate)} pass "
             f"over {fold.canary.tasks} tasks x {plan.spec.runs} runs")
    rollbacks: list[tuple[float, str, str, str]] = []
    if test.rejected(fold.rollback):
        rollbacks.append((fold.rollback.log_wealth - test.rollback_bar, name, "e-value-bonferroni",
                          f"{name}: e-value {math.exp(fold.rollback.log_wealth):.3g} ≥ 1/(w·α) = "
                          f"{1 / test.alpha:.3g} ({TEST_NAME}, paired per task); {rates}"))
    decided = test.accepted(fold.accept)
    params = MetricParams(weight=plan.weight, alphaShare=plan.alpha, critical=plan.spec.critical,
                          blocking=plan.blocking, eValue=math.exp(fold.rollback.log_wealth),
                          acceptLlr=fold.accept.log_wealth, acceptThreshold=test.accept_bar,
                          rejected=test.rejected(fold.rollback), accepted=decided,
                          runsPerTask=plan.spec.runs, consistencyGated=plan.consistency is not None, **test.params())
    consistency = plan.consistency
    if consistency is not None:
        params.consistencyEValue = math.exp(fold.k_rollback.log_wealth)
        params.consistencyThreshold = 1 / consistency.alpha
        params.consistencyAcceptLlr = fold.k_accept.log_wealth
        decided = decided and consistency.accepted(fold.k_accept)
        if consistency.rejected(fold.k_rollback):
            rollbacks.append((fold.k_rollback.log_wealth - consistency.rollback_bar, name, "pass-k-e-value",
                              f"{name}: pass^{plan.spec.runs} e-value {params.consistencyEValue:.3g} ≥ "
                              f"{params.consistencyThreshold:.3g}: canary consistency "
                              f"{_share(fold.canary)} vs stable {_share(fold.stable)}"))
    action = Action.ROLLBACK if rollbacks else Action.EXPAND if decided else Action.CONTINUE
    summary = (f"{TEST_NAME}: E={params.eValue:.3g} (bar {1 / test.alpha:.3g}), accept "
               f"{fold.accept.log_wealth:.2f}/{test.accept_bar:.2f} nats; {rates}; pass^{plan.spec.runs} "
               f"canary {_share(fold.canary)} vs stable {_share(fold.stable)}")
    result = MetricEvidence(
        metric=name, test=TEST_NAME, action=str(action), statistic=params.eValue, threshold=1 / test.alpha,
        canary=fold.canary.counts(), baseline=fold.stable.counts(), effect=fold.canary.rate - fold.stable.rate,
        params=params, summary=summary,
    )
    return EvaluationJudgement(result=result, rollbacks=rollbacks, decided=decided)


def _share(side: Side) -> str:
    return format_percent(side.all_pass / side.tasks) if side.tasks else "n/a"


def judge_stage(plans: list[EvaluationPlan], carry: Any, windows: tuple[Window, ...],
                ) -> tuple[list[EvaluationJudgement], dict[str, Any]]:
    """Every evaluation judged on the stage so far, and their states for the next stage's carry."""
    carried = carry if isinstance(carry, dict) else {}
    judgements, state = [], {}
    for plan in plans:
        fold = fold_stage(plan, carried.get(CARRY_PREFIX + plan.spec.name), windows)
        judgements.append(judge(plan, fold))
        state[CARRY_PREFIX + plan.spec.name] = fold.to_dict()
    return judgements, state
