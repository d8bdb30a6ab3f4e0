"""Per-window observations from the spans ``rollwise serve`` received over OTLP (``rollwise.telemetry``).

For services instrumented with any OpenTelemetry SDK and no Envoy: the versions are the resource's
``service.version`` (or ``<flag>:<variant>`` for a flag rollout), the service its ``service.name`` (the
spec's ``service``). Exporters batch, so a window is read ``settle_s`` after it ends, once its spans have
arrived. Only the process that receives the spans has them: ``metrics.source: otlp`` works in
``rollwise serve`` (the controller in the server), not in a CLI's local controller.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rollwise.core.model import Window, WindowQuery
from rollwise.telemetry.aggregate import SpanAggregates


class OtlpMetricSource:
    """Implements ``MetricSource`` over the spans the server aggregated."""

    def __init__(self, spans: SpanAggregates, *, flag: str | None = None, settle_s: float = 2.0,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time) -> None:
        self.spans = spans
        self.flag = flag
        self.settle_s = settle_s
        self._sleep = sleep
        self._clock = clock

    def _version(self, version: str) -> str:
        return f"{self.flag}:{version}" if self.flag else version

    def collect(self, query: WindowQuery) -> Window:
        wait = query.end + self.settle_s - self._clock()
        if 0 < wait <= self.settle_s:
            self._sleep(wait)  # the exporter's last batch for this window
        baseline = self.spans.stats(query.service, self._version(query.baseline_version), query.start, query.end)
        canary = self.spans.stats(query.service, self._version(query.canary_version), query.start, query.end)
        return Window(query.start, query.end, baseline, canary)
