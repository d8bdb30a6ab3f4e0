"""Bounded OTLP storage, stated (issue 17, part 2): retention and sampling per service hold as documented,
and ``rollwise serve`` takes and states them."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

from rollwise.telemetry.aggregate import SpanAggregates
from rollwise.telemetry.limits import ServiceLimits, TelemetryLimits
from support.common import REPO


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _resource(request: ExportTraceServiceRequest | ExportLogsServiceRequest, service: str, container: str) -> object:
    resource = getattr(request, container).add()
    for key, value in (("service.name", service), ("service.version", "v1")):
        resource.resource.attributes.append(KeyValue(key=key))
        resource.resource.attributes[-1].value.string_value = value
    return resource


def _spans(at: float, traces: dict[str, list[int]], failed: bool = True) -> ExportTraceServiceRequest:
    """One failed entry span per trace id, ending at ``at``, for each service."""
    request = ExportTraceServiceRequest()
    for service, ids in traces.items():
        scope = _resource(request, service, "resource_spans").scope_spans.add()  # type: ignore[attr-defined]
        for trace in ids:
            scope.spans.append(Span(
                trace_id=trace.to_bytes(16, "big"), span_id=(trace % 2**63 + 1).to_bytes(8, "big"), name="GET /",
                kind=Span.SPAN_KIND_SERVER, start_time_unix_nano=int((at - 0.01) * 1e9),
                end_time_unix_nano=int(at * 1e9),
                status=Status(code=Status.STATUS_CODE_ERROR if failed else Status.STATUS_CODE_UNSET)))
    return request


def test_each_service_keeps_its_own_retention_and_no_more_buckets_than_stated() -> None:
    clock = Clock(1_700_000_000.0)
    limits = TelemetryLimits().with_retention("10m").with_retention("short=1m")
    assert limits.of("short") == ServiceLimits(retention_s=60.0) and limits.of("long").retention_s == 600.0
    spans = SpanAggregates(clock=clock, limits=limits)
    start = clock.now
    pinned: dict[str, str] = {}
    for second in range(1500):  # one failed request a second for 25 minutes, both services
        clock.now = start + second
        spans.add_traces(_spans(clock.now - 0.5, {"short": [2 * second + 1], "long": [2 * second + 2]}))
        if second == 100:  # a judged window reads (and pins) an exemplar of each
            for service in ("short", "long"):
                spans.stats(service, "v1", clock.now - 10, clock.now)
                pinned[service] = next(iter(spans.exemplars.pinned.values() if service == "short" else
                                            reversed(spans.exemplars.pinned.values()))).trace_id
        if second == 300:  # 200 s later: the short service's linked trace is gone, the long one's is kept
            assert spans.trace(pinned["short"]) is None
            assert spans.trace(pinned["long"]) is not None
        for (service, _), series in spans.series.items():  # the stated bound, at every moment
            assert len(series.buckets) <= limits.of(service).retention_s + 120
    assert len(spans.series[("long", "v1")].buckets) > 600  # the long service really keeps ten minutes
    five_minutes_ago = (clock.now - 300, clock.now - 290)
    assert spans.stats("short", "v1", *five_minutes_ago) is None  # beyond its retention: not served
    kept = spans.stats("long", "v1", *five_minutes_ago)
    assert kept is not None and kept.requests == 10 and kept.errors == 10
    recent = spans.stats("short", "v1", clock.now - 30, clock.now)
    assert recent is not None and recent.requests == 30


def test_sampling_keeps_whole_traces_as_opentelemetrys_trace_id_ratio_sampler_does() -> None:
    clock = Clock(1_700_000_000.0)
    spans = SpanAggregates(clock=clock, limits=TelemetryLimits().with_sample("search=0.25"))
    rng = random.Random(7)
    ids = [rng.getrandbits(128) for _ in range(4000)]
    spans.add_traces(_spans(clock.now - 1, {"search": ids, "cart": ids[:500]}))
    sampler = TraceIdRatioBased(0.25)
    expected = sum(1 for trace in ids if sampler.should_sample(None, trace, "GET /").decision.is_sampled())
    searched = spans.stats("search", "v1", clock.now - 10, clock.now + 1)
    assert searched is not None and searched.requests == expected  # the same traces as the SDK would keep
    assert 860 <= expected <= 1140  # about a quarter (± 5 sigma)
    assert spans.sampled_out == 4000 - expected
    carted = spans.stats("cart", "v1", clock.now - 10, clock.now + 1)
    assert carted is not None and carted.requests == 500  # another service is not sampled

    logs = ExportLogsServiceRequest()
    records = _resource(logs, "search", "resource_logs").scope_logs.add()  # type: ignore[attr-defined]
    for trace in ids[:40]:
        record = records.log_records.add(trace_id=trace.to_bytes(16, "big"), time_unix_nano=int(clock.now * 1e9))
        record.body.string_value = "payment gateway timeout after 3000 ms"
    for _ in range(40):  # no trace: kept systematically at the rate, 10 of 40
        records.log_records.add(time_unix_nano=int(clock.now * 1e9)).body.string_value = "cache miss"
    in_sample = sum(1 for trace in ids[:40] if sampler.should_sample(None, trace, "x").decision.is_sampled())
    assert spans.add_logs(logs) == in_sample + 10


@pytest.mark.parametrize(("option", "value", "says"), [
    ("--otlp-retention", "checkout=5s", "--otlp-retention 'checkout=5s': at least 60s"),
    ("--otlp-retention", "=1h", "the service name before '=' is empty"),
    ("--otlp-sample", "search=1.5", "--otlp-sample 'search=1.5': a share of traces in (0, 1]"),
])
def test_serve_refuses_a_bad_bound_in_one_line(option: str, value: str, says: str) -> None:
    result = subprocess.run([sys.executable, "-m", "rollwise", "serve", option, value, "--store", "sqlite://"],
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 2 and says in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_the_bounds_are_stated() -> None:
    limits = TelemetryLimits().with_sample("0.5").with_retention("checkout=6h").with_retention("30m")
    assert limits.text() == ("OTLP telemetry every service: kept 30m, 0.5 of traces; "
                             "checkout: kept 6h, 0.5 of traces")
    result = subprocess.run([sys.executable, "-m", "rollwise", "serve", "--help"], capture_output=True, text=True,
                            timeout=60, cwd=REPO, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0
    assert "--otlp-retention" in result.stdout and "--otlp-sample" in result.stdout
    assert "Default: 1h" in result.stdout and "Default: 1, every trace" in result.stdout
