"""Per-window observations from PromQL, for fleets where Prometheus already scrapes Envoy.

Prometheus does the diffing (``increase`` over the window, evaluated at the window's end), so no
cursor is needed. Each quantity is one query template, defaulting to Envoy's metric names;
templates take ``{cluster}``, ``{rollout}``, ``{version}`` and ``{window}`` (e.g. ``30s``).

``increase`` extrapolates to the window's edges, so counts are close to, not exactly, what the
clients saw; the judge works with rates, where that does not matter. A window is queried a
scrape interval after it ends (plus Envoy's histogram flush), when its last samples exist.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from rollwise import envoy_names
from rollwise.adapters.metrics import SettlingSource
from rollwise.core.model import VersionStats, Window, WindowQuery
from rollwise.core.protocols import MetricsError
from rollwise.local_processes import free_port, spawn_logged, stop_process

DEFAULT_QUERIES: dict[str, str] = {
    "requests": 'sum(increase(envoy_cluster_upstream_rq_xx{envoy_cluster_name="{cluster}"}[{window}]))',
    "errors": "sum(increase(envoy_cluster_upstream_rq_xx"
    '{envoy_cluster_name="{cluster}",envoy_response_code_class="5"}[{window}]))',
    "latency_buckets": "sum by (le) (increase(envoy_cluster_upstream_rq_time_bucket"
    '{envoy_cluster_name="{cluster}"}[{window}]))',
    "latency_sum": 'sum(increase(envoy_cluster_upstream_rq_time_sum{envoy_cluster_name="{cluster}"}[{window}]))',
}


class PrometheusError(MetricsError):
    """Prometheus could not answer (unreachable, HTTP error, rejected query): not the same as no data."""


def safe_url(url: str) -> str:
    """``url`` without credentials or query string, fit for messages, logs and the event log."""
    parsed = httpx.URL(url)
    return str(parsed.copy_with(userinfo=b"", query=None, fragment=None)) if parsed.host else url


def one_line(text: str, limit: int = 300) -> str:
    """A cause as one short line (Prometheus's parse errors span lines)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def render(template: str, **values: str) -> str:
    """Fill ``{name}`` placeholders without treating PromQL's own braces as format fields."""
    for key, value in values.items():
        template = template.replace("{" + key + "}", value)
    return template


def _duration(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


class PrometheusMetricSource(SettlingSource):
    """Implements ``MetricSource`` over Prometheus's HTTP API (``/api/v1/query``)."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:9090",
        *,
        queries: dict[str, str] | None = None,
        settle_s: float = 2.5,
        cluster_name: Callable[[str, str], str] = envoy_names.cluster_name,
        timeout_s: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        unknown = set(queries or {}) - set(DEFAULT_QUERIES)
        if unknown:
            raise ValueError(f"unknown query names {sorted(unknown)}; known: {sorted(DEFAULT_QUERIES)}")
        super().__init__(settle_s=settle_s, cluster_name=cluster_name, timeout_s=timeout_s, sleep=sleep, clock=clock)
        self.url = url.rstrip("/")
        self.queries = {**DEFAULT_QUERIES, **(queries or {})}

    def query(self, promql: str, at: float) -> list[dict[str, Any]]:
        """Instant query; returns Prometheus's ``result`` vector. Raises ``PrometheusError``."""
        where = safe_url(self.url)
        try:
            response = self._http.get(f"{self.url}/api/v1/query", params={"query": promql, "time": f"{at:.3f}"})
        except httpx.HTTPError as exc:
            cause = one_line(str(exc) or type(exc).__name__)
            raise PrometheusError(f"Prometheus at {where} unreachable: {cause}") from None
        try:
            payload = response.json()
        except ValueError:
            raise PrometheusError(f"Prometheus at {where} answered HTTP {response.status_code} without JSON") from None
        if not isinstance(payload, dict) or payload.get("status") != "success":
            payload = payload if isinstance(payload, dict) else {}
            raise PrometheusError(
                f"Prometheus at {where} rejected query {one_line(promql, 160)!r}: "
                f"{payload.get('errorType', 'error')}: {one_line(str(payload.get('error')))}"
            )
        result = payload["data"]["result"]
        if payload["data"].get("resultType") == "scalar":
            return [{"metric": {}, "value": result}]
        return list(result)

    def scalar(self, promql: str, at: float) -> float | None:
        """Sum of a query's vector at ``at``; None when it has no series (no data)."""
        result = self.query(promql, at)
        if not result:
            return None
        return sum(float(item["value"][1]) for item in result)

    def version_stats(self, rollout: str, version: str, start: float, end: float) -> VersionStats | None:
        values = {
            "cluster": self._cluster_name(rollout, version),
            "rollout": rollout,
            "version": version,
            "window": _duration(end - start),
        }
        requests = self.scalar(render(self.queries["requests"], **values), end)
        if requests is None:
            return None
        errors = self.scalar(render(self.queries["errors"], **values), end) or 0.0
        buckets: list[tuple[float, int]] = []
        for item in self.query(render(self.queries["latency_buckets"], **values), end):
            bound = float(item["metric"].get("le", "+Inf"))
            value = float(item["value"][1])
            if math.isfinite(bound) and math.isfinite(value):
                buckets.append((bound, round(value)))
        buckets.sort()
        latency_sum = self.scalar(render(self.queries["latency_sum"], **values), end) or 0.0
        return VersionStats(
            requests=round(requests),
            errors=round(errors),
            latency_buckets=tuple(buckets),
            latency_sum_ms=latency_sum if math.isfinite(latency_sum) else 0.0,
        )

    def baseline_history(self, query: WindowQuery) -> VersionStats | None:
        """The stable version over the lookback before the rollout (``BaselineHistory``).

        Raises ``PrometheusError`` when Prometheus cannot answer; ``None`` means it had no data.
        """
        return self.version_stats(query.rollout, query.baseline_version, query.start, query.end)

    def collect(self, query: WindowQuery) -> Window:
        self._wait_until_settled(query)  # the window's last scrape (and Envoy's last histogram flush) must exist
        # A PrometheusError propagates: the engine records the window as a backend error, not no data.
        baseline = self.version_stats(query.rollout, query.baseline_version, query.start, query.end)
        canary = self.version_stats(query.rollout, query.canary_version, query.start, query.end)
        return Window(query.start, query.end, baseline, canary)


# ---------------------------------------------------------------- a local Prometheus for tests and demos


@dataclass
class LocalPrometheus:
    """A throwaway Prometheus scraping loopback targets (e.g. Envoy's admin) every second.

    Needs the Debian package ``prometheus`` (``/usr/bin/prometheus``). Started directly, with its
    own config and storage in a temp folder; never through systemd. Stopped by its PID.
    """

    targets: Sequence[str]
    metrics_path: str = "/stats/prometheus"
    scrape_interval: str = "1s"
    binary: str | None = None
    port: int = 0
    workdir: Path | None = None
    _process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 20.0) -> LocalPrometheus:
        binary = self.binary or shutil.which("prometheus") or "/usr/bin/prometheus"
        if not os.path.exists(binary):
            raise PrometheusError("Prometheus binary not found: apt-get install -y prometheus")
        self.port = self.port or free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="rollwise-prometheus-"))
        for target in self.targets:
            host = target.rsplit(":", 1)[0].strip("[]")
            if host not in ("127.0.0.1", "localhost", "::1"):
                raise PrometheusError(f"scrape target {target!r} is not on loopback")
        config = self.workdir / "prometheus.yml"
        config.write_text(
            "global:\n"
            f"  scrape_interval: {self.scrape_interval}\n"
            f"  evaluation_interval: {self.scrape_interval}\n"
            "scrape_configs:\n"
            "  - job_name: envoy\n"
            f"    metrics_path: {self.metrics_path}\n"
            "    static_configs:\n"
            f"      - targets: [{', '.join(repr(t) for t in self.targets)}]\n"
        )
        self._process = spawn_logged(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
            ],
            self.workdir / "prometheus.log",
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise PrometheusError(f"Prometheus exited; see {self.workdir / 'prometheus.log'}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise PrometheusError(f"Prometheus not ready within {timeout_s}s")

    def wait_for_scrape(self, timeout_s: float = 15.0) -> None:
        """Block until every target has been scraped successfully at least once."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            response = httpx.get(f"{self.url}/api/v1/query", params={"query": "up"}, timeout=2)
            results = response.json()["data"]["result"]
            if len(results) >= len(self.targets) and all(r["value"][1] == "1" for r in results):
                return
            time.sleep(0.2)
        raise PrometheusError("Prometheus did not scrape its targets in time")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_process(process, grace_s=10)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalPrometheus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
