"""Which kinds of log line the canary brought: templates new in the canary, or logged more often per request.

The counts come from the windows' ``VersionStats.extra`` (``log.count:<template>``), which the ``otlp``
metric source fills from the OTLP logs the server mined into templates (``telemetry/logs.py``).

Both calls ask one question: could traffic alone explain how the template's records split between the
versions? If both logged it at one rate per request, each record lands in the canary with probability
``share`` (its fraction of the requests), so the canary's count, given the total, is binomial; its upper
tail is the one-sided p (the exact conditional test of two Poisson rates). When the baseline never logged
the template that p is ``share ** k`` for the canary's ``k`` records.

A template is **new** when the baseline never logged it, the canary did at least ``MIN_RECORDS`` times,
and p is at most ``NEW_P``: three records on a 10 % canary pass (p 0.001), an even split takes seven. A
fixed count would not do: a canary rolled back after its third failed request must still show the line
those failures logged. A template **rose** when its rate per request is at least ``RISE_RATIO`` times the
baseline's and p is at most ``RISE_P``; with no baseline traffic, neither is called.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from scipy.stats import binom

from rollwise.core.model import VersionStats, Window
from rollwise.telemetry.aggregate import LOG_KEY

MIN_RECORDS = 3
NEW_P = 0.01
RISE_RATIO = 3.0
RISE_P = 0.001
SHOWN = 5


@dataclass(frozen=True)
class LogChange:
    template: str
    change: str  # "new" or "rose"
    canary_records: int
    baseline_records: int
    canary_per_1k: float  # records per 1000 requests
    baseline_per_1k: float

    def text(self) -> str:
        if self.change == "new":
            return f"new in the canary: {self.template!r} ({self.canary_records} records, " \
                   f"{self.canary_per_1k:.1f} per 1000 requests; never in the baseline)"
        return f"rose: {self.template!r} ({self.canary_per_1k:.1f} vs {self.baseline_per_1k:.1f} per 1000 requests)"


def log_changes(windows: Sequence[Window]) -> list[LogChange]:
    """Templates new or rising in the canary over ``windows``, new ones first, most records first."""
    canary = VersionStats.merge([w.canary for w in windows if w.canary is not None])
    baseline = VersionStats.merge([w.baseline for w in windows if w.baseline is not None])
    found = []
    for key, value in canary.extra.items():
        if not key.startswith(LOG_KEY):
            continue
        change = _change(key[len(LOG_KEY):], int(value), int(baseline.extra.get(key, 0.0)), canary.requests,
                         baseline.requests)
        if change is not None:
            found.append(change)
    found.sort(key=lambda c: (c.change != "new", -c.canary_records, c.template))
    return found[:SHOWN]


def _change(template: str, ours: int, theirs: int, requests: int, baseline_requests: int) -> LogChange | None:
    if ours < MIN_RECORDS or requests == 0:
        return None
    per_1k = 1000 * ours / requests
    base_per_1k = 1000 * theirs / baseline_requests if baseline_requests else 0.0
    p = _traffic_explains(ours, theirs, requests, baseline_requests)
    if theirs == 0:
        return LogChange(template, "new", ours, theirs, per_1k, base_per_1k) if p <= NEW_P else None
    if per_1k < RISE_RATIO * base_per_1k or p > RISE_P:
        return None
    return LogChange(template, "rose", ours, theirs, per_1k, base_per_1k)


def _traffic_explains(ours: int, theirs: int, requests: int, baseline_requests: int) -> float:
    """P(the canary holds ``ours`` or more of the ``ours + theirs`` records | one rate per request for both)."""
    share = requests / (requests + baseline_requests)
    return float(binom.sf(ours - 1, ours + theirs, share))
