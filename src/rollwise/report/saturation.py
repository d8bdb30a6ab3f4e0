"""Saturation beside the per-route split: the canary's CPU, memory and pool usage against the baseline's.

The values are the windows' ``VersionStats.extra`` ``sat.*`` keys (``telemetry/saturation.py``): CPU in
cores and resident memory of the processes rollwise deployed (``/proc``), and what a service reported over
OTLP (``process.cpu.utilization``, ``process.memory.usage``, connections in use). Each is a level, not a
count, so it is averaged over the windows that carry it, per side, never summed. A row is shown when
either side has it; ``ratio`` says how many times the baseline's the canary's is. A canary on 20 % of the
traffic does less work than its baseline, so CPU in cores is also given per request (CPU milliseconds over
the requests the source counted in those windows), which compares versions at any split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rollwise.core.model import Window
from rollwise.telemetry.saturation import CPU_CORES, CPU_UTILIZATION, MEMORY_BYTES, POOL_USED

ROWS = (
    (CPU_CORES, "CPU (processes rollwise runs)"),
    (CPU_UTILIZATION, "CPU (process.cpu.utilization)"),
    (MEMORY_BYTES, "memory"),
    (POOL_USED, "connections in use"),
)


@dataclass(frozen=True)
class Saturation:
    key: str
    what: str
    canary: float | None  # mean over the windows that carry it
    baseline: float | None
    canary_per_request: float | None = None  # CPU ms per request (cores only)
    baseline_per_request: float | None = None

    @property
    def ratio(self) -> float | None:
        if self.canary is None or not self.baseline:
            return None
        return self.canary / self.baseline

    def text(self) -> str:
        line = f"{self.what}: canary {_value(self.key, self.canary)} vs baseline {_value(self.key, self.baseline)}"
        line += f" ({self.ratio:.2f}x)" if self.ratio is not None else ""
        if self.canary_per_request is not None and self.baseline_per_request is not None:
            line += (f"; per request {self.canary_per_request:.2f} ms vs {self.baseline_per_request:.2f} ms CPU"
                     + (f" ({self.canary_per_request / self.baseline_per_request:.2f}x)"
                        if self.baseline_per_request else ""))
        return line


def saturation(windows: Sequence[Window]) -> list[Saturation]:
    """Each saturation key either side carries, canary vs baseline, averaged over ``windows``."""
    rows = []
    for key, what in ROWS:
        canary = _mean([w.canary.extra.get(key) for w in windows if w.canary is not None])
        baseline = _mean([w.baseline.extra.get(key) for w in windows if w.baseline is not None])
        if canary is not None or baseline is not None:
            per_request = (_cpu_ms_per_request(windows, "canary"), _cpu_ms_per_request(windows, "baseline")) \
                if key == CPU_CORES else (None, None)
            rows.append(Saturation(key, what, canary, baseline, *per_request))
    return rows


def _cpu_ms_per_request(windows: Sequence[Window], side: str) -> float | None:
    cpu_ms = requests = 0.0
    for window in windows:
        stats = window.canary if side == "canary" else window.baseline
        cores = stats.extra.get(CPU_CORES) if stats is not None else None
        if stats is not None and cores is not None and stats.requests:
            cpu_ms += cores * (window.end - window.start) * 1000.0
            requests += stats.requests
    return cpu_ms / requests if requests else None


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _value(key: str, value: float | None) -> str:
    if value is None:
        return "not reported"
    if key == CPU_CORES:
        return f"{value:.2f} cores"
    if key == CPU_UTILIZATION:
        return f"{100 * value:.1f}% of CPUs"
    if key == MEMORY_BYTES:
        return f"{value / 2**20:.1f} MiB"
    return f"{value:.1f}"
