"""OTLP bodies in both encodings into per-version counts (issue 17, part 1), built by the OpenTelemetry
SDK's own encoder (protobuf) and by hand from the OTLP specification's JSON rules (hex ids, integer
enums, lowerCamelCase), so the two agree span for span."""

from __future__ import annotations

import gzip
import json
import time
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from rollwise.telemetry.aggregate import SpanAggregates
from rollwise.telemetry.decode import JSON, PROTOBUF, DecodeError, decode, encode_response, inflate, media_type
from support.otlp import json_body


def sdk_spans(version: str, ok: int, failed: int, http_500: int) -> Any:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "shop", "service.version": version}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    for i in range(ok + failed + http_500):
        with tracer.start_as_current_span("GET /cart", kind=SpanKind.SERVER) as span:
            span.set_attribute("http.route", "/cart")
            if i >= ok + failed:
                span.set_attribute("http.response.status_code", 503)
            elif i >= ok:
                span.set_status(Status(StatusCode.ERROR))
            with tracer.start_as_current_span("db", kind=SpanKind.CLIENT):
                pass  # a child span is not a request
    return exporter.get_finished_spans()


def test_protobuf_from_the_sdk_counts_entry_spans_errors_and_http_5xx() -> None:
    body = encode_spans(sdk_spans("v2", ok=7, failed=2, http_500=1)).SerializeToString()
    spans = SpanAggregates(clock=time.time)
    assert spans.add_traces(decode("traces", body, PROTOBUF)) == 10
    stats = spans.stats("shop", "v2", time.time() - 60, time.time() + 1)
    assert stats is not None and (stats.requests, stats.errors) == (10, 3)
    assert stats.latency_buckets[-1][1] == 10 and stats.latency_sum_ms >= 0
    assert spans.stats("shop", "v1", 0, time.time() + 1) is None


def test_json_as_the_specification_writes_it_with_hex_ids_and_flag_variants() -> None:
    spans = SpanAggregates(clock=time.time)
    request = decode("traces", inflate(gzip.compress(json_body("v1", 20, 5)), "gzip"), JSON)
    assert request.resource_spans[0].scope_spans[0].spans[0].trace_id == bytes.fromhex(f"{1:032x}")
    assert spans.add_traces(request) == 20
    now = time.time()
    by_version = spans.stats("shop", "v1", now - 60, now + 1)
    by_variant = spans.stats("shop", "new-cart:on", now - 60, now + 1)
    assert by_version is not None and (by_version.requests, by_version.errors) == (20, 4)
    assert by_variant is not None and by_variant.requests == 20
    assert by_version.latency_buckets[2] == (25.0, 0) and by_version.latency_buckets[3] == (50.0, 20)  # 30 ms


@pytest.mark.parametrize(("body", "kind", "why"), [
    (b"\xff\xff\xff", PROTOBUF, "not an OTLP traces protobuf"),
    (b"{not json", JSON, "not JSON"),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}', JSON, "is not hex"),
    (b'{"resourceSpans": "many"}', JSON, "not OTLP traces JSON"),
])
def test_bodies_that_do_not_decode_say_why_in_one_line(body: bytes, kind: str, why: str) -> None:
    with pytest.raises(DecodeError, match=why) as caught:
        decode("traces", body, kind)
    assert "\n" not in str(caught.value)


def test_media_types_responses_and_bounds() -> None:
    assert media_type("application/x-protobuf") == PROTOBUF and media_type("application/json; charset=utf-8") == JSON
    assert media_type("text/plain") is None
    assert encode_response("traces", PROTOBUF) == b"" and json.loads(encode_response("logs", JSON)) == {}
    with pytest.raises(DecodeError, match="Content-Encoding"):
        inflate(b"x", "br")
    spans = SpanAggregates(clock=lambda: time.time() + 7200)  # the spans are two hours old: past retention
    assert spans.add_traces(decode("traces", json_body("v1", 3, 1), JSON)) == 0 and spans.dropped == 3
    few = SpanAggregates(clock=time.time, max_series=2)
    for version in ("a", "b", "c"):
        few.add_traces(decode("traces", json_body(version, 1, 2), JSON))
    assert few.versions("shop") == ["c", "new-cart:on"]  # the least recently written series went first
