"""What the learning agent learned, measured: the "Risk" section (``risk_section``).

Risk: ``risk evaluate``'s protocol (``learning/evaluation.backtest``: each change scored only from
strictly earlier changes with known outcomes, warm-up not scored) on

- this repository's own history: features from ``git log`` of ``--repo`` (default: this repository, the
  main checkout) by ``learning/features``, labels by SZZ-lite (a commit later reverted, or the last
  earlier change to a file a later fix/revert commit touched): the labels are heuristic;
- simulated histories with known risk factors (``learning/simulated``: logistic ground truth with an
  interaction, heavy tails, missing values, a drift half-way), 5 000 and 20 000 changes, 2 seeds.

Each learner is compared with the refit logistic-regression baseline on the same protocol, and the
chosen learner is run on shuffled labels (AUC must be ≈ 0.5: no leakage of time or future labels).

    python bench/learning_risk.py [--repo PATH] [--out FILE]   (or bench/learning.py --only risk)
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rollwise.adapters.repos.git import GitRepository
from rollwise.learning.evaluation import Backtest, backtest
from rollwise.learning.features import FEATURES, history_features, szz_lite
from rollwise.learning.learner import RefitLogistic, RiskLearner, RiskModel
from rollwise.learning.simulated import history_csv, simulate_history
from rollwise.learning.table import ChangeTable, parse_table

COMMAND = "python bench/learning.py"
CANDIDATES: dict[str, Callable[[], RiskLearner]] = {
    "refit logistic, raw features (baseline)": RefitLogistic,
    "refit logistic, log1p + missing indicators (chosen)": RiskModel,
    "same, recency-weighted (half-life n/4 changes)": RiskModel,  # half-life set per table below
}
TREES = "GBM + logistic average (HistGradientBoosting)"
CHOICE = (
    "Choice: the refit logistic regression on log1p-scaled count features with missing-value indicators and "
    "balanced class weights (scikit-learn) beats the raw-feature baseline on every simulated history, with and "
    "without a 90-day label delay, by 0.02–0.05 AUC, and on this repository's history at the default schedule. "
    "The tree ensemble did not beat it here and costs ~50× the CPU per refit on this machine, so it stays an "
    "option (`RiskModel(trees=True)`); recency weighting changed AUC by ≤ 0.002 and stays off. The simulated "
    "ground truth is logistic in log-size, which favours a logistic learner: on real histories with other "
    "shapes, run `rollwise risk evaluate --baseline` on your own data. An online learner (river) was not "
    "measured: a refit every n/50 outcomes costs about 1 CPU-second per 10 000 changes, so per-change online "
    "updates would buy no speed. 50 000 simulated changes through the CLI: 35 s wall, 7 s CPU (loaded machine)."
)


def repo_table(repo: Path) -> ChangeTable:
    commits = GitRepository(repo).history("HEAD")
    _, rows = history_features(commits)
    labels = szz_lite(commits)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["time", *FEATURES, "bug"])
    for commit, row, label in zip(commits, rows, labels, strict=True):
        writer.writerow([commit.time, *(row[name] for name in FEATURES), label])
    return parse_table(out.getvalue(), "bug", "time")


def shuffled(table: ChangeTable, seed: int) -> ChangeTable:
    rng = np.random.default_rng(seed)
    return ChangeTable(table.features, table.x, rng.permutation(table.y), table.time, table.effort)


def timed(table: ChangeTable, learner: Callable[[], RiskLearner], **kwargs: int | None) -> tuple[Backtest, float]:
    started = time.process_time()
    result = backtest(table, learner, **kwargs)
    return result, time.process_time() - started


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _row(name: str, result: Backtest, cpu_s: float, rows: int) -> str:
    return (f"| {name} | {result.n} | {result.positives} | {result.warmup} | {_fmt(result.auc)} | {_fmt(result.gmean)} "
            f"| {_fmt(result.recall_at_20pct_effort)} | {cpu_s / rows * 10_000:.1f} |")


HEADER = ("| learner | scored | failing | warm-up | AUC | G-mean @0.5 | recall @20% effort | CPU s / 10k rows |\n"
          "|---|---|---|---|---|---|---|---|")


def _learners(rows: int) -> dict[str, Callable[[], RiskLearner]]:
    learners = dict(CANDIDATES)
    learners["same, recency-weighted (half-life n/4 changes)"] = functools.partial(RiskModel, half_life=rows / 4)
    return learners


def table_block(title: str, table: ChangeTable, shuffles: int = 3, delay_days: float = 0,
                refit_every: int | None = None) -> list[str]:
    lines = [f"### {title}", "", HEADER]
    for name, learner in _learners(table.rows).items():
        result, cpu = timed(table, learner, refit_every=refit_every)
        lines.append(_row(name, result, cpu, table.rows))
    if delay_days:
        for name, learner in (("baseline, label delay", RefitLogistic), ("chosen, label delay", RiskModel)):
            result, cpu = timed(table, learner, label_delay_s=int(delay_days * 86400))
            lines.append(_row(f"{name} {delay_days:g} days", result, cpu, table.rows))
    chance = [backtest(shuffled(table, seed), RiskModel).auc for seed in range(shuffles)]
    values = [a for a in chance if a is not None]
    if not shuffles:
        return [*lines, ""]
    mean = f" (mean {statistics.mean(values):.3f})" if values else ""
    lines += ["", f"Shuffled labels, chosen learner, {shuffles} shuffles: AUC "
              + ", ".join(f"{a:.3f}" for a in values) + mean, ""]
    return lines


def trees_block(rows: int = 3000, seed: int = 1) -> list[str]:
    """The tree ensemble is ~50× slower per refit on this shared 2-core machine, so it is compared on a
    smaller history with 10 refits (every 300 changes) against the chosen learner on the same schedule."""
    table = parse_table(history_csv(simulate_history(rows, seed=seed)), "bug", "time")
    lines = [f"### Tree ensemble vs the chosen learner (simulated, {rows} changes, refit every 300)", "", HEADER]
    for name, learner in ((TREES, functools.partial(RiskModel, trees=True)),
                          ("refit logistic, log1p + missing indicators (chosen)", RiskModel),
                          ("refit logistic, raw features (baseline)", RefitLogistic)):
        result, cpu = timed(table, learner, refit_every=300)
        lines.append(_row(name, result, cpu, table.rows))
    return [*lines, ""]


def risk_section(repo: Path = Path(__file__).resolve().parents[1]) -> str:
    lines = ["## Risk", "", f"Command: `{COMMAND} --repo {repo}`. Protocol: `rollwise risk evaluate` "
             "(chronological, each change scored from strictly earlier changes with known outcomes, default "
             "label delay 0, warm-up min(10 % of rows, 1000) not scored, refit every max(10, n/50) outcomes). "
             "G-mean at probability 0.5 (classes weighted equally); effort = lines added + deleted. CPU seconds "
             "are process time on a shared 2-core machine.", ""]
    own = repo_table(repo)
    span_days = (own.time.max() - own.time.min()) / 86400
    lines += table_block(f"This repository's history ({own.rows} commits over {span_days:.0f} days; labels by "
                         f"SZZ-lite, {int(own.y.sum())} failing)", own, shuffles=5)
    lines += table_block("Same history, refit every 50 outcomes instead of 10 (3 refits in all)", own, shuffles=0,
                         refit_every=50)
    lines.append("With so few commits the AUC's standard error is about ±0.06 and the ranking of the two learners "
                 "depends on the refit schedule (above): the figures say the protocol runs on real git history, "
                 "not that either learner is better on it. SZZ-lite labels are heuristic, and with no label delay "
                 "a commit's label counts as known before the fix that defines it was made.")
    lines.append("")
    for rows in (5000, 20000):
        for seed in (1, 2):
            table = parse_table(history_csv(simulate_history(rows, seed=seed), shuffle_seed=seed), "bug", "time")
            lines += table_block(f"Simulated history, {rows} changes, seed {seed} "
                                 f"({int(table.y.sum())} failing, drift half-way)", table, delay_days=90)
    lines += trees_block()
    lines += [CHOICE, ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "learning.md")
    args = parser.parse_args()
    text = risk_section(args.repo)
    sys.stdout.write(text)
    args.out.write_text(f"# Learning\n\n`{COMMAND} --repo {args.repo}`\n\n{text}")


if __name__ == "__main__":
    main()
