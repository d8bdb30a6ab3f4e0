"""Exemplar traces of the canary: the slowest and the failed ones, with the span where the error or the
time originated and a link to the whole trace (``GET /api/v1/traces/<id>`` on ``rollwise serve``).

The references come from the windows' ``VersionStats.extra`` (``exemplar.failed:<trace id>:<span>`` and
``exemplar.slow:…`` -> duration in ms), which the ``otlp`` metric source fills from the traces the
server kept (``telemetry/exemplars.py``); the spans themselves stay in the server (kept an hour).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rollwise.core.model import Window
from rollwise.telemetry.exemplars import FAILED_KEY, SLOW_KEY

SHOWN = 3  # of each kind
TRACE_PATH = "/api/v1/traces/"


@dataclass(frozen=True)
class TraceExample:
    kind: str  # "failed" or "slow"
    trace_id: str
    origin: str  # the span where the error (failed) or the time (slow) originated
    duration_ms: float

    @property
    def link(self) -> str:
        return TRACE_PATH + self.trace_id

    def text(self) -> str:
        where = "error originated in" if self.kind == "failed" else "most time spent in"
        return f"{self.kind} trace {self.trace_id} ({self.duration_ms:.0f} ms): {where} span {self.origin!r} " \
               f"— {self.link}"


def trace_examples(windows: Sequence[Window]) -> list[TraceExample]:
    """The canary's failed exemplars (latest first), then its slowest, ``SHOWN`` of each, over ``windows``."""
    failed: list[tuple[float, TraceExample]] = []
    slow: list[TraceExample] = []
    for order, window in enumerate(windows):
        if window.canary is None:
            continue
        for key, duration in window.canary.extra.items():
            for prefix, kind in ((FAILED_KEY, "failed"), (SLOW_KEY, "slow")):
                if key.startswith(prefix) and ":" in key[len(prefix):]:
                    trace_id, origin = key[len(prefix):].split(":", 1)
                    example = TraceExample(kind, trace_id, origin, float(duration))
                    if kind == "failed":
                        failed.append((order, example))
                    else:
                        slow.append(example)
    failed.sort(key=lambda pair: -pair[0])
    slow.sort(key=lambda e: -e.duration_ms)
    return [e for _, e in failed[:SHOWN]] + slow[:SHOWN]
