"""One call of a controller's analysis: add the window since the previous call, ask the judge about
all windows so far, answer in words a ``successCondition`` can test. Pure: the caller reads the window
(Prometheus) and keeps the ``Session`` (the store), so this runs the same under test and in ``serve``.

Argo and Flagger call every interval and remember nothing rollwise needs; the sequential judge's
guarantee is over the whole analysis, so the windows accumulate per session (an Argo ``run``, a
Flagger canary's checksum). Bounded: past ``MAX_WINDOWS`` the two oldest windows are merged into one
(totals kept, so the judge's counts do not change), and the store forgets sessions idle for
``SESSION_TTL_S``. A rollback verdict sticks: later calls of that session answer it again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from rollwise.bridges.contract import BridgeRequest
from rollwise.core.model import Action, StageContext, Verdict, VersionStats, Window
from rollwise.core.protocols import Judge

MAX_WINDOWS = 240
SESSION_TTL_S = 7 * 24 * 3600.0
MIN_WINDOW_S = 1.0

VERDICT_WORDS = {Action.EXPAND: "promote", Action.ROLLBACK: "rollback", Action.CONTINUE: "continue",
                 Action.HOLD: "continue", Action.INCONCLUSIVE: "inconclusive"}
"""What a controller reads: ``promote`` (no regression, enough evidence), ``rollback`` (regression
decided), ``continue`` (not decided yet, or no data), ``inconclusive`` (undecided at its cap)."""


@dataclass
class Session:
    key: str
    started_at: float
    last_end: float | None = None
    windows: list[Window] = field(default_factory=list)
    verdict: str = "continue"
    answer: dict[str, Any] = field(default_factory=dict)

    def window_start(self, request: BridgeRequest, now: float) -> float:
        """Where the next window starts: the previous call's end, or ``lookback`` before the first call."""
        return self.last_end if self.last_end is not None else now - request.lookback_s

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "started_at": self.started_at, "last_end": self.last_end,
                "windows": [_window_json(w) for w in self.windows],
                "verdict": self.verdict, "answer": self.answer}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Session:
        return cls(key=data["key"], started_at=data["started_at"], last_end=data.get("last_end"),
                   windows=[_window_from(w) for w in data.get("windows", [])],
                   verdict=data.get("verdict", "continue"), answer=data.get("answer") or {})


def judge_call(session: Session, request: BridgeRequest, judge: Judge, window: Window | None,
               now: float) -> Session:
    """The session after this call: ``window`` (None: too short to read) added and judged, unless a
    rollback was already decided. ``session.answer`` is the JSON to send back."""
    if session.verdict == "rollback":
        return session
    if window is not None:
        session.windows.append(window)
        session.last_end = window.end
        while len(session.windows) > MAX_WINDOWS:
            session.windows[:2] = [_merge(session.windows[0], session.windows[1])]
    context = StageContext(analysis=request.analysis, stage_index=0, canary_weight=0.0,
                           stage_started_at=session.started_at, now=now, windows=tuple(session.windows),
                           carry={})  # one stage: the judge re-reads every window, nothing to hand on
    verdict = judge.evaluate(context)
    session.verdict = VERDICT_WORDS[verdict.action]
    session.answer = answer(session, request, verdict, now)
    return session


def answer(session: Session, request: BridgeRequest, verdict: Verdict, now: float) -> dict[str, Any]:
    """The JSON a controller gets: the verdict word first, then why and the numbers."""
    evidence = verdict.to_evidence()
    evidence.pop("carry", None)  # the judge's own state stays in the store, not in the answer
    return finite({
        "verdict": session.verdict,
        "action": str(verdict.action),
        "reason": verdict.reason,
        "rule": verdict.rule,
        "culprit": verdict.culprit,
        "session": session.key,
        "windows": len(session.windows),
        "elapsed_s": round(now - session.started_at, 3),
        "baseline": _side(request.baseline, [w.baseline for w in session.windows]),
        "canary": _side(request.canary, [w.canary for w in session.windows]),
        "evidence": evidence,
    })


def _side(version: str, stats: list[VersionStats | None]) -> dict[str, Any]:
    requests = sum(s.requests for s in stats if s is not None)
    errors = sum(s.errors for s in stats if s is not None)
    return {"version": version, "requests": requests, "errors": errors,
            "errorRate": errors / requests if requests else None}


def finite(value: Any) -> Any:
    """``value`` with NaN and infinities as null: JSON (and Argo's expression language) has neither."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def _merge(a: Window, b: Window) -> Window:
    return Window(a.start, b.end, _merge_stats(a.baseline, b.baseline), _merge_stats(a.canary, b.canary))


def _merge_stats(a: VersionStats | None, b: VersionStats | None) -> VersionStats | None:
    if a is None or b is None:
        return a or b
    buckets: dict[float, int] = {}
    for bound, count in (*a.latency_buckets, *b.latency_buckets):
        buckets[bound] = buckets.get(bound, 0) + count
    return VersionStats(requests=a.requests + b.requests, errors=a.errors + b.errors,
                        latency_buckets=tuple(sorted(buckets.items())),
                        latency_sum_ms=a.latency_sum_ms + b.latency_sum_ms)


def _window_json(window: Window) -> dict[str, Any]:
    return {"start": window.start, "end": window.end,
            "baseline": finite(window.baseline.to_dict()) if window.baseline else None,
            "canary": finite(window.canary.to_dict()) if window.canary else None}


def _window_from(data: dict[str, Any]) -> Window:
    def side(raw: dict[str, Any] | None) -> VersionStats | None:
        return VersionStats.from_dict(raw) if raw is not None else None

    return Window(data["start"], data["end"], side(data.get("baseline")), side(data.get("canary")))
