"""OTLP/HTTP into a real ``rollwise serve`` and a rollout judged from spans alone (issue 17, part 1).

The canary's spans come from the OpenTelemetry Python SDK's own OTLP/HTTP exporter (protobuf; the SDK
exports no JSON), the baseline's as OTLP/JSON written per the specification and posted with httpx,
both to the server's ``/v1/traces``. The rollout (``metrics.source: otlp``, no Envoy, no router) is
started with the CLI against the server: a good canary promotes, a bad one rolls back.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind

from support.common import REPO
from support.otlp import json_body, json_logs
from support.serve_process import ServeProcess, rollwise_serve

pytestmark = pytest.mark.timeout(300)

SPEC = """
name: NAME
service: SERVICE
versions:
  stable: {name: v1, address: 127.0.0.1:9001}
  canary: {name: v2, address: 127.0.0.1:9002}
traffic: {router: none}
metrics: {source: otlp}
strategy:
  canary:
    analysis:
      judge: threshold
      interval: 1s
      minStageTime: 2s
      minSamples: 200
      failureLimit: 2
      baselineHistory: 0s
      metrics:
        - {name: error-rate, type: errorRate, slo: "< 2%"}
    steps:
      - setWeight: 50
      - pause: {duration: 3s}
      - setWeight: 100
"""


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('otlp-store') / 'serve.db'}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, store_url: str) -> Iterator[ServeProcess]:
    with rollwise_serve(store_url, tmp_path_factory.mktemp("otlp")) as served:
        yield served


@contextmanager
def traffic(url: str, service: str, canary_error_rate: float) -> Iterator[None]:
    """About 150 requests/s per version until the block ends: v2 through the SDK, v1 as OTLP/JSON; requests
    alternate between routes /cart and /checkout, and the canary's failures are all on /checkout, each
    logged (through the SDK's log exporter) as a line the baseline never writes."""
    resource = Resource.create({"service.name": service, "service.version": "v2"})
    logs = LoggerProvider(resource=resource)
    logs.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{url}/v1/logs"),
                                                          schedule_delay_millis=200))
    logger = logs.get_logger("rollwise-test")
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{url}/v1/traces"),
                                                   schedule_delay_millis=200))
    tracer = provider.get_tracer("rollwise-test")
    stop = threading.Event()

    def run() -> None:
        sent = 0
        with httpx.Client(timeout=10) as client:
            while not stop.wait(0.1):
                for _ in range(15):
                    with tracer.start_as_current_span("GET", kind=SpanKind.SERVER) as span:
                        sent += 1
                        checkout = sent % 2 == 0
                        span.set_attribute("http.route", "/checkout" if checkout else "/cart")
                        logger.emit(LogRecord(body=f"cart loaded for user {sent}", severity_number=SeverityNumber.INFO))
                        if checkout and canary_error_rate and sent % round(1 / canary_error_rate) == 0:
                            span.set_attribute("http.response.status_code", 503)
                            line = f"payment gateway timeout after {3000 + sent % 7} ms for order {sent}"
                            logger.emit(LogRecord(body=line, severity_number=SeverityNumber.ERROR))
                body = json_body("v1", 15, 1000, service=service, routes=("/cart", "/checkout"))
                answer = client.post(f"{url}/v1/traces", content=body, headers={"Content-Type": "application/json"})
                assert answer.status_code == 200, answer.text
                lines = [f"cart loaded for user {sent + i}" for i in range(15)]
                answer = client.post(f"{url}/v1/logs", content=json_logs("v1", lines, service=service),
                                     headers={"Content-Type": "application/json"})
                assert answer.status_code == 200, answer.text

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)
        provider.shutdown()
        logs.shutdown()


def start(server: ServeProcess, tmp_path: Path, name: str, service: str) -> subprocess.CompletedProcess[str]:
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(SPEC.replace("NAME", name).replace("SERVICE", service))
    return subprocess.run([sys.executable, "-m", "rollwise", "rollout", "start", str(spec), "--server", server.url,
                           "--timeout", "150s", "-o", "json"], capture_output=True, text=True, timeout=200, cwd=REPO)


def test_a_good_version_judged_from_spans_alone_promotes(server: ServeProcess, tmp_path: Path) -> None:
    with traffic(server.url, "cart-good", canary_error_rate=0.0):
        result = start(server, tmp_path, "cart-good", "cart-good")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["phase"] == "Succeeded"


def test_a_bad_version_judged_from_spans_alone_rolls_back_and_the_rca_names_the_route(
        server: ServeProcess, store_url: str, tmp_path: Path) -> None:
    with traffic(server.url, "cart-bad", canary_error_rate=0.2):
        result = start(server, tmp_path, "cart-bad", "cart-bad")
    assert result.returncode == 3, result.stdout + result.stderr
    events = httpx.get(f"{server.url}/api/v1/rollouts/cart-bad/events").json()
    decision = [e for e in events if e["type"] == "decision"][-1]
    assert decision["data"]["action"] == "rollback" and "error-rate" in decision["message"]
    canary = decision["data"]["evidence"]["metrics"][0]["canary"]
    assert canary["requests"] > 0 and canary["errors"] > 0  # counted from the SDK's spans
    rca = subprocess.run([sys.executable, "-m", "rollwise", "report", "cart-bad", "--format", "text", "--store",
                          store_url], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert rca.returncode == 0, rca.stderr
    where = rca.stdout.split("Where (per route, canary vs baseline):", 1)[1].splitlines()
    assert where[1].lstrip().startswith("- /checkout:") and "errors regressed here" in where[1], rca.stdout
    assert any(line.lstrip().startswith("- /cart:") and "regressed" not in line for line in where), rca.stdout
    logged = rca.stdout.split("Logs (templates new or rising in the canary):", 1)[1].splitlines()[1]
    assert "new in the canary: 'payment gateway timeout after <*> ms for order <*>'" in logged, rca.stdout
    assert "cart loaded" not in rca.stdout.split("Logs (", 1)[1].split("When it began", 1)[0]


def test_otlp_refuses_what_it_cannot_read(server: ServeProcess) -> None:
    text = httpx.post(f"{server.url}/v1/traces", content=b"hello", headers={"Content-Type": "text/plain"})
    assert text.status_code == 415
    broken = httpx.post(f"{server.url}/v1/traces", content=b"\xff\xff",
                        headers={"Content-Type": "application/x-protobuf"})
    assert broken.status_code == 400 and broken.json()["detail"].startswith("not an OTLP traces protobuf")
    logs = httpx.post(f"{server.url}/v1/logs", content=b"{}", headers={"Content-Type": "application/json"})
    assert logs.status_code == 200 and logs.json() == {}
