"""Which kinds of log line the canary brought: templates new in the canary, or logged more often per request.

The counts come from the windows' ``VersionStats.extra`` (``log.count:<template>``), which the ``otlp``
metric source fills from the OTLP logs the server mined into templates (``telemetry/logs.py``).

A template is **new** when the baseline never logged it, the canary did at least ``MIN_RECORDS`` times,
and that split is unlikely by chance: if both versions logged it at one rate per request, each record
lands in the canary with probability ``share`` (its fraction of the requests), so all ``k`` of them do
with probability ``share ** k``, which must be at most ``NEW_P``. Three records on a 10 % canary pass
(p 0.001); on a 50/50 split it takes seven. A fixed count would not do: a canary rolled back after its
third failed request must still show the line those failures logged, and an even split needs more.

A template **rose** when its rate per request is at least ``RISE_RATIO`` times the baseline's with a
Poisson z of at least ``RISE_Z`` (pooled rate; one-sided p ≈ 0.001).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rollwise.core.model import VersionStats, Window
from rollwise.telemetry.aggregate import LOG_KEY

MIN_RECORDS = 3
NEW_P = 0.01
RISE_RATIO = 3.0
RISE_Z = 3.1
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
    if theirs == 0:
        share = requests / (requests + baseline_requests)
        return LogChange(template, "new", ours, theirs, per_1k, base_per_1k) if share ** ours <= NEW_P else None
    if baseline_requests == 0 or per_1k < RISE_RATIO * base_per_1k:
        return None
    pooled = (ours + theirs) / (requests + baseline_requests)
    z = (ours / requests - theirs / baseline_requests) / math.sqrt(pooled / requests + pooled / baseline_requests)
    return LogChange(template, "rose", ours, theirs, per_1k, base_per_1k) if z >= RISE_Z else None
