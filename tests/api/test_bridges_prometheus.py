"""The bridges on a real Prometheus (issue 17, part 5): Flagger's webhooks and Argo's web provider answered
from PromQL ``increase`` over what Prometheus scraped, not from a stand-in.

An exporter in the test serves two versions' counters in Prometheus's text format (``app_requests_total``
by version and code, ``app_latency_ms`` histogram), growing with the wall clock; a throwaway Prometheus
scrapes it every second; ``rollwise serve`` reads it through the parameters the controllers send. Calls
are 3 s apart so each window holds several scrapes (``increase`` needs two samples in its range).
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from rollwise.adapters.metrics.prometheus import LocalPrometheus
from support.common import require_or_skip
from support.fake_prometheus import QUERIES
from support.serve_process import ServeProcess, rollwise_serve

pytestmark = [pytest.mark.timeout(300), pytest.mark.prometheus]
PROFILES = {"v1": (200.0, 0.001), "v2": (200.0, 0.001), "v3": (200.0, 0.3)}  # version: (requests/s, error share)


class _Exporter(BaseHTTPRequestHandler):
    started = time.time()

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        elapsed = time.time() - self.started
        lines = []
        for version, (rps, error_share) in PROFILES.items():
            total = int(rps * elapsed)
            errors = int(total * error_share)
            lines += [f'app_requests_total{{version="{version}",code="200"}} {total - errors}',
                      f'app_requests_total{{version="{version}",code="5xx"}} {errors}',
                      f'app_latency_ms_bucket{{version="{version}",le="50"}} {total}',
                      f'app_latency_ms_bucket{{version="{version}",le="+Inf"}} {total}',
                      f'app_latency_ms_sum{{version="{version}"}} {20 * total}']
        body = ("\n".join(lines) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def prometheus() -> Iterator[LocalPrometheus]:
    prometheus_binary = shutil.which("prometheus") or "/usr/bin/prometheus"  # one for the module, not per test
    require_or_skip(Path(prometheus_binary).exists(), "prometheus binary (apt-get install -y prometheus)")
    exporter = ThreadingHTTPServer(("127.0.0.1", 0), _Exporter)
    threading.Thread(target=exporter.serve_forever, daemon=True).start()
    try:
        with LocalPrometheus(targets=[f"127.0.0.1:{exporter.server_address[1]}"], metrics_path="/metrics",
                             binary=prometheus_binary) as server:
            server.wait_for_scrape()
            time.sleep(3)  # a few samples before the first window
            yield server
    finally:
        exporter.shutdown()
        exporter.server_close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, prometheus: LocalPrometheus) -> Iterator[ServeProcess]:
    work = tmp_path_factory.mktemp("bridges-prometheus")
    with rollwise_serve(f"sqlite:///{work / 'serve.db'}", work, "--allow-url", prometheus.url + "/") as served:
        yield served


def flagger(client: httpx.Client, hook: str, canary: str, prometheus: LocalPrometheus) -> httpx.Response:
    # https://docs.flagger.app/usage/webhooks: Flagger's POST to every hook
    return client.post(f"/api/v1/bridges/flagger/{hook}", json={
        "name": "podinfo", "namespace": "test", "phase": "Progressing", "checksum": f"sum-{canary}",
        "type": hook, "metadata": {"baseline": "v1", "canary": canary, "prometheus": prometheus.url,
                                   "judge": "threshold", "minSamples": "1000", "errorRate": "1%", **QUERIES}})


@pytest.mark.parametrize(("canary", "verdict", "status"), [("v2", "promote", 200), ("v3", "rollback", 409)])
def test_flagger_on_a_real_prometheus(server: ServeProcess, prometheus: LocalPrometheus, canary: str,
                                      verdict: str, status: int) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert flagger(client, "pre-rollout", canary, prometheus).status_code == 200
        answers = []
        for _ in range(12):
            time.sleep(3)
            answers.append(flagger(client, "rollout", canary, prometheus))
            if answers[-1].json()["verdict"] != "continue":
                break
    last = answers[-1]
    assert (last.status_code, last.json()["verdict"]) == (status, verdict), [a.text for a in answers]
    canary_counts = last.json()["canary"]
    assert canary_counts["requests"] >= 1000  # increase() over the scraped counters, window after window
    expected = PROFILES[canary][1]
    assert abs(canary_counts["errorRate"] - expected) < max(0.01, expected / 3), canary_counts


def test_argo_get_on_a_real_prometheus_reads_envoy_style_defaults_as_no_data(
        server: ServeProcess, prometheus: LocalPrometheus) -> None:
    """Without templates the Envoy names are asked for; this Prometheus has none: no data, not a verdict."""
    answer = httpx.get(f"{server.url}/api/v1/bridges/argo", params={
        "baseline": "v1", "canary": "v2", "run": "no-envoy", "prometheus": prometheus.url, "lookback": "10s"})
    assert answer.status_code == 200 and answer.json()["verdict"] == "continue"
    assert answer.json()["canary"]["requests"] == 0
