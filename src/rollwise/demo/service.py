"""A tiny HTTP service whose faults are dialled in from the command line.

    python -m rollwise.demo.service --port 8001 --version v2 --error-rate 0.05 \
        --latency-ms 20 --latency-p99-ms 80

Stdlib only (threaded ``http.server`` speaking HTTP/1.1 keep-alive) so it starts in ~50 ms and
serves well over 300 req/s on two cores. Every response names its version in ``x-version``
and in the body, and carries a payload that depends only on the path (and, with
``--mismatch-rate``, on the version for that share of paths) so a shadow comparator can tell
a behaviour change from the version label. With ``--otlp-endpoint URL`` (``rollwise[otel]``) it exports
its spans and logs over OTLP (``demo/otel.py``); ``--fail-route /checkout`` confines the faults to one path,
``--fail-header x-rollwise-region=b`` to the requests carrying that header (a fault in one region's config).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import os
import random
import signal
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from rollwise.demo.otel import OtlpExport

_Z99 = 2.3263478740408408  # standard normal 99th percentile


@dataclass(frozen=True)
class Behaviour:
    version: str
    error_rate: float = 0.0
    latency_ms: float = 0.0
    latency_p99_ms: float | None = None
    mismatch_rate: float = 0.0
    bomb_file: str | None = None  # a time bomb: once this file exists, answer ``bomb_error_rate`` with 500
    bomb_error_rate: float = 0.0
    fail_route: str | None = None  # the error rate applies to this path only (others never fail)
    fail_header: tuple[str, str] | None = None  # ... and to requests with this header value only

    def delay_s(self, rng: random.Random) -> float:
        """Log-normal latency with the given median and p99: a realistic long tail."""
        if self.latency_ms <= 0:
            return 0.0
        p99 = self.latency_p99_ms or self.latency_ms
        sigma = math.log(max(p99, self.latency_ms) / self.latency_ms) / _Z99
        return self.latency_ms * math.exp(rng.gauss(0.0, sigma)) / 1000.0 if sigma else self.latency_ms / 1000.0

    def payload(self, path: str) -> str:
        digest = hashlib.sha256(path.encode()).digest()
        if int.from_bytes(digest[:4], "big") / 2**32 < self.mismatch_rate:
            digest = hashlib.sha256(f"{self.version}:{path}".encode()).digest()
        return digest.hex()[:32]


def body_for(behaviour: Behaviour, path: str, status: int) -> bytes:
    document: dict[str, Any] = {"version": behaviour.version, "path": path, "status": status}
    if status < 500:
        document["payload"] = behaviour.payload(path)
    return json.dumps(document, sort_keys=True).encode()


class _Bomb:
    """Whether the time bomb went off: the file's existence, looked at most every quarter second."""

    def __init__(self, path: str | None) -> None:
        self.path, self.armed, self.checked = path, False, 0.0

    def exploded(self) -> bool:
        if self.path is None or self.armed:
            return self.armed
        now = time.monotonic()
        if now - self.checked >= 0.25:
            self.checked, self.armed = now, os.path.exists(self.path)
        return self.armed


def route_of(path: str) -> str:
    """The route template of a path, as a web framework would report ``http.route``: ``/item/17`` is
    ``/item/{id}`` (a numeric segment is a parameter), so spans are split per endpoint, not per URL."""
    return "/".join("{id}" if part.isdigit() else part for part in path.split("/"))


