"""Exemplar traces kept from OTLP spans: bounded per series and minute, with the span where the error or
the time originated (``telemetry/exemplars.py``, fed through ``SpanAggregates``)."""

from __future__ import annotations

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from rollwise.core.model import Window
from rollwise.report.exemplars import trace_examples
from rollwise.telemetry.aggregate import SpanAggregates
from rollwise.telemetry.exemplars import FAILED_KEY, RECENT_S, SLOW_KEY, K

NOW = 1_700_000_000.0


def _span(trace: int, span: int, parent: int, name: str, start_ms: float, end_ms: float, error: bool = False
          ) -> Span:
    return Span(trace_id=trace.to_bytes(16, "big"), span_id=span.to_bytes(8, "big"),
                parent_span_id=parent.to_bytes(8, "big") if parent else b"", name=name,
                kind=Span.SPAN_KIND_SERVER if not parent else Span.SPAN_KIND_INTERNAL,
                start_time_unix_nano=int((NOW + start_ms / 1000) * 1e9),
                end_time_unix_nano=int((NOW + end_ms / 1000) * 1e9),
                status=Status(code=Status.STATUS_CODE_ERROR if error else Status.STATUS_CODE_UNSET))


def _request(version: str, spans: list[Span]) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    for key, value in (("service.name", "shop"), ("service.version", version)):
        resource.resource.attributes.append(KeyValue(key=key))
        resource.resource.attributes[-1].value.string_value = value
    resource.scope_spans.add().spans.extend(spans)
    return request


def _trace(trace: int, total_ms: float, slow_child: str = "db", fail: bool = False) -> list[Span]:
    """A root of ``total_ms`` with a child taking most of the time and a grandchild that may fail."""
    root = _span(trace, 1, 0, "GET /checkout", 0, total_ms, error=fail)
    root.attributes.append(KeyValue(key="http.route"))
    root.attributes[-1].value.string_value = "/checkout"
    child = _span(trace, 2, 1, slow_child, 1, total_ms - 1)
    grandchild = _span(trace, 3, 2, "payment gateway", 2, 3, error=fail)
    return [grandchild, child, root]


def test_a_failed_trace_names_its_deepest_error_span_and_a_slow_one_its_largest_self_time() -> None:
    spans = SpanAggregates(clock=lambda: NOW)
    spans.add_traces(_request("v2", _trace(7, 500.0, slow_child="render") + _trace(8, 40.0, fail=True)))
    slow, failed = spans.trace(f"{7:032x}"), spans.trace(f"{8:032x}")
    assert slow is not None and failed is not None
    assert (slow.origin, slow.origin_why, slow.failed) == ("render", "time", False)
    assert (failed.origin, failed.origin_why, failed.route) == ("payment gateway", "error", "/checkout")
    assert [s.depth for s in failed.spans] == [0, 2, 1] and failed.spans[0].name == "GET /checkout"
    extra = spans.stats("shop", "v2", NOW - 1, NOW + 2).extra  # type: ignore[union-attr]
    assert extra[f"{SLOW_KEY}{7:032x}:render"] == 500.0
    assert extra[f"{FAILED_KEY}{8:032x}:payment gateway"] == 40.0
    examples = trace_examples([Window(NOW - 1, NOW + 2, None, spans.stats("shop", "v2", NOW - 1, NOW + 2))])
    assert [(e.kind, e.origin, e.link) for e in examples[:1]] == [
        ("failed", "payment gateway", f"/api/v1/traces/{8:032x}")]


def test_children_sent_one_batch_before_their_parent_are_joined() -> None:
    spans = SpanAggregates(clock=lambda: NOW)
    grandchild, child, root = _trace(9, 300.0, fail=True)
    spans.add_traces(_request("v2", [grandchild, child]))
    spans.add_traces(_request("v2", [root]))
    kept = spans.trace(f"{9:032x}")
    assert kept is not None and len(kept.spans) == 3 and kept.origin == "payment gateway"


def test_storage_is_bounded_to_k_slowest_and_k_failed_per_second_and_windows_pin_theirs() -> None:
    now = [NOW]
    spans = SpanAggregates(clock=lambda: now[0])
    for trace in range(1, 41):  # 20 ok traces of growing duration, 20 failed ones, all in one second
        spans.add_traces(_request("v2", _trace(trace, 10.0 + trace, fail=trace > 20)))
    kept = spans.exemplars.recent
    assert len(kept) == 2 * K
    assert {int(t, 16) for t, e in kept.items() if not e.failed} == {18, 19, 20}  # the slowest
    assert {int(t, 16) for t, e in kept.items() if e.failed} == {38, 39, 40}  # the last failed
    assert spans.trace(f"{1:032x}") is None
    spans.stats("shop", "v2", NOW, NOW + 1)  # a judged window reads (and so pins) its K of each kind
    now[0] = NOW + RECENT_S + 5
    spans.add_traces(_request("v2", _trace(99, 5.0)))  # a later export sweeps the old samples
    assert f"{18:032x}" not in spans.exemplars.recent and spans.trace(f"{18:032x}") is not None  # pinned
    now[0] = NOW + 3600 + 5
    spans.add_traces(_request("v2", _trace(100, 5.0)))
    assert spans.trace(f"{18:032x}") is None  # past the retention
