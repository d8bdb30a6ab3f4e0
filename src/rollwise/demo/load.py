"""Bounded, open-loop load against a loopback address, recording what every client saw.

Open loop: requests leave on a fixed schedule whether or not earlier ones returned, as real
users do; a closed loop would slow down exactly when the service does and hide the problem.
The generator refuses any target off the loopback range and stops by itself at its request
count or duration, whichever comes first.
"""

from __future__ import annotations

import ipaddress
import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

MAX_DURATION_S = 600.0
MAX_RATE = 5000.0


class LoadError(ValueError):
    pass


@dataclass(frozen=True)
class Sample:
    """One request as the client saw it. ``version`` is None when no upstream answered."""

    sent_at: float  # wall clock (time.time) when the request left
    latency_ms: float
    status: int  # 0: no HTTP response (connection error, timeout, dropped)
    version: str | None
    path: str
    user: str | None = None
    error: str | None = None
    target: str | None = None  # which of several targets it went to (None: the only one)

    @property
    def failed(self) -> bool:
        return self.status == 0 or self.status >= 500


@dataclass
class LoadSummary:
    sent: int
    by_version: dict[str, int]
    by_status: dict[int, int]
    failures: int
    transport_errors: int
    dropped: int
    errors_by_version: dict[str, int] = field(default_factory=dict)
    error_examples: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)  # p50, p90, p99 of answered requests


def require_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise LoadError(f"refusing to send load to {host!r}: only loopback targets (127.0.0.1, ::1) are allowed")


def quantile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


