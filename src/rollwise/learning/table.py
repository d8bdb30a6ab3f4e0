"""A table of per-change features with an outcome, read from CSV text for the backtest.

The caller reads the file; this module only parses, so every problem it finds is one
``TableError`` naming the column or the line (1-based, the header being line 1).
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

MISSING = frozenset({"", "na", "nan", "null", "none", "n/a", "?"})
TRUE_WORDS = frozenset({"1", "true", "t", "yes", "y", "1.0"})
FALSE_WORDS = frozenset({"0", "false", "f", "no", "n", "0.0"})
# Effort is the change's size in lines, the usual effort-aware JIT defect-prediction measure.
EFFORT_PAIRS = (("la", "ld"), ("lines_added", "lines_deleted"), ("added", "deleted"),
                ("insertions", "deletions"), ("additions", "deletions"))
EPOCH_MS = 1e11  # numbers this large are epoch milliseconds, not seconds (year 5138 in seconds)


class TableError(ValueError):
    """One line naming the column or line of the input that is wrong."""


@dataclass(frozen=True)
class ChangeTable:
    """Rows of changes: numeric features (NaN where missing), outcome, time (epoch s), effort."""

    features: list[str]
    x: np.ndarray
    y: np.ndarray
    time: np.ndarray
    effort: np.ndarray
    effort_columns: tuple[str, ...] = ()
    ignored: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return int(self.y.shape[0])


def parse_label(text: str) -> int | None:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return 1
    if word in FALSE_WORDS:
        return 0
    return None


def parse_number(text: str) -> float | None:
    """A cell as a float: NaN when missing, 1/0 for true/false, ``None`` when not a number."""
    word = text.strip()
    if word.lower() in MISSING:
        return math.nan
    try:
        value = float(word)
    except ValueError:
        label = parse_label(word)
        return None if label is None or word.isdigit() else float(label)
    return value if math.isfinite(value) else math.nan


_GIT_DATE = re.compile(r"^[A-Z][a-z]{2} [A-Z][a-z]{2} +\d{1,2} \d\d:\d\d:\d\d \d{4} [+-]\d{4}$")


def _as_datetime(word: str) -> datetime | None:
    candidates = [word.replace(" UTC", "+00:00")]
    if re.match(r"^\d{4}/", word):  # 2024/01/31 as 2024-01-31 (year first only: 01/02/2024 is ambiguous)
        candidates.append(word.replace("/", "-"))
    for candidate in candidates:
        try:
            return datetime.fromisoformat(candidate)
        except ValueError:
            continue
    if _GIT_DATE.match(word):
        return datetime.strptime(" ".join(word.split()), "%a %b %d %H:%M:%S %Y %z")
    return None


def parse_time(text: str) -> float | None:
    """ISO 8601 (zone optional: UTC when absent; a date alone is its midnight), git's default date
    format, or a number of epoch seconds. ``None`` when it is none of these."""
    word = text.strip()
    try:
        return float(word)
    except ValueError:
        pass
    stamp = _as_datetime(word)
    if stamp is None:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def _delimiter(text: str) -> str:
    """The header line's most frequent of comma, semicolon and tab (a sniffer guesses from free-text
    columns such as commit messages, and guesses wrong)."""
    header = text.split("\n", 1)[0]
    return max((",", ";", "\t"), key=header.count)


def _rows(text: str) -> tuple[list[str], list[int], list[list[str]]]:
    csv.field_size_limit(1 << 24)  # commit messages can be long
    reader = csv.reader(io.StringIO(text), delimiter=_delimiter(text))
    try:
        header = next(reader, None)
        if not header or not any(h.strip() for h in header):
            raise TableError("line 1: no header row")
        names = [h.strip() for h in header]
        lines: list[int] = []
        rows: list[list[str]] = []
        start = reader.line_num + 1
        for row in reader:
            if row and any(cell.strip() for cell in row):
                if len(row) != len(names):
                    raise TableError(f"line {start}: {len(row)} fields, the header has {len(names)}")
                lines.append(start)
                rows.append(row)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise TableError(f"line {reader.line_num}: {exc}") from None
    return names, lines, rows


def _column(names: list[str], wanted: str, role: str) -> int:
    if wanted in names:
        return names.index(wanted)
    folded = [n.lower() for n in names]
    if wanted.lower() in folded:
        return folded.index(wanted.lower())
    raise TableError(f"{role} column {wanted!r} not found; columns: {', '.join(names)}")


def _numeric_columns(names: list[str], rows: list[list[str]], skip: set[int]) -> tuple[list[int], np.ndarray]:
    kept: list[int] = []
    values: list[list[float]] = []
    for j in range(len(names)):
        if j in skip:
            continue
        column: list[float] = []
        for row in rows:
            number = parse_number(row[j])
            if number is None:
                break
            column.append(number)
        else:
            if column and not all(math.isnan(v) for v in column):
                kept.append(j)
                values.append(column)
    matrix = np.array(values, dtype=float).T if values else np.empty((len(rows), 0))
    return kept, matrix


def _effort(features: list[str], x: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    lowered = [f.lower() for f in features]
    for added, deleted in EFFORT_PAIRS:
        if added in lowered and deleted in lowered:
            both = x[:, [lowered.index(added), lowered.index(deleted)]]
            return np.nansum(np.clip(both, 0, None), axis=1), (features[lowered.index(added)],
                                                                features[lowered.index(deleted)])
    return np.ones(x.shape[0]), ()


def _time_proxies(x: np.ndarray, time: np.ndarray) -> list[int]:
    """Feature columns that are the time itself in another unit (an epoch next to an ISO date):
    a learner would only learn the calendar from them."""
    order = np.argsort(np.argsort(time, kind="stable"), kind="stable").astype(float)
    proxies = []
    for j in range(x.shape[1]):
        column = x[:, j]
        ok = ~np.isnan(column)
        if ok.sum() < 3 or np.ptp(column[ok]) == 0:
            continue
        ranks = np.argsort(np.argsort(column[ok], kind="stable"), kind="stable").astype(float)
        if abs(np.corrcoef(ranks, order[ok])[0, 1]) > 0.999:
            proxies.append(j)
    return proxies


def parse_table(text: str, label: str, time: str) -> ChangeTable:
    """The change table in ``text`` (CSV with a header), every other numeric column a feature."""
    names, lines, rows = _rows(text)
    label_at, time_at = _column(names, label, "label"), _column(names, time, "time")
    if not rows:
        raise TableError("no data rows after the header")
    y = np.empty(len(rows), dtype=np.int8)
    times = np.empty(len(rows), dtype=float)
    for i, row in enumerate(rows):
        outcome = parse_label(row[label_at])
        if outcome is None:
            raise TableError(f"line {lines[i]}: label {names[label_at]!r} is {row[label_at]!r}, "
                             "expected 0/1, true/false or yes/no")
        y[i] = outcome
        stamp = parse_time(row[time_at])
        if stamp is None:
            raise TableError(f"line {lines[i]}: time {names[time_at]!r} is {row[time_at]!r}, "
                             "expected an ISO 8601 timestamp or epoch seconds")
        times[i] = stamp
    if np.nanmax(np.abs(times)) > EPOCH_MS:
        times = times / 1000.0
    kept, x = _numeric_columns(names, rows, {label_at, time_at})
    proxies = set(_time_proxies(x, times))
    keep = [k for k in range(len(kept)) if k not in proxies]
    features = [names[kept[k]] for k in keep]
    if not features:
        raise TableError(f"no numeric feature columns besides {names[label_at]!r} and {names[time_at]!r}")
    x = x[:, keep]
    effort, effort_columns = _effort(features, x)
    ignored = [names[j] for j in range(len(names)) if j not in {label_at, time_at} and names[j] not in features]
    return ChangeTable(features, x, y.astype(int), times, effort, effort_columns, ignored)
