"""Spans into per-version request, error and latency counts: the judge's windows without Envoy.

Which spans count: entry spans (kind SERVER or CONSUMER, or any span without a parent), one request
each. An error is a span with status ERROR, or an HTTP status >= 500 (``http.response.status_code``,
or the older ``http.status_code``). Latency is the span's duration, counted into fixed millisecond
buckets. The version is the resource attribute ``service.version``; a span that evaluated a feature
flag (OpenFeature's ``feature_flag.key`` with ``feature_flag.result.variant`` or the older
``feature_flag.variant``, on the span or its ``feature_flag`` event) also counts for the version
``<flag key>:<variant>``, so a flag rollout can be judged on its variants. Each count is also split by
the span's ``http.route`` (at most ``MAX_ROUTES`` per second and series), for the RCA's per-route view.

Bounded, as stated: every counted span lands in a per-second bucket of its (service, version) series;
buckets older than the service's retention (``telemetry/limits.py``: default 1 h, per service with
``serve --otlp-retention``) are dropped, at most ``max_series`` series are kept (least recently written
dropped first); raw spans are kept only as a few exemplar traces per series and second
(``telemetry/exemplars.py``). A service may be sampled (``serve --otlp-sample``: a share of its traces, by
trace id; the rest are ``sampled_out``). Logs and metrics are decoded and counted per service and version
(``log_records``, ``metric_points``); log bodies are also counted per template (``telemetry/logs.py``,
Drain3) and saturation metrics kept per second (``telemetry/saturation.py``) for the RCA, not judged on.
Spans ending longer ago than the retention or more than a minute in the future are not counted (``dropped``).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from rollwise.core.model import VersionStats
from rollwise.telemetry.exemplars import Exemplar, ExemplarTraces
from rollwise.telemetry.limits import ServiceLimits, TelemetryLimits
from rollwise.telemetry.logs import LogTemplates
from rollwise.telemetry.saturation import gauge_points, window_means

LATENCY_BOUNDS_MS = (5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, math.inf)
_ENTRY_KINDS = (2, 5)  # SPAN_KIND_SERVER, SPAN_KIND_CONSUMER
_STATUS_ERROR = 2
_HTTP_STATUS = ("http.response.status_code", "http.status_code")
_ROUTE = "http.route"
MAX_ROUTES = 50  # per bucket; further routes count as OTHER_ROUTE
OTHER_ROUTE = "(other routes)"
ROUTE_KEYS = ("route.requests:", "route.errors:", "route.latency_sum_ms:")
LOG_KEY = "log.count:"  # ``VersionStats.extra`` key of a log template's count, read by ``report/logs.py``
MAX_LOG_TEMPLATES = 100  # per bucket; the rest are not split
"""``VersionStats.extra`` keys of the per-route split (``http.route``), read by the RCA (``report/routes.py``)."""
_FLAG_KEY, _FLAG_VARIANTS = "feature_flag.key", ("feature_flag.result.variant", "feature_flag.variant")


@dataclass
class Bucket:
    requests: int = 0
    errors: int = 0
    latency_sum_ms: float = 0.0
    latency: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BOUNDS_MS))
    routes: dict[str, list[float]] = field(default_factory=dict)  # route -> [requests, errors, latency_sum_ms]
    logs: dict[int, int] = field(default_factory=dict)  # log template id -> records
    gauges: dict[str, dict[Any, float]] = field(default_factory=dict)  # saturation key -> attributes -> last

    def add(self, error: bool, duration_ms: float, route: str | None) -> None:
        self.requests += 1
        self.errors += error
        self.latency_sum_ms += duration_ms
        for i, bound in enumerate(LATENCY_BOUNDS_MS):
            if duration_ms <= bound:
                self.latency[i] += 1
                break
        if route is not None:
            counts = self.routes.get(route)
            if counts is None:
                route = route if len(self.routes) < MAX_ROUTES else OTHER_ROUTE
                counts = self.routes.setdefault(route, [0, 0, 0.0])
            counts[0] += 1
            counts[1] += error
            counts[2] += duration_ms


@dataclass
class Series:
    buckets: dict[int, Bucket] = field(default_factory=dict)
    log_records: int = 0
    metric_points: int = 0


class SpanAggregates:
    """Every service's per-version counts, per second; safe to feed and read from different threads."""

    def __init__(self, clock: Callable[[], float], retention_s: float = 3600.0, max_series: int = 1000,
                 limits: TelemetryLimits | None = None) -> None:
        self.clock = clock
        self.limits = limits or TelemetryLimits(ServiceLimits(retention_s=retention_s))
        self.retention_s = self.limits.longest_retention_s
        self.max_series = max_series
        self.series: OrderedDict[tuple[str, str], Series] = OrderedDict()
        self.dropped = 0
        self.sampled_out = 0  # spans and log records of traces outside a service's sample
        self.templates: dict[str, LogTemplates] = {}  # per service
        # a few whole traces per series and second, the linked ones kept for their service's retention
        self.exemplars = ExemplarTraces(max_series, self.retention_s, retention_of=(
            (lambda service: self.limits.of(service).retention_s) if self.limits.overrides else None))
        self._unsampled_logs: dict[str, float] = {}  # per service: systematic sampling of trace-less records
        self._lock = threading.Lock()

    def add_traces(self, request: Any) -> int:
        """Count the entry spans of an ``ExportTraceServiceRequest``; how many were counted."""
        now = self.clock()
        newest = int(now + 60)
        counted = 0
        entries: list[tuple[str, str, Any, int, bool, str | None]] = []  # exemplar candidates
        with self._lock:
            for resource_spans in request.resource_spans:
                service, version = _service_version(resource_spans.resource.attributes)
                series = self._series(service, version)
                limits = self.limits.of(service)
                oldest = int(now - limits.retention_s)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        if limits.sample < 1.0 and not limits.keeps_trace(span.trace_id):
                            self.sampled_out += 1
                            continue
                        if span.parent_span_id and span.kind not in _ENTRY_KINDS:
                            self.exemplars.remember_child(span)
                            continue
                        second = span.end_time_unix_nano // 1_000_000_000
                        if not oldest <= second <= newest:
                            self.dropped += 1
                            continue
                        http_error, route = _http_facts(span.attributes)
                        error = http_error or span.status.code == _STATUS_ERROR
                        duration_ms = max(0, span.end_time_unix_nano - span.start_time_unix_nano) / 1e6
                        _bucket(series, second).add(error, duration_ms, route)
                        counted += 1
                        if self.exemplars.wanted(service, version, second, duration_ms, error):
                            entries.append((service, version, span, second, error, route))
                        flag = _flag_variant(span)
                        if flag is not None:
                            _bucket(self._series(service, flag), second).add(error, duration_ms, route)
            for entry in entries:  # after the loop: their children may come later in the same request
                self.exemplars.keep(*entry)
            self.exemplars.forget_before(int(now))
            self._forget_old(now)
        return counted

    def add_logs(self, request: Any) -> int:
        """Count log records per service and version, and per template of their body by the second they
        were observed in (records without a time count now)."""
        counted = 0
        now = self.clock()
        with self._lock:
            for resource_logs in request.resource_logs:
                service, version = _service_version(resource_logs.resource.attributes)
                series = self._series(service, version)
                limits = self.limits.of(service)
                templates = self.templates.get(service) or self.templates.setdefault(service, LogTemplates())
                for scope in resource_logs.scope_logs:
                    for record in scope.log_records:
                        if limits.sample < 1.0 and not self._log_sampled(service, limits, record.trace_id):
                            self.sampled_out += 1
                            continue
                        series.log_records += 1
                        counted += 1
                        line = _value(record.body)
                        if not isinstance(line, str) or not line:
                            continue
                        nanos = record.time_unix_nano or record.observed_time_unix_nano
                        second = nanos // 1_000_000_000 if nanos else int(now)
                        if not now - limits.retention_s <= second <= now + 60:  # as for spans
                            self.dropped += 1
                            continue
                        logs = _bucket(series, second).logs
                        template = templates.template_id(line)
                        if template in logs or len(logs) < MAX_LOG_TEMPLATES:
                            logs[template] = logs.get(template, 0) + 1
            self._forget_old(now)
        return counted

    def add_metrics(self, request: Any) -> int:
        """Count data points per service and version; keep the saturation ones (``telemetry/saturation.py``)
        per second."""
        counted = 0
        now = self.clock()
        with self._lock:
            for resource_metrics in request.resource_metrics:
                service, version = _service_version(resource_metrics.resource.attributes)
                series = self._series(service, version)
                oldest = now - self.limits.of(service).retention_s
                for scope in resource_metrics.scope_metrics:
                    for metric in scope.metrics:
                        points = _points(metric)
                        series.metric_points += points
                        counted += points
                        for key, second, attributes, value in gauge_points(metric):
                            if oldest <= second <= now + 60:
                                _bucket(series, second).gauges.setdefault(key, {})[attributes] = value
            self._forget_old(now)
        return counted

    def _log_sampled(self, service: str, limits: ServiceLimits, trace_id: bytes) -> bool:
        """A record with a trace follows the trace's choice; one without is kept systematically at the rate."""
        if trace_id:
            return limits.keeps_trace(trace_id)
        before = self._unsampled_logs.get(service, 0.0)
        after = self._unsampled_logs[service] = before + limits.sample
        return int(after) > int(before)

    def stats(self, service: str, version: str, start: float, end: float) -> VersionStats | None:
        """What ``version`` of ``service`` served in the seconds [start, end); None when nothing arrived."""
        with self._lock:
            series = self.series.get((service, version))
            if series is None:
                return None
            chosen = self._chosen(service, series, start, end)
            split = self._detail(service, version, chosen, start, end)
        if not any(b.requests for b in chosen):
            return None
        counts = [sum(b.latency[i] for b in chosen) for i in range(len(LATENCY_BOUNDS_MS))]
        cumulative, running = [], 0
        for bound, count in zip(LATENCY_BOUNDS_MS, counts, strict=True):
            running += count
            cumulative.append((bound, running))
        return VersionStats(requests=sum(b.requests for b in chosen), errors=sum(b.errors for b in chosen),
                            latency_buckets=tuple(cumulative), latency_sum_ms=sum(b.latency_sum_ms for b in chosen),
                            extra=split)

    def detail(self, service: str, version: str, start: float, end: float) -> dict[str, float]:
        """What the RCA reads of [start, end) beside the counts, as ``VersionStats.extra`` keys: the per-route
        split, log template counts, exemplar traces and saturation; empty when nothing arrived. For a window
        another source counted (``telemetry/enrich.py``)."""
        with self._lock:
            series = self.series.get((service, version))
            if series is None:
                return {}
            chosen = self._chosen(service, series, start, end)
            return self._detail(service, version, chosen, start, end)

    def _chosen(self, service: str, series: Series, start: float, end: float) -> list[Bucket]:
        """The buckets of [start, end) still within the service's retention."""
        start = max(start, self.clock() - self.limits.of(service).retention_s)
        return [b for second, b in series.buckets.items() if start <= second < end]

    def _detail(self, service: str, version: str, chosen: list[Bucket], start: float, end: float
                ) -> dict[str, float]:
        return {**_route_split(chosen), **self._log_split(service, chosen),
                **self.exemplars.in_window(service, version, start, end),
                **window_means(b.gauges for b in chosen if b.gauges)}

    def _log_split(self, service: str, buckets: list[Bucket]) -> dict[str, float]:
        templates = self.templates.get(service)
        counts: dict[int, int] = {}
        for bucket in buckets:
            for template, count in bucket.logs.items():
                counts[template] = counts.get(template, 0) + count
        if templates is None:
            return {}
        return {LOG_KEY + templates.text(template): float(count) for template, count in counts.items()}

    def versions(self, service: str) -> list[str]:
        with self._lock:
            return [version for (name, version) in self.series if name == service]

    def _series(self, service: str, version: str) -> Series:
        key = (service, version)
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = Series()
            while len(self.series) > self.max_series:
                self.series.popitem(last=False)
        else:
            self.series.move_to_end(key)
        return series

    def trace(self, trace_id: str) -> Exemplar | None:
        """A kept exemplar trace by its hex id (``GET /api/v1/traces/<id>``)."""
        with self._lock:
            return self.exemplars.get(trace_id.lower())

    def _forget_old(self, now: float) -> None:
        """Trim a series once it holds two minutes more than its service's retention: at most retention +
        120 per-second buckets each."""
        for (service, _), series in self.series.items():
            retention = self.limits.of(service).retention_s
            if len(series.buckets) > retention + 120:
                oldest = int(now - retention)
                series.buckets = {s: b for s, b in series.buckets.items() if s >= oldest}