class LoadGenerator:
    """Send ``rate`` req/s to ``url`` for at most ``duration_s`` seconds and ``total`` requests.

    ``url`` may be several base URLs (a fleet of proxies): requests take them in turn, and each sample
    names its target.

    ``sticky_header`` (e.g. ``x-user``) adds a user id drawn from ``users`` ids to each request,
    which is what a hash-policy router keeps on one version. Use ``start()``/``wait()`` to run it
    in a background thread while a test changes routes, or ``run()`` to block.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        rate: float,
        *,
        duration_s: float = 10.0,
        total: int | None = None,
        paths: Sequence[str] | None = None,
        sticky_header: str | None = None,
        users: int = 100,
        headers: dict[str, str] | None = None,
        max_in_flight: int = 128,
        timeout_s: float = 5.0,
        seed: int = 1,
    ) -> None:
        urls = [url] if isinstance(url, str) else list(url)
        if not urls:
            raise LoadError("at least one target URL is needed")
        for target in urls:
            require_loopback(target)
        if not 0 < rate <= MAX_RATE:
            raise LoadError(f"rate must be within (0, {MAX_RATE}] req/s, got {rate}")
        if not 0 < duration_s <= MAX_DURATION_S:
            raise LoadError(f"duration_s must be within (0, {MAX_DURATION_S}] s, got {duration_s}")
        self.urls = [u.rstrip("/") for u in urls]
        self.url = self.urls[0]
        self.rate = rate
        self.duration_s = duration_s
        self.total = min(total if total is not None else int(rate * duration_s), int(rate * duration_s) + 1)
        if self.total <= 0:
            raise LoadError("total must be positive")
        self.paths = list(paths) if paths else [f"/item/{n}" for n in range(100)]
        self.sticky_header = sticky_header
        self.users = max(1, users)
        self.headers = dict(headers or {})
        self.max_in_flight = max_in_flight
        self.timeout_s = timeout_s
        self._rng = random.Random(seed)
        self._samples: list[Sample] = []
        self._samples_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_at = 0.0
        self._finished_at = 0.0

    # ------------------------------------------------------------ running

    def run(self) -> LoadSummary:
        self._drive()
        return self.summary()

    def start(self) -> LoadGenerator:
        if self._thread is not None:
            raise LoadError("already started")
        self._thread = threading.Thread(target=self._drive, name="load", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def wait(self, timeout: float | None = None) -> LoadSummary:
        if self._thread is None:
            raise LoadError("not started")
        self._thread.join(timeout if timeout is not None else self.duration_s + self.timeout_s + 5)
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join(self.timeout_s + 1)
        return self.summary()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _drive(self) -> None:
        """Schedule on a fixed clock; a pool of workers sharing one client sends.

        A synchronous ``httpx.Client`` in worker threads costs about half the CPU per request of
        ``httpx.AsyncClient`` here, which matters on two cores shared with Envoy and upstreams.
        """
        limits = httpx.Limits(max_connections=self.max_in_flight, max_keepalive_connections=self.max_in_flight)
        in_flight = threading.BoundedSemaphore(self.max_in_flight)
        self._started_at = time.time()
        with (
            httpx.Client(limits=limits, timeout=self.timeout_s) as client,
            ThreadPoolExecutor(self.max_in_flight, thread_name_prefix="load") as pool,
        ):
            start = time.monotonic()
            for index in range(self.total):
                if self._stop.is_set():
                    break
                due = start + index / self.rate
                if due - start >= self.duration_s:
                    break
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                path = self.paths[index % len(self.paths)]
                target = self.urls[index % len(self.urls)]
                user = f"user-{self._rng.randrange(self.users)}" if self.sticky_header else None
                if not in_flight.acquire(blocking=False):
                    # Overloaded: an open loop does not wait; the request counts as failed.
                    self._record(Sample(time.time(), 0.0, 0, None, path, user, "dropped: too many in flight",
                                        self._named(target)))
                    continue
                pool.submit(self._one, client, target, path, user, in_flight)
        self._finished_at = time.time()

    def _named(self, target: str) -> str | None:
        return target if len(self.urls) > 1 else None

    def _one(self, client: httpx.Client, target: str, path: str, user: str | None,
             slot: threading.BoundedSemaphore) -> None:
        try:
            headers = dict(self.headers)
            if user is not None and self.sticky_header:
                headers[self.sticky_header] = user
            sent_at = time.time()
            began = time.perf_counter()
            try:
                response = client.get(target + path, headers=headers)
            except httpx.HTTPError as exc:
                latency = (time.perf_counter() - began) * 1000
                self._record(Sample(sent_at, latency, 0, None, path, user, f"{type(exc).__name__}: {exc}",
                                    self._named(target)))
                return
            latency = (time.perf_counter() - began) * 1000
            version = response.headers.get("x-version")
            error = None if response.status_code < 500 else f"HTTP {response.status_code}: {response.text[:120]}"
            self._record(Sample(sent_at, latency, response.status_code, version, path, user, error,
                                self._named(target)))
        finally:
            slot.release()

    def _record(self, sample: Sample) -> None:
        with self._samples_lock:
            self._samples.append(sample)

    # ------------------------------------------------------------ results

    @property
    def samples(self) -> list[Sample]:
        with self._samples_lock:
            return list(self._samples)

    def summary(self, since: float | None = None, until: float | None = None) -> LoadSummary:
        samples = [
            s for s in self.samples if (since is None or s.sent_at >= since) and (until is None or s.sent_at < until)
        ]
        failed = [s for s in samples if s.failed]
        by_version = Counter(s.version or "-" for s in samples)
        summary = LoadSummary(
            sent=len(samples),
            by_version=dict(by_version),
            by_status=dict(Counter(s.status for s in samples)),
            failures=len(failed),
            transport_errors=sum(1 for s in failed if s.status == 0),
            dropped=sum(1 for s in failed if (s.error or "").startswith("dropped")),
            errors_by_version=dict(Counter(s.version or "-" for s in failed)),
            error_examples=[s.error or "" for s in failed[:5]],
            duration_s=max(0.0, (self._finished_at or time.time()) - self._started_at),
        )
        latencies = [s.latency_ms for s in samples if s.status]
        summary.latency_ms = {f"p{int(q * 100)}": quantile(latencies, q) for q in (0.5, 0.9, 0.99)}
        return summary
