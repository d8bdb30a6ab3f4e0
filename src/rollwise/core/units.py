"""Parsing of the human units a spec is written in: durations, percentages, latencies.

Kept separate from the pydantic models so the CLI, the flag scheduler and the simulator can
share one definition of what ``30s`` or ``0.1%`` means.
"""

from __future__ import annotations

import re

# JSON Schema patterns of the text each parser accepts (`rollwise schema` publishes them beside numbers).
_NUM = r"[0-9]+(?:\.[0-9]+)?"
DURATION_PATTERN = rf"^ *(?:{_NUM}|(?:{_NUM} *(?:ms|s|m|h|d) *)+)$"
PERCENT_PATTERN = r"^\s*(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*%?\s*$"
LATENCY_PATTERN = rf"^\s*{_NUM}\s*(?:ms|s)?\s*$"

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: str | int | float) -> float:
    """Seconds from ``30s``, ``5m``, ``1h30m``, ``250ms`` or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration must be like 30s, 5m or 1h, not a boolean")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    text = str(value).strip().replace(" ", "")
    if not text:
        raise ValueError("empty duration")
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        raise ValueError(f"invalid duration {value!r}: use a number with ms, s, m, h or d (e.g. 30s, 5m)")
    return total


def format_duration(seconds: float, exact: bool = False) -> str:
    """Short human form: 90 -> '1m30s', 10.23 -> '10.2s', 0.25 -> '250ms'.

    ``exact=True`` keeps every digit so the text parses back to the same number (spec dumps).
    """
    if exact:
        if seconds < 1:
            return f"{seconds * 1000:g}ms"
        if seconds != int(seconds):
            return f"{seconds:g}s"
    elif seconds < 1:
        return f"{round(seconds * 1000)}ms"
    elif seconds < 60 and seconds != int(seconds):
        return f"{seconds:.1f}s"
    seconds = round(seconds)
    parts = []
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            qty, seconds = divmod(seconds, size)
            parts.append(f"{qty}{unit}")
    return "".join(parts) or "0s"


def parse_fraction(value: str | int | float) -> float:
    """A fraction in [0, 1] from ``0.1%`` (-> 0.001) or a bare fraction like ``0.001``."""
    if isinstance(value, bool):
        raise ValueError("a percentage must be like 0.1%, not a boolean")
    if isinstance(value, int | float):
        result = float(value)
    else:
        text = str(value).strip()
        try:
            result = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
        except ValueError:
            raise ValueError(f"invalid percentage {value!r}: use e.g. 0.1% or 0.001") from None
    if not 0.0 <= result <= 1.0:
        raise ValueError(f"percentage {value!r} must be between 0% and 100%")
    return result


def parse_latency_ms(value: str | int | float) -> float:
    """Milliseconds from ``200ms``, ``1.5s`` or a bare number of milliseconds."""
    if isinstance(value, bool):
        raise ValueError("a latency must be like 200ms, not a boolean")
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms|s)?", text)
    if not match:
        raise ValueError(f"invalid latency {value!r}: use e.g. 200ms or 1.5s")
    number = float(match.group(1))
    return number * 1000.0 if match.group(2) == "s" else number


def format_percent(fraction: float) -> str:
    """0.00123 -> '0.123%'; keeps three significant digits for small rates."""
    pct = fraction * 100.0
    if pct == 0:
        return "0%"
    if abs(pct) >= 10:
        return f"{pct:.1f}%"
    return f"{pct:.3g}%"


def format_when(ts: float, now: float) -> str:
    """An epoch time for people: ``2025-01-31 12:00:05 UTC (2m ago)``."""
    from datetime import UTC, datetime

    ago = round(now - ts)
    relative = "just now" if ago == 0 else f"{format_duration(ago)} ago" if ago > 0 else f"in {format_duration(-ago)}"
    return f"{datetime.fromtimestamp(ts, UTC):%Y-%m-%d %H:%M:%S} UTC ({relative})"
