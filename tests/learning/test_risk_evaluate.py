"""``rollwise risk evaluate`` run as users run it: a real process on CSV files.

The simulated histories have known risk factors, so the learner must find them (AUC well above
0.5 and above the refit logistic baseline), must find nothing in shuffled labels (no leakage of
time or future outcomes), must not care about row order, and must refuse bad input in one line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rollwise.learning.evaluation import auc, backtest, recall_at_effort
from rollwise.learning.learner import RiskModel
from rollwise.learning.simulated import history_csv, simulate_history
from rollwise.learning.table import ChangeTable

ROWS = 2500


def risk(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rollwise", "risk", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("risk")
    columns = simulate_history(ROWS, seed=7)
    files = {"sorted": history_csv(columns), "shuffled_rows": history_csv(columns, shuffle_seed=1),
             "shuffled_labels": history_csv(columns, shuffle_seed=1, shuffle_labels=True)}
    paths = {}
    for name, text in files.items():
        paths[name] = folder / f"{name}.csv"
        paths[name].write_text(text)
    return paths


def evaluate_json(path: Path, *extra: str) -> dict[str, object]:
    done = risk("evaluate", path, "--label", "bug", "--time", "time", "--output", "json", *extra)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_learner_finds_known_risk_factors_and_beats_the_refit_logistic_baseline(history: dict[str, Path]) -> None:
    report = evaluate_json(history["shuffled_rows"], "--baseline")
    assert {"n", "positives", "warmup", "auc", "gmean", "recall_at_20pct_effort"} <= set(report)
    assert report["warmup"] == ROWS // 10 and report["n"] == ROWS - ROWS // 10
    assert report["effort"] == "la+ld"
    assert report["auc"] > 0.68, report  # type: ignore[operator]
    assert report["auc"] > report["baseline_logistic"]["auc"], report  # type: ignore[index, operator]
    assert 0.5 < report["gmean"] < 1  # type: ignore[operator]


def test_row_order_does_not_matter_and_runs_repeat_exactly(history: dict[str, Path]) -> None:
    first = evaluate_json(history["sorted"])
    assert first == evaluate_json(history["shuffled_rows"]) == evaluate_json(history["sorted"])


def test_shuffled_labels_give_chance_auc(history: dict[str, Path]) -> None:
    report = evaluate_json(history["shuffled_labels"])
    assert abs(report["auc"] - 0.5) < 0.05, report  # type: ignore[operator]


def test_label_delay_keeps_outcomes_unknown_until_they_arrive(history: dict[str, Path]) -> None:
    """With a delay longer than the whole history nothing is ever learned: every score is the same."""
    report = evaluate_json(history["sorted"], "--label-delay", "3650d")
    assert report["auc"] == 0.5 and report["refits"] == 0


def test_text_output_is_a_short_table(history: dict[str, Path]) -> None:
    done = risk("evaluate", history["sorted"], "--label", "bug", "--time", "time", "--warmup", "100")
    assert done.returncode == 0, done.stderr
    assert "AUC" in done.stdout and "warm-up (not scored): 100" in done.stdout


def test_formats_users_bring(tmp_path: Path) -> None:
    """yes/no labels, epoch-millisecond times, zone-less ISO, missing values, text columns ignored."""
    rng = np.random.default_rng(3)
    lines = ["id,when,size,note,defective,owner_exp"]
    for i in range(400):
        size = int(rng.integers(1, 500))
        bad = rng.random() < (0.6 if size > 250 else 0.1)
        exp = "" if i % 17 == 0 else str(int(rng.integers(0, 50)))
        lines.append(f"x{i},{1_600_000_000_000 + i * 60_000},{size},free text {i},{'yes' if bad else 'no'},{exp}")
    path = tmp_path / "c.csv"
    path.write_text("\n".join(lines) + "\n")
    done = risk("evaluate", path, "--label", "defective", "--time", "when", "--output", "json")
    report = json.loads(done.stdout)
    assert report["features"] == ["size", "owner_exp"] and report["ignored_columns"] == ["id", "note"]
    assert report["auc"] > 0.75 and report["effort"] == "1 per change"


@pytest.mark.parametrize(("content", "args", "message"), [
    ("t,a,bug\n2024-01-01,1,0\n", ("--label", "nope", "--time", "t"), "label column 'nope' not found"),
    ("t,a,bug\n2024-01-01,1,0\n", ("--label", "bug", "--time", "ts"), "time column 'ts' not found"),
    ("t,a,bug\n2024-01-01,1,0\nyesterday,2,1\n", ("--label", "bug", "--time", "t"), "line 3: time 't'"),
    ("t,a,bug\n2024-01-01,1,0\n2024-01-02,2,maybe\n", ("--label", "bug", "--time", "t"), "line 3: label 'bug'"),
    ("t,name,bug\n2024-01-01,x,0\n", ("--label", "bug", "--time", "t"), "no numeric feature columns"),
    ("t,a,bug\n2024-01-01,1\n", ("--label", "bug", "--time", "t"), "line 2: 2 fields"),
])
def test_bad_input_is_one_line_exit_2(tmp_path: Path, content: str, args: tuple[str, ...], message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    done = risk("evaluate", path, *args)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr


def test_metrics_on_hand_checked_numbers() -> None:
    scores = np.array([0.9, 0.8, 0.3, 0.2])
    labels = np.array([1, 0, 1, 0])
    assert auc(scores, labels) == 0.75
    # Efforts 10, 70, 10, 10: risk per line ranks changes 0, 2, 3, 1; 20 % of 100 lines inspects 0 and 2.
    assert recall_at_effort(scores, labels, np.array([10.0, 70.0, 10.0, 10.0])) == 1.0
    # One unit per change: the riskiest first; 20 % of 4 changes inspects none but whole changes within it.
    assert recall_at_effort(scores, labels, np.ones(4)) == 0.0


def test_each_change_is_scored_from_strictly_earlier_changes_only() -> None:
    """Changes sharing a time are scored before any of them is learned: a learner that memorises
    the rows it saw would score a duplicate of a learned row 1, but never one of its own group."""
    x = np.repeat(np.arange(40.0), 2).reshape(-1, 1)
    y = np.tile([1, 0], 40)[:80]
    table = ChangeTable(["f"], x, y, np.repeat(np.arange(40.0), 2), np.ones(80))

    class Memory:
        seen: dict[float, int] = {}

        def fit(self, xs: np.ndarray, ys: np.ndarray) -> None:
            self.seen = {float(a): int(b) for a, b in zip(xs[:, 0], ys, strict=True)}

        def score(self, xs: np.ndarray) -> np.ndarray:
            return np.array([self.seen.get(float(a), 0.5) for a in xs[:, 0]])

    result = backtest(table, Memory, warmup=4, refit_every=1)
    assert set(result.scores.tolist()) == {0.5}
    assert isinstance(RiskModel().score(x[:1])[0], float)


@pytest.mark.parametrize(("text", "epoch"), [
    ("2012-03-04", 1330819200.0), ("2012-03-04 12:00:00", 1330862400.0), ("2012-03-04T12:00:00Z", 1330862400.0),
    ("2012-03-04T13:00:00+01:00", 1330862400.0), ("2012/03/04 12:00:00", 1330862400.0),
    ("Sun Mar 4 13:00:00 2012 +0100", 1330862400.0), ("1330862400", 1330862400.0), ("03/04/2012", None),
])
def test_times_users_bring(text: str, epoch: float | None) -> None:
    from rollwise.learning.table import parse_time

    assert parse_time(text) == epoch
