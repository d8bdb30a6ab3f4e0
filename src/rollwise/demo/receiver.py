"""The demo's OTLP/HTTP receiver: where the demo services' OpenTelemetry SDKs export their spans and logs.

``rollwise demo`` drives its rollouts in its own process, as a controller does, so it receives the services'
telemetry itself, exactly as ``rollwise serve`` would (``POST /v1/traces``, ``/v1/logs``, ``/v1/metrics``,
decoded by ``telemetry/decode.py`` into a ``SpanAggregates``), without ``serve``'s tokens and audit: it binds
loopback only and lives as long as one scenario. The engine reads it through ``Runtime.telemetry``, so the
postmortem of a demo rollout shows the per-route split, new log templates and exemplar traces.
``GET /api/v1/traces/<id>`` answers a kept exemplar, as the server does.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from rollwise.telemetry.aggregate import SpanAggregates
from rollwise.telemetry.decode import DecodeError, Signal, decode, encode_response, inflate, media_type

SIGNALS: dict[str, Signal] = {"/v1/traces": "traces", "/v1/logs": "logs", "/v1/metrics": "metrics"}
MAX_BODY = 16 << 20
_TRACE = re.compile(r"^/api/v1/traces/([0-9a-fA-F]{32})$")


def otel_sdk_missing() -> str | None:
    """Why the demo services cannot export OTLP (the ``otel`` extra is not installed), or None."""
    try:  # the exporters themselves: a package that overwrote opentelemetry.proto breaks them (xds-protos did)
        import opentelemetry.exporter.otlp.proto.http._log_exporter
        import opentelemetry.exporter.otlp.proto.http.trace_exporter
        import opentelemetry.sdk  # noqa: F401
    except ImportError as exc:
        return (f"the demo services export no OpenTelemetry (pip install 'rollwise[otel]'; here: {exc}): "
                "postmortems show no per-route split, log templates or exemplar traces")
    return None


class OtlpReceiver:
    """An OTLP/HTTP endpoint on ``127.0.0.1`` feeding ``telemetry``; ``start()`` it, ``stop()`` it."""

    def __init__(self, telemetry: SpanAggregates) -> None:
        self.telemetry = telemetry
        self._server = _Server(("127.0.0.1", 0), _handler(telemetry))
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="otlp-receiver", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def _handler(telemetry: SpanAggregates) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            signal = SIGNALS.get(self.path.split("?", 1)[0])
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY:
                self._answer(413, "application/json", b'{"detail": "body too large"}', close=True)
                return
            body = self.rfile.read(length) if length else b""
            kind = media_type(self.headers.get("content-type"))
            if signal is None:
                self._answer(404, "application/json", b'{"detail": "not found"}')
                return
            if kind is None:
                self._answer(415, "application/json", b'{"detail": "application/x-protobuf or application/json"}')
                return
            try:
                message = decode(signal, inflate(body, self.headers.get("content-encoding")), kind)
            except DecodeError as exc:
                self._answer(400, "application/json", json.dumps({"detail": str(exc)}).encode())
                return
            add = {"traces": telemetry.add_traces, "logs": telemetry.add_logs, "metrics": telemetry.add_metrics}
            add[signal](message)
            self._answer(200, kind, encode_response(signal, kind))

        def do_GET(self) -> None:
            match = _TRACE.match(self.path.split("?", 1)[0])
            exemplar = telemetry.trace(match.group(1)) if match else None
            if exemplar is None:
                self._answer(404, "application/json", b'{"detail": "not a kept exemplar trace"}')
                return
            self._answer(200, "application/json", json.dumps(exemplar.to_dict()).encode())

        def _answer(self, status: int, kind: str, body: bytes, close: bool = False) -> None:
            self.send_response(status)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(body)))
            if close:
                self.send_header("connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # an export every 200 ms per service
            pass

    return Handler
