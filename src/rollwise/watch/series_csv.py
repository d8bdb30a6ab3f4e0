"""Reading a ``timestamp,value`` series from CSV text, strictly: a mistake names its line.

Pure (text in, rows out), so ``rollwise anomaly score`` and the benchmark read files the same way.
Line endings may be ``\\n``, ``\\r\\n`` or ``\\r``, with or without a final one; blank lines are skipped.
Timestamps are ISO 8601 (``2014-04-01 00:00:00``, ``2014-04-01T00:00:00Z``, with an offset; naive ones are
UTC) or epoch numbers (seconds, or milliseconds when above 1e11).
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_MILLISECONDS_ABOVE = 1e11


class SeriesFormatError(ValueError):
    """A malformed series file; the message names the line."""


@dataclass(frozen=True)
class Row:
    """One data row: the fields as written (echoed back) and what they mean."""

    timestamp_text: str
    value_text: str
    timestamp: float
    value: float


def parse_timestamp(text: str) -> float:
    """Epoch seconds of an ISO 8601 time or an epoch number; ValueError when it is neither."""
    stripped = text.strip()
    try:
        number = float(stripped)
    except ValueError:
        number = math.nan
    if math.isfinite(number):
        return number / 1000.0 if abs(number) > _MILLISECONDS_ABOVE else number
    moment = datetime.fromisoformat(stripped.replace("Z", "+00:00") if stripped.endswith("Z") else stripped)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_series(text: str) -> list[Row]:
    """The rows of a CSV with a header naming ``timestamp`` and ``value`` columns (others are ignored)."""
    numbered = [(i + 1, line) for i, line in enumerate(_LINE_BREAK.split(text.removeprefix("\ufeff")))
                if line.strip()]
    if not numbered:
        raise SeriesFormatError("line 1: empty file (expected a header `timestamp,value` and rows)")
    records = csv.reader(line for _, line in numbered)
    header_line = numbered[0][0]
    header = [name.strip().lower() for name in next(records)]
    missing = [name for name in ("timestamp", "value") if name not in header]
    if missing:
        raise SeriesFormatError(f"line {header_line}: header has no {' or '.join(missing)} column "
                                f"(expected `timestamp,value`)")
    at_t, at_v = header.index("timestamp"), header.index("value")
    width = max(at_t, at_v) + 1
    rows: list[Row] = []
    for (line_no, _), fields in zip(numbered[1:], records, strict=True):
        if len(fields) < width:
            raise SeriesFormatError(f"line {line_no}: expected {len(header)} columns "
                                    f"({','.join(header)}), found {len(fields)}")
        rows.append(_row(line_no, fields[at_t], fields[at_v]))
    if not rows:
        raise SeriesFormatError(f"line {header_line + 1}: no data rows after the header")
    return rows


def _row(line_no: int, timestamp_text: str, value_text: str) -> Row:
    try:
        value = float(value_text)
    except ValueError:
        raise SeriesFormatError(f"line {line_no}: value {value_text!r} is not a number") from None
    if not math.isfinite(value):
        raise SeriesFormatError(f"line {line_no}: value {value_text!r} is not a finite number")
    try:
        timestamp = parse_timestamp(timestamp_text)
    except (ValueError, OverflowError):
        raise SeriesFormatError(f"line {line_no}: timestamp {timestamp_text!r} is not ISO 8601 "
                                f"or an epoch number") from None
    return Row(timestamp_text, value_text, timestamp, value)