def _bucket(series: Series, second: int) -> Bucket:
    bucket = series.buckets.get(second)
    if bucket is None:
        bucket = series.buckets[second] = Bucket()
    return bucket


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


def _service_version(attributes: Iterable[Any]) -> tuple[str, str]:
    service, version = "unknown_service", "unknown"
    for attribute in attributes:
        if attribute.key == "service.name":
            service = str(_value(attribute.value))
        elif attribute.key == "service.version":
            version = str(_value(attribute.value))
    return service, version


def _http_facts(attributes: Iterable[Any]) -> tuple[bool, str | None]:
    """Whether the HTTP status says server error, and the route template (``http.route``), in one pass."""
    error, route = False, None
    for attribute in attributes:
        if attribute.key in _HTTP_STATUS:
            try:
                error = int(_value(attribute.value)) >= 500
            except (TypeError, ValueError):
                error = False
        elif attribute.key == _ROUTE:
            route = str(_value(attribute.value))[:200]
    return error, route


def _route_split(buckets: list[Bucket]) -> dict[str, float]:
    split: dict[str, float] = {}
    for bucket in buckets:
        for route, counts in bucket.routes.items():
            for key, value in zip(ROUTE_KEYS, counts, strict=True):
                split[key + route] = split.get(key + route, 0.0) + value
    return split


def _flag_variant(span: Any) -> str | None:
    """``<flag key>:<variant>`` when the span (or its ``feature_flag`` event) says which variant it got."""
    found = _flag_in(span.attributes)
    if found is None:
        for event in span.events:
            if event.name == "feature_flag" or event.name.startswith("feature_flag"):
                found = _flag_in(event.attributes)
                if found is not None:
                    break
    return found


def _flag_in(attributes: Iterable[Any]) -> str | None:
    key = variant = None
    for attribute in attributes:
        if attribute.key == _FLAG_KEY:
            key = str(_value(attribute.value))
        elif attribute.key in _FLAG_VARIANTS:
            variant = str(_value(attribute.value))
    return f"{key}:{variant}" if key and variant else None


def _points(metric: Any) -> int:
    kind = metric.WhichOneof("data")
    return len(getattr(metric, kind).data_points) if kind else 0
