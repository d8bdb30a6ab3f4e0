"""OTLP ingestion speed: spans per CPU-second through ``rollwise serve``'s decode + aggregate path, on one core.

The body is what an OpenTelemetry SDK sends: the Python SDK's own OTLP encoder over batches of 512
spans (its BatchSpanProcessor default), half SERVER spans with the usual HTTP attributes and half their
CLIENT children (decoded but not counted as requests). Timed with ``time.process_time`` (CPU of this one
thread), so a busy machine slows the wall clock, not the figure. Printed beside a baseline run on the
same bodies: protobuf decoding alone (upb), the floor any Python ingester pays, so the ratio says what
aggregation costs on top. The JSON encoding is measured too (slower: protobuf's JSON mapping in Python).

    python bench/otlp.py [--batches 200] [--out bench/results/otlp.md]
"""

from __future__ import annotations

import argparse
import base64
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from rollwise.telemetry.aggregate import SpanAggregates
from rollwise.telemetry.decode import JSON, PROTOBUF, decode

TARGET = 50_000  # spans per second on one core (issue 17)
BATCH = 512


def sdk_batch(version: str) -> bytes:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "shop", "service.version": version}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("bench")
    for i in range(BATCH // 2):
        with tracer.start_as_current_span("GET /cart/{id}", kind=SpanKind.SERVER) as span:
            span.set_attributes({"http.request.method": "GET", "http.route": "/cart/{id}", "url.path": f"/cart/{i}",
                                 "server.address": "shop", "server.port": 8080, "network.protocol.version": "1.1",
                                 "http.response.status_code": 500 if i % 50 == 0 else 200})
            if i % 100 == 0:
                span.set_status(Status(StatusCode.ERROR))
            with tracer.start_as_current_span("SELECT carts", kind=SpanKind.CLIENT) as child:
                child.set_attributes({"db.system": "postgresql", "db.operation.name": "SELECT"})
    return encode_spans(exporter.get_finished_spans()).SerializeToString()


def json_of(body: bytes) -> bytes:
    """The same batch in OTLP/JSON (hex ids as the specification writes them)."""
    data = json_format.MessageToDict(decode("traces", body, PROTOBUF))
    for resource_spans in data["resourceSpans"]:
        for scope in resource_spans["scopeSpans"]:
            for span in scope["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return json.dumps(data).encode()


def spans_per_cpu_second(bodies: list[bytes], work: Callable[[bytes], object]) -> float:
    started = time.process_time()
    for body in bodies:
        work(body)
    return len(bodies) * BATCH / (time.process_time() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("bench/results/otlp.md"))
    args = parser.parse_args()
    distinct = [sdk_batch(v) for v in ("v1", "v2")]
    bodies = [distinct[i % 2] for i in range(args.batches)]
    spans = SpanAggregates(clock=time.time)
    runs = {
        "decode only (protobuf, baseline)": spans_per_cpu_second(bodies, lambda b: decode("traces", b, PROTOBUF)),
        "decode + aggregate (protobuf)": spans_per_cpu_second(
            bodies, lambda b: spans.add_traces(decode("traces", b, PROTOBUF))),
    }
    json_bodies = [json_of(b) for b in distinct]
    json_runs = [json_bodies[i % 2] for i in range(max(4, args.batches // 10))]
    runs["decode + aggregate (JSON)"] = spans_per_cpu_second(
        json_runs, lambda b: spans.add_traces(decode("traces", b, JSON)))
    base = runs["decode only (protobuf, baseline)"]
    lines = [
        "# OTLP ingestion (bench/otlp.py)", "",
        f"Command: `python bench/otlp.py --batches {args.batches}`", "",
        f"Python {platform.python_version()} on {platform.machine()}, protobuf backend upb; one thread, CPU time "
        f"(`time.process_time`). Batches of {BATCH} spans from the OpenTelemetry SDK's OTLP encoder, half SERVER "
        "spans (counted as requests) and half CLIENT children. Target: "
        f"{TARGET:,} spans/s on one core.", "",
        "| path | spans per CPU-second | vs decode only |", "|---|---|---|",
        *(f"| {name} | {rate:,.0f} | {rate / base:.2f}x |" for name, rate in runs.items()), "",
        f"Protobuf ingestion {'meets' if runs['decode + aggregate (protobuf)'] >= TARGET else 'misses'} the target "
        f"({runs['decode + aggregate (protobuf)']:,.0f} vs {TARGET:,} spans/s). JSON goes through protobuf's JSON "
        "mapping in Python and is slower; SDKs and the Collector export protobuf by default.", "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    sys.stdout.write("\n".join(lines))


if __name__ == "__main__":
    main()
