"""The demo's own OTLP/HTTP receiver: the demo service's OpenTelemetry SDK exports to it as to ``rollwise serve``,
and without the ``otel`` extra the demo runs without telemetry and says why."""

from __future__ import annotations

import sys
import time

import httpx
import pytest

from rollwise.demo.otel import OtlpExport
from rollwise.demo.receiver import OtlpReceiver, otel_sdk_missing
from rollwise.demo.scenarios import SCENARIOS, spec_text
from rollwise.demo.service import route_of
from rollwise.telemetry.aggregate import SpanAggregates


def test_the_sdk_exports_spans_and_logs_to_the_demo_receiver() -> None:
    receiver = OtlpReceiver(SpanAggregates(clock=time.time)).start()
    try:
        export = OtlpExport(receiver.url, "demo", "v2")
        for user, status in enumerate((200, 200, 500)):
            with export.request("/checkout") as span:
                started = time.monotonic()
                with export.handling("/checkout"):
                    pass
                if status >= 500:
                    export.fail("/checkout", started)
                export.finish(span, "/checkout", status, user)
        export.shutdown()  # flushes the last batch
        now = time.time()
        stats = receiver.telemetry.stats("demo", "v2", now - 60, now + 1)
        assert stats is not None and (stats.requests, stats.errors) == (3, 1)
        assert stats.extra["route.errors:/checkout"] == 1
        assert any(k.startswith("log.count:payment gateway timeout") for k in stats.extra)
        failed = next(k for k in stats.extra if k.startswith("exemplar.failed:"))
        trace = httpx.get(f"{receiver.url}/api/v1/traces/{failed.split(':')[1]}", timeout=5)
        assert trace.status_code == 200 and trace.json()["origin"] == "payment gateway"
        assert httpx.get(f"{receiver.url}/api/v1/traces/{'0' * 32}", timeout=5).status_code == 404
        bad = httpx.post(f"{receiver.url}/v1/traces", content=b"not protobuf",
                         headers={"content-type": "application/x-protobuf"}, timeout=5)
        assert bad.status_code == 400 and "not an OTLP traces protobuf" in bad.json()["detail"]
        assert httpx.post(f"{receiver.url}/v1/traces", content=b"{}", headers={"content-type": "text/plain"},
                          timeout=5).status_code == 415
    finally:
        receiver.stop()


def test_without_the_otel_extra_the_demo_says_so_and_its_services_export_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert otel_sdk_missing() is None  # the test environment has the extra
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk", None)  # as if it were not installed
    assert "pip install 'rollwise[otel]'" in (otel_sdk_missing() or "")
    scenario = SCENARIOS["bad-canary"]
    assert "--otlp-endpoint" not in spec_text(scenario, "127.0.0.1:1")
    assert "--otlp-endpoint http://127.0.0.1:9 --otlp-service demo" in spec_text(
        scenario, "127.0.0.1:1", otlp_endpoint="http://127.0.0.1:9")


def test_spans_are_split_per_endpoint_not_per_url() -> None:
    assert route_of("/item/17") == "/item/{id}"
    assert route_of("/checkout") == "/checkout" and route_of("/") == "/"
