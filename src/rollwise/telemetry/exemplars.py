"""Exemplar traces: a few whole traces kept per service and version, so the RCA can point at the span
where a canary's failure or its time went, not only at counts.

Bounded, as stated: per (service, version) and per second (by the entry span's end), the ``K`` slowest
traces and the last ``K`` failed ones (``K`` = 3), each with at most ``MAX_SPANS`` spans (name, ids,
parent, duration, status), for ``RECENT_S`` (2 minutes); of those, the ones a judged window read (at most
``K`` of each kind per window, linked from its stored evidence) are kept for their service's retention
(``telemetry/limits.py``, default 1 h), at most
``MAX_PINNED`` per server (oldest dropped first). At most ``max_series`` series are kept. A trace's child
spans are matched from the same export request or a small buffer of recent child spans
(``PENDING_TRACES`` traces), since a batching exporter may send a child one batch before its parent.

The origin of a failed trace is its deepest span with status ERROR (the entry span itself when only its
HTTP status said 5xx); of a slow one, the span with the largest self-time (its duration minus its
children's). Pure: no I/O; ``SpanAggregates`` feeds it, ``GET /api/v1/traces/<id>`` reads it.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

K = 3
RECENT_S = 120  # per-second samples kept this long: a window is read a few seconds after it ends
MAX_PINNED = 10_000  # exemplars a stored window links to, per server
MAX_SPANS = 64
PENDING_TRACES = 2000
_STATUS = {0: "unset", 1: "ok", 2: "error"}
SLOW_KEY, FAILED_KEY = "exemplar.slow:", "exemplar.failed:"
"""``VersionStats.extra`` keys ``<prefix><trace id>:<origin span name>`` -> duration in ms, read by the RCA."""


@dataclass(frozen=True)
class SpanView:
    span_id: str
    parent_span_id: str | None
    name: str
    start_unix_nano: int
    duration_ms: float
    status: str  # unset | ok | error
    self_time_ms: float = 0.0
    depth: int = 0


@dataclass(frozen=True)
class Exemplar:
    trace_id: str
    service: str
    version: str
    route: str | None
    duration_ms: float
    failed: bool
    origin: str  # the span's name
    origin_span_id: str
    origin_why: str  # "error" or "time"
    end_s: int
    spans: tuple[SpanView, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Second:
    slowest: list[Exemplar] = field(default_factory=list)  # at most K, slowest first
    failed: deque[Exemplar] = field(default_factory=lambda: deque(maxlen=K))


class ExemplarTraces:
    """The kept exemplars of every series; the caller (``SpanAggregates``) holds the lock."""

    def __init__(self, max_series: int = 1000, retention_s: float = 3600.0,
                 retention_of: Callable[[str], float] | None = None) -> None:
        self.max_series = max_series
        self.retention_s = retention_s  # the longest; ``retention_of(service)`` each service's own
        self.retention_of = retention_of  # None: every service keeps ``retention_s``
        self.series: OrderedDict[tuple[str, str], dict[int, _Second]] = OrderedDict()
        self.recent: dict[str, Exemplar] = {}  # trace id -> exemplar still in a per-second sample
        self.pinned: OrderedDict[str, Exemplar] = OrderedDict()  # referenced by a judged window
        self.pending: OrderedDict[bytes, list[Any]] = OrderedDict()  # trace id -> recent child spans
        self._swept = -1

    def get(self, trace_id: str) -> Exemplar | None:
        return self.pinned.get(trace_id) or self.recent.get(trace_id)

    def remember_child(self, span: Any) -> None:
        spans = self.pending.get(span.trace_id)
        if spans is None:
            spans = self.pending[span.trace_id] = []
            while len(self.pending) > PENDING_TRACES:
                self.pending.popitem(last=False)
        if len(spans) < MAX_SPANS:
            spans.append(span)

    def wanted(self, service: str, version: str, end_s: int, duration_ms: float, failed: bool) -> bool:
        """Whether an entry span would be kept: cheap, so most spans are never turned into an exemplar."""
        if failed:
            return True
        second = self.series.get((service, version), {}).get(end_s)
        return second is None or len(second.slowest) < K or duration_ms > second.slowest[-1].duration_ms

    def keep(self, service: str, version: str, root: Any, end_s: int, failed: bool, route: str | None) -> None:
        exemplar = build_exemplar(service, version, root, self.pending.pop(root.trace_id, []), end_s, failed, route)
        seconds = self._seconds(service, version)
        second = seconds.get(end_s) or seconds.setdefault(end_s, _Second())
        self.recent[exemplar.trace_id] = exemplar
        if failed:
            if len(second.failed) == K:
                self._forget([second.failed[0]])
            second.failed.append(exemplar)
        else:
            second.slowest.append(exemplar)
            second.slowest.sort(key=lambda e: -e.duration_ms)
            self._forget(second.slowest[K:])
            del second.slowest[K:]

    def in_window(self, service: str, version: str, start: float, end: float) -> dict[str, float]:
        """The slowest ``K`` and last ``K`` failed exemplars ending in [start, end), as ``extra`` keys; they
        are pinned (kept for the retention) since a stored window now links to them."""
        seconds = self.series.get((service, version), {})
        chosen = [sample for second, sample in seconds.items() if start <= second < end]
        slow = sorted((e for s in chosen for e in s.slowest), key=lambda e: -e.duration_ms)[:K]
        failed = sorted((e for s in chosen for e in s.failed), key=lambda e: -e.end_s)[:K]
        for exemplar in (*slow, *failed):
            self.pinned[exemplar.trace_id] = exemplar
        while len(self.pinned) > MAX_PINNED:
            self.pinned.popitem(last=False)
        return {**{f"{SLOW_KEY}{e.trace_id}:{e.origin}": e.duration_ms for e in slow},
                **{f"{FAILED_KEY}{e.trace_id}:{e.origin}": e.duration_ms for e in failed}}

    def forget_before(self, now_s: int) -> None:
        """Drop per-second samples older than ``RECENT_S`` and pinned exemplars older than the retention."""
        if now_s == self._swept:
            return  # once a second is enough
        self._swept = now_s
        for seconds in self.series.values():
            for second in [s for s in seconds if s < now_s - RECENT_S]:
                self._forget([*seconds[second].slowest, *seconds[second].failed])
                del seconds[second]
        while self.pinned and next(iter(self.pinned.values())).end_s < now_s - self.retention_s:
            self.pinned.popitem(last=False)
        if self.retention_of is not None:  # a service kept shorter than the longest retention
            retention_of = self.retention_of
            for trace in [t for t, e in self.pinned.items() if e.end_s < now_s - retention_of(e.service)]:
                del self.pinned[trace]

    def _seconds(self, service: str, version: str) -> dict[int, _Second]:
        key = (service, version)
        seconds = self.series.get(key)
        if seconds is None:
            seconds = self.series[key] = {}
            while len(self.series) > self.max_series:
                for gone in self.series.popitem(last=False)[1].values():
                    self._forget([*gone.slowest, *gone.failed])
        else:
            self.series.move_to_end(key)
        return seconds

    def _forget(self, exemplars: Iterable[Exemplar]) -> None:
        """Drop evicted exemplars from the index (each is kept in one sample only, so identity suffices)."""
        for exemplar in exemplars:
            if self.recent.get(exemplar.trace_id) is exemplar:
                del self.recent[exemplar.trace_id]


def build_exemplar(service: str, version: str, root: Any, children: list[Any], end_s: int, failed: bool,
                   route: str | None) -> Exemplar:
    """One trace's spans (the entry span first) and where its error or its time originated."""
    spans = [root, *[s for s in children if s.span_id != root.span_id]][:MAX_SPANS]
    parents = {s.span_id: s.parent_span_id for s in spans}
    child_time: dict[bytes, float] = {}
    for s in spans[1:]:
        child_time[s.parent_span_id] = child_time.get(s.parent_span_id, 0.0) + _duration_ms(s)
    views = [SpanView(span_id=s.span_id.hex(), parent_span_id=s.parent_span_id.hex() or None, name=s.name,
                      start_unix_nano=s.start_time_unix_nano, duration_ms=_duration_ms(s),
                      status=_STATUS.get(s.status.code, "unset"),
                      self_time_ms=max(0.0, _duration_ms(s) - child_time.get(s.span_id, 0.0)),
                      depth=_depth(s.span_id, parents)) for s in spans]
    errors = [v for v in views if v.status == "error"]
    if failed:
        origin, why = (max(errors, key=lambda v: v.depth) if errors else views[0]), "error"
    else:
        origin, why = max(views, key=lambda v: v.self_time_ms), "time"
    return Exemplar(trace_id=root.trace_id.hex(), service=service, version=version, route=route,
                    duration_ms=views[0].duration_ms, failed=failed, origin=origin.name,
                    origin_span_id=origin.span_id, origin_why=why, end_s=end_s, spans=tuple(views))


def _duration_ms(span: Any) -> float:
    return max(0, span.end_time_unix_nano - span.start_time_unix_nano) / 1e6


def _depth(span_id: bytes, parents: dict[bytes, bytes]) -> int:
    depth, seen = 0, {span_id}
    parent = parents.get(span_id)
    while parent and parent in parents and parent not in seen:
        seen.add(parent)
        depth += 1
        parent = parents.get(parent)
    return depth
