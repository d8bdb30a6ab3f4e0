"""Metric sources: each implements ``MetricSource`` from rollwise.core.protocols.

``SettlingSource`` is not a source but what the scraping ones share (a source never imports another):
an HTTP backend that learns of traffic a little late, so a window is read only once it has settled.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from rollwise.core.model import WindowQuery
from rollwise.envoy_names import cluster_name as envoy_cluster_name


class SettlingSource:
    """Base of a metric source read over HTTP from a backend that lags the traffic by up to ``settle_s``.

    Envoy's histograms move only at each stats flush and Prometheus only at each scrape, so a window
    asked for right after it ends is read ``settle_s`` after its end instead; a late tick never waits.
    Versions are found by their Envoy cluster names unless ``cluster_name`` says otherwise.
    """

    def __init__(
        self,
        *,
        settle_s: float,
        cluster_name: Callable[[str, str], str] = envoy_cluster_name,
        timeout_s: float,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settle_s = settle_s
        self._cluster_name = cluster_name
        self._http = httpx.Client(timeout=timeout_s)
        self._sleep = sleep
        self._clock = clock

    def close(self) -> None:
        self._http.close()

    def _wait_until_settled(self, query: WindowQuery) -> None:
        wait = query.end + self.settle_s - self._clock()
        if 0 < wait <= self.settle_s:
            self._sleep(wait)
