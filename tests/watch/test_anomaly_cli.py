"""`rollwise anomaly score FILE.csv` as users run it: a real process, files on disk, stdout parsed."""

from __future__ import annotations

import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

from support.common import REPO  # type: ignore[import-not-found]


def rollwise(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rollwise", *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO)


def series(n: int, *, seed: int = 1) -> list[tuple[str, str]]:
    """NAB-like rows: 5-minute timestamps as text, a daily pattern, a level shift two thirds in."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        hour, minute = divmod(5 * i, 60)
        day, hour = divmod(hour, 24)
        value = 50 + 10 * math.sin(2 * math.pi * hour / 24) + rng.gauss(0, 2) + (25 if i > 2 * n // 3 else 0)
        rows.append((f"2014-04-{1 + day:02d} {hour:02d}:{minute:02d}:00", f"{value:.3f}"))
    return rows


def write(path: Path, rows: list[tuple[str, str]], *, newline: str = "\n", final: bool = True) -> Path:
    text = newline.join(["timestamp,value", *(f"{t},{v}" for t, v in rows)]) + (newline if final else "")
    path.write_bytes(text.encode())
    return path


def scored(result: subprocess.CompletedProcess[str]) -> list[list[str]]:
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "timestamp,value,anomaly_score"
    return [line.split(",") for line in lines[1:]]


def test_one_row_out_per_row_in_echoed_as_given_and_scored(tmp_path: Path) -> None:
    rows = series(2000)
    out = scored(rollwise("anomaly", "score", str(write(tmp_path / "s.csv", rows))))
    assert [(t, v) for t, v, _ in out] == rows
    values = [float(s) for _, _, s in out]
    assert all(0.0 <= s <= 1.0 for s in values)
    shift = 2 * 2000 // 3 + 1
    assert max(values[shift: shift + 12]) >= 0.99999  # the level shift alarms within an hour
    assert sum(s >= 0.99999 for s in values[400: shift]) <= 3  # the healthy part rarely does


def test_no_look_ahead_a_prefix_scores_as_the_first_rows_of_the_whole(tmp_path: Path) -> None:
    rows = series(1500, seed=2)
    whole = scored(rollwise("anomaly", "score", str(write(tmp_path / "whole.csv", rows))))
    prefix = scored(rollwise("anomaly", "score", str(write(tmp_path / "prefix.csv", rows[:1100]))))
    assert prefix == whole[:1100]


@pytest.mark.parametrize(("newline", "final"), [("\r\n", True), ("\r", True), ("\r", False), ("\n", False)])
def test_line_endings_and_final_newline_do_not_change_the_output(tmp_path: Path, newline: str, final: bool) -> None:
    rows = series(300, seed=3)
    plain = rollwise("anomaly", "score", str(write(tmp_path / "plain.csv", rows)))
    other = rollwise("anomaly", "score", str(write(tmp_path / "other.csv", rows, newline=newline, final=final)))
    assert scored(other) == scored(plain)


def test_epoch_and_iso_timestamps_score_alike(tmp_path: Path) -> None:
    rows = series(600, seed=4)
    epoch = [(str(1396310400 + 300 * i), v) for i, (_, v) in enumerate(rows)]
    iso = [(t.replace(" ", "T") + "Z", v) for t, v in rows]
    a = scored(rollwise("anomaly", "score", str(write(tmp_path / "epoch.csv", epoch))))
    b = scored(rollwise("anomaly", "score", str(write(tmp_path / "iso.csv", iso))))
    assert [s for _, _, s in a] == [s for _, _, s in b]


@pytest.mark.parametrize(("content", "names"), [
    ("", "line 1"),
    ("timestamp,value\n", "line 2"),
    ("time,value\n2014-04-01 00:00:00,1\n", "line 1: header has no timestamp column"),
    ("timestamp,value\n2014-04-01 00:00:00,1\n2014-04-01 00:05:00,abc\n", "line 3: value 'abc' is not a number"),
    ("timestamp,value\n2014-04-01 00:00:00,1\nyesterday,2\n", "line 3: timestamp 'yesterday'"),
    ("timestamp,value\r\n2014-04-01 00:00:00,1\r\n2014-04-01 00:05:00\r\n", "line 3: expected 2 columns"),
])
def test_a_malformed_file_exits_2_with_one_line_naming_the_line(tmp_path: Path, content: str, names: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    result = rollwise("anomaly", "score", str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and names in lines[0] and "Traceback" not in result.stderr


def test_a_missing_file_exits_2(tmp_path: Path) -> None:
    result = rollwise("anomaly", "score", str(tmp_path / "nope.csv"))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
