"""Compare a shadow version with the primary on mirrored traffic (Diffy-style).

Envoy's request mirroring is fire-and-forget: it throws the shadow's response away, so it alone
cannot say whether the new version *behaves* the same. The mirror cluster therefore points here:
each mirrored request is replayed against the primary and the shadow, the two answers are
compared (status, and JSON bodies minus fields expected to differ such as ``version``), and the
counters are served on ``/__shadow__/stats`` for a metric source. Users never see any of it:
Envoy already answered them from the primary.

Two halves, one idea, so one module: ``ShadowComparator`` is the comparing server, run as its own
process (``python -m rollwise.adapters.shadow.comparator``); ``ShadowComparison`` is the router step
that starts that process when a route begins mirroring, points the router's mirror at it, and stops
it when the mirror ends. It knows the router and the deployer only by their protocols.
"""

from __future__ import annotations

import json
import shlex
import sys
import threading
from collections import deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

import httpx

from rollwise.core.model import RouteState
from rollwise.core.protocols import Deployer, HasAdmin, MirrorTargets, TrafficRouter
from rollwise.spec.models import RESPONSE_COMPARISONS, VersionRef

STATS_PATH = "/__shadow__/stats"
MISMATCHES_PATH = "/__shadow__/mismatches"

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "host",
    "content-length",
}


@dataclass(frozen=True)
class Answer:
    status: int  # 0: no answer
    body: bytes
    error: str | None = None


