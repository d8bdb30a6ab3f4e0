"""Saturation beside the counts: CPU, memory and connection-pool usage per version, for the RCA.

Two sources fill the same ``VersionStats.extra`` keys (all starting ``sat.``), one value per window:

- OTLP metrics a service reports (OpenTelemetry semantic conventions): ``process.cpu.utilization`` (share of
  the machine's CPUs; summed over its ``cpu.mode`` points), ``process.memory.usage`` (bytes resident) and
  ``db.client.connections.usage`` / ``db.client.connection.count`` (connections in state ``used`` only).
  Per second the last value of each attribute set is kept and the set summed; a window's value is the mean
  over the seconds that had one (``SpanAggregates``).
- The processes rollwise itself deployed (``/proc``, ``adapters/metrics/process.py``): CPU in cores busy over
  the window and resident memory at its end (``telemetry/enrich.py``).

``report/saturation.py`` shows them canary vs baseline beside the per-route split.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

PREFIX = "sat."
CPU_CORES = "sat.cpu_cores"  # /proc: CPU seconds used per second of the window
CPU_UTILIZATION = "sat.cpu_utilization"  # OTLP process.cpu.utilization: share of all CPUs
MEMORY_BYTES = "sat.memory_bytes"
POOL_USED = "sat.pool_used"
OTLP_GAUGES = {
    "process.cpu.utilization": CPU_UTILIZATION,
    "process.memory.usage": MEMORY_BYTES,
    "db.client.connections.usage": POOL_USED,  # semantic conventions before 1.26
    "db.client.connection.count": POOL_USED,
}
_POOL_STATE = ("state", "db.client.connection.state")


def gauge_points(metric: Any) -> Iterator[tuple[str, int, tuple[tuple[str, str], ...], float]]:
    """(extra key, second, attribute set, value) of each data point of a saturation metric; none for others."""
    key = OTLP_GAUGES.get(metric.name)
    if key is None:
        return
    kind = metric.WhichOneof("data")
    if kind not in ("gauge", "sum"):
        return
    for point in getattr(metric, kind).data_points:
        attributes = tuple(sorted((a.key, _text(a.value)) for a in point.attributes))
        if key == POOL_USED and any(k in _POOL_STATE and v != "used" for k, v in attributes):
            continue  # idle connections are not usage
        value = point.as_double if point.WhichOneof("value") == "as_double" else float(point.as_int)
        yield key, point.time_unix_nano // 1_000_000_000, attributes, value


def window_means(per_second: Iterable[dict[str, dict[Any, float]]]) -> dict[str, float]:
    """Each key's mean over the seconds that have it, of the sum over its attribute sets."""
    sums: dict[str, float] = {}
    seconds: dict[str, int] = {}
    for gauges in per_second:
        for key, points in gauges.items():
            sums[key] = sums.get(key, 0.0) + sum(points.values())
            seconds[key] = seconds.get(key, 0) + 1
    return {key: sums[key] / seconds[key] for key in sums}


def _text(any_value: Any) -> str:
    kind = any_value.WhichOneof("value")
    return str(getattr(any_value, kind)) if kind else ""