def make_handler(behaviour: Behaviour, seed: int | None = None, otel: OtlpExport | None = None
                 ) -> type[BaseHTTPRequestHandler]:
    local = threading.local()
    bomb = _Bomb(behaviour.bomb_file)
    users = itertools.count(1)

    def rng() -> random.Random:
        if not hasattr(local, "rng"):
            local.rng = random.Random(None if seed is None else seed + threading.get_ident())
        generator: random.Random = local.rng
        return generator

    class DemoHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "rollwise-demo"
        disable_nagle_algorithm = True  # else header and body segments wait on delayed ACKs (40 ms)
        wbufsize = 65536  # headers and body leave in one write, flushed after each request

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            self._serve()

        def _serve(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._send(200, b'{"ok": true}')
                return
            if otel is None:
                status = self._work(path, self._faulty())
            else:
                route = route_of(path)
                with otel.request(route) as span:
                    started = time.monotonic()
                    with otel.handling(route):
                        status = self._work(path, self._faulty())
                    if status >= 500:
                        otel.fail(route, started)
                    otel.finish(span, route, status, next(users))
            self._send(status, body_for(behaviour, path, status))

        def _faulty(self) -> bool:
            """Whether this request may fail at all (``--fail-header``: only those carrying the header value)."""
            if behaviour.fail_header is None:
                return True
            name, value = behaviour.fail_header
            return self.headers.get(name) == value

        def _work(self, path: str, faulty: bool = True) -> int:
            """The dialled-in latency and fault: the status to answer."""
            generator = rng()
            delay = behaviour.delay_s(generator)
            if delay:
                time.sleep(delay)
            error_rate = behaviour.bomb_error_rate if bomb.exploded() else behaviour.error_rate
            if not faulty or (behaviour.fail_route is not None and path != behaviour.fail_route):
                error_rate = 0.0
            return 500 if generator.random() < error_rate else 200

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.send_header("x-version", behaviour.version)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # quiet: 300 req/s of logs helps nobody
            pass

    return DemoHandler


class DemoServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


def serve(behaviour: Behaviour, host: str = "127.0.0.1", port: int = 0, seed: int | None = None,
          otel: OtlpExport | None = None) -> DemoServer:
    """Bind (port 0 picks a free one) without serving yet: call ``serve_forever`` in a thread."""
    return DemoServer((host, port), make_handler(behaviour, seed, otel))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m rollwise.demo.service", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--version", required=True)
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of requests answered 500")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="median added latency")
    parser.add_argument("--latency-p99-ms", type=float, default=None, help="p99 added latency")
    parser.add_argument("--mismatch-rate", type=float, default=0.0, help="share of paths whose payload changes")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--bomb-file", default=None, help="time bomb: once this file exists, fail more")
    parser.add_argument("--bomb-error-rate", type=float, default=0.3, help="share answered 500 once it went off")
    parser.add_argument("--fail-route", default=None, help="the error rate applies to this path only")
    parser.add_argument("--fail-header", default=None, metavar="NAME=VALUE",
                        help="the error rate applies to requests with this header value only")
    parser.add_argument("--otlp-endpoint", default=None,
                        help="export spans and logs over OTLP/HTTP to this base URL (e.g. rollwise serve's); "
                             "needs rollwise[otel]")
    parser.add_argument("--otlp-service", default="demo", help="service.name of the exported spans")
    args = parser.parse_args(argv)
    if not 0 <= args.error_rate <= 1 or not 0 <= args.mismatch_rate <= 1:
        parser.error("--error-rate and --mismatch-rate must be within [0, 1]")
    fail_header = None
    if args.fail_header is not None:
        name, sep, value = args.fail_header.partition("=")
        if not sep or not name.strip():
            parser.error(f"--fail-header {args.fail_header!r} is not NAME=VALUE")
        fail_header = (name.strip(), value)
    behaviour = Behaviour(
        version=args.version,
        error_rate=args.error_rate,
        latency_ms=args.latency_ms,
        latency_p99_ms=args.latency_p99_ms,
        mismatch_rate=args.mismatch_rate,
        bomb_file=args.bomb_file,
        bomb_error_rate=args.bomb_error_rate,
        fail_route=args.fail_route,
        fail_header=fail_header,
    )
    otel = None
    if args.otlp_endpoint:
        if not args.otlp_endpoint.startswith(("http://", "https://")):
            parser.error(f"--otlp-endpoint {args.otlp_endpoint!r} is not an http(s) URL")
        try:
            otel = OtlpExport(args.otlp_endpoint, args.otlp_service, args.version)
        except RuntimeError as exc:
            parser.exit(2, f"error: {exc}\n")
    server = serve(behaviour, args.host, args.port, args.seed, otel)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if otel is not None:
            otel.shutdown()  # the last batch of spans and logs


if __name__ == "__main__":
    main()