def normalise(body: bytes, ignore_fields: frozenset[str]) -> Any:
    """JSON bodies compare as data without the ignored top-level fields; others as bytes."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body
    if isinstance(document, dict):
        return {k: v for k, v in document.items() if k not in ignore_fields}
    return document


class ShadowComparator:
    """A small HTTP server; ``address`` is what the router's mirror cluster should point at."""

    def __init__(
        self,
        primary: str,
        shadow: str,
        *,
        compare: Iterable[str] = RESPONSE_COMPARISONS,
        ignore_fields: Iterable[str] = ("version",),
        host: str = "127.0.0.1",
        port: int = 0,
        timeout_s: float = 10.0,
        workers: int = 16,
    ) -> None:
        self.primary = primary
        self.shadow = shadow
        self.compare = frozenset(compare)
        unknown = self.compare - set(RESPONSE_COMPARISONS)
        if unknown:
            raise ValueError(f"cannot compare {sorted(unknown)}: only status and body are supported")
        self.ignore_fields = frozenset(ignore_fields)
        self._client = httpx.Client(
            timeout=timeout_s, limits=httpx.Limits(max_connections=2 * workers, max_keepalive_connections=2 * workers)
        )
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="shadow")
        self._lock = threading.Lock()
        self.counters = {"mirrored": 0, "compared": 0, "mismatches": 0, "shadow_errors": 0, "primary_errors": 0}
        self.mismatches: deque[dict[str, Any]] = deque(maxlen=50)
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="shadow-compare", daemon=True)

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    @property
    def stats_url(self) -> str:
        return f"http://{self.address}{STATS_PATH}"

    def start(self) -> ShadowComparator:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    def __enter__(self) -> ShadowComparator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counters)

    # ------------------------------------------------------------ comparing

    def replay(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        """Send one mirrored request to both sides, count the outcome, return the shadow's answer."""
        primary = self._pool.submit(self._send, self.primary, method, path, headers, body)
        shadow_answer = self._send(self.shadow, method, path, headers, body)
        primary_answer = primary.result()
        with self._lock:
            self.counters["mirrored"] += 1
            if shadow_answer.status == 0 or shadow_answer.status >= 500:
                self.counters["shadow_errors"] += 1
            if primary_answer.status == 0:
                self.counters["primary_errors"] += 1
                return shadow_answer  # nothing to compare against
            self.counters["compared"] += 1
            differences = self._differences(primary_answer, shadow_answer)
            if differences:
                self.counters["mismatches"] += 1
                self.mismatches.append(
                    {
                        "method": method,
                        "path": path,
                        "differ": differences,
                        "primary": {
                            "status": primary_answer.status,
                            "body": primary_answer.body[:500].decode(errors="replace"),
                        },
                        "shadow": {
                            "status": shadow_answer.status,
                            "body": shadow_answer.body[:500].decode(errors="replace"),
                        },
                    }
                )
        return shadow_answer

    def _differences(self, primary: Answer, shadow: Answer) -> list[str]:
        differ = []
        if "status" in self.compare and primary.status != shadow.status:
            differ.append("status")
        if "body" in self.compare and normalise(primary.body, self.ignore_fields) != normalise(
            shadow.body, self.ignore_fields
        ):
            differ.append("body")
        return differ

    def _send(self, address: str, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        try:
            response = self._client.request(method, f"http://{address}{path}", headers=headers, content=body)
        except httpx.HTTPError as exc:
            return Answer(0, b"", f"{type(exc).__name__}: {exc}")
        return Answer(response.status_code, response.content)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        comparator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True
            wbufsize = 65536

            def _any(self) -> None:
                if self.path == STATS_PATH:
                    self._reply(200, json.dumps(comparator.stats()).encode())
                    return
                if self.path == MISMATCHES_PATH:
                    with comparator._lock:
                        examples = list(comparator.mismatches)
                    self._reply(200, json.dumps(examples).encode())
                    return
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                answer = comparator.replay(self.command, self.path, headers, body)
                self._reply(answer.status or 502, answer.body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _any

            def _reply(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


# ---------------------------------------------------------------- the router step


class MirroringRouter(TrafficRouter, MirrorTargets, HasAdmin, Protocol):
    """A data plane that mirrors, can redirect a version's mirrored copies, and serves its counters."""


class ReadsShadowStats(Protocol):
    """A metric source that also diffs a comparator's counters (the Envoy one)."""

    shadow_stats_url: str | None


class ShadowComparison:
    """Puts a response comparator between the router's mirror and the shadow version.

    The comparator is a process of its own (so comparing never competes with the controller for a
    GIL) that replays each mirrored request to the primary and the shadow and counts how often they
    differ; its counters reach the judge through the metric source (the shadow's
    ``compared``/``mismatches``). The comparator lives exactly as long as the mirror does.
    """

    def __init__(self, router: MirroringRouter, deployer: Deployer, compare: list[str]):
        self.router = router
        self.deployer = deployer
        self.compare = compare
        self.metrics: ReadsShadowStats | None = None
        self._running: dict[str, VersionRef] = {}

    @property
    def admin_url(self) -> str:
        return str(self.router.admin_url)

    def apply(self, rollout: str, route: RouteState) -> None:
        mirror = route.mirror_to if route.mirror_percent > 0 else None
        if mirror and rollout not in self._running and {route.stable, mirror} <= set(route.upstreams):
            ref = VersionRef(
                name=f"{mirror}-compare", healthPath=STATS_PATH,
                command=f"{shlex.quote(sys.executable)} -m rollwise.adapters.shadow.comparator --port {{port}} "
                f"--primary {route.upstreams[route.stable]} --shadow {route.upstreams[mirror]} "
                f"--compare {','.join(self.compare)}",
            )
            address = self.deployer.ensure(rollout, ref)
            self.router.register_mirror_target(rollout, mirror, address)
            self._running[rollout] = ref
            if self.metrics is not None:
                self.metrics.shadow_stats_url = f"http://{address}{STATS_PATH}"
        self.router.apply(rollout, route)
        if not mirror and rollout in self._running:
            self.deployer.stop(rollout, self._running.pop(rollout))
            if self.metrics is not None:
                self.metrics.shadow_stats_url = None  # gone with the comparator: no stats to read

    def close(self) -> None:
        for rollout, ref in list(self._running.items()):
            self.deployer.stop(rollout, ref)
        self._running.clear()


def main(argv: list[str] | None = None) -> None:
    """``python -m rollwise.adapters.shadow.comparator --primary HOST:PORT --shadow HOST:PORT --port P``.

    Its own process, so comparing never competes for a GIL with the load or the controller.
    """
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="python -m rollwise.adapters.shadow.comparator", description=main.__doc__)
    parser.add_argument("--primary", required=True, help="host:port of the version users get")
    parser.add_argument("--shadow", required=True, help="host:port of the version under test")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--compare", default="status,body", help="comma-separated: status, body")
    parser.add_argument("--ignore", default="version", help="comma-separated JSON fields to ignore")
    args = parser.parse_args(argv)
    comparator = ShadowComparator(
        args.primary,
        args.shadow,
        port=args.port,
        compare=[c for c in args.compare.split(",") if c],
        ignore_fields=[f for f in args.ignore.split(",") if f],
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    comparator.start()
    print(f"shadow comparator on {comparator.address}: {args.primary} vs {args.shadow}", flush=True)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        comparator.close()


if __name__ == "__main__":
    main()
