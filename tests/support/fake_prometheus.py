"""A stand-in for Prometheus's query API (``GET``/``POST /api/v1/query``) answering from version profiles.

Tests that need a metrics backend but not Envoy run this on a loopback port: each version has a
request rate, an error share and a latency, and an ``increase(...[<N>ms])`` query over one of the
``QUERIES`` names below (or Envoy's default names, the version as the cluster) is answered with what
that version served over the window, in Prometheus's own JSON shape (``{"status": "success", "data":
{"resultType": "vector", ...}}``). Every query it answered is kept (``queries``), so a test can check
what rollwise asked.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

QUERIES = {
    "requests": 'sum(increase(app_requests_total{version="{version}"}[{window}]))',
    "errors": 'sum(increase(app_requests_total{version="{version}",code="5xx"}[{window}]))',
    "latency_buckets": 'sum by (le) (increase(app_latency_ms_bucket{version="{version}"}[{window}]))',
    "latency_sum": 'sum(increase(app_latency_ms_sum{version="{version}"}[{window}]))',
}
"""Query templates for ``metrics.prometheusQueries`` that this fake understands."""

QUERIES_YAML = "  prometheusQueries:\n" + "".join(
    f"    {name}: '{template}'\n" for name, template in QUERIES.items())


@dataclass
class Profile:
    rps: float = 50.0
    error_rate: float = 0.0
    latency_ms: float = 20.0


@dataclass
class FakePrometheus:
    profiles: dict[str, Profile]
    url: str = ""
    queries: list[str] = field(default_factory=list)

    def answer(self, promql: str) -> list[dict[str, Any]]:
        version = re.search(r'(?:version|envoy_cluster_name)="([^"]+)"', promql)
        window = re.search(r"\[(\d+)ms\]", promql)
        profile = self.profiles.get(version.group(1)) if version else None
        if profile is None or window is None:
            return []
        requests = profile.rps * int(window.group(1)) / 1000
        if "_bucket{" in promql:
            return [{"metric": {"le": le}, "value": [0, str(requests if bound >= profile.latency_ms else 0.0)]}
                    for le, bound in (("10", 10.0), ("50", 50.0), ("250", 250.0), ("1000", 1000.0),
                                      ("+Inf", float("inf")))]
        if "_sum{" in promql:
            value = requests * profile.latency_ms
        elif 'code="5xx"' in promql or 'envoy_response_code_class="5"' in promql:
            value = requests * profile.error_rate
        else:
            value = requests
        return [{"metric": {}, "value": [0, str(value)]}]


class _Handler(BaseHTTPRequestHandler):
    fake: FakePrometheus

    def log_message(self, *args: Any) -> None:  # keep the test output quiet
        pass

    def _reply(self, params: dict[str, list[str]]) -> None:
        promql = params.get("query", [""])[0]
        self.fake.queries.append(promql)
        body = json.dumps({"status": "success",
                           "data": {"resultType": "vector", "result": self.fake.answer(promql)}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        parsed = urlparse(self.path)
        if parsed.path != "/api/v1/query":
            self.send_error(404)
            return
        self._reply(parse_qs(parsed.query))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._reply(parse_qs(self.rfile.read(length).decode()))


@contextmanager
def fake_prometheus(profiles: dict[str, Profile]) -> Iterator[FakePrometheus]:
    """Serve ``profiles`` on a free loopback port for the ``with`` block."""
    fake = FakePrometheus(profiles)
    handler = type("Handler", (_Handler,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
