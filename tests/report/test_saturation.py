"""Saturation beside the per-route split (issue 17, part 2): CPU, memory and pool usage per version, canary vs
baseline, from what a service reports over OTLP and from the processes rollwise runs (``/proc``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from rollwise.adapters.metrics.process import ProcfsProcesses
from rollwise.core.model import VersionStats, Window, WindowQuery
from rollwise.report.saturation import saturation
from rollwise.telemetry.aggregate import SpanAggregates
from rollwise.telemetry.enrich import with_process_usage, with_telemetry_detail
from rollwise.telemetry.saturation import CPU_CORES, CPU_UTILIZATION, MEMORY_BYTES, POOL_USED
from rollwise.watch.series import ProcessUsage

NOW = 1_700_000_000.0
QUERY = WindowQuery("shop-v2", "shop", "v1", "v2", NOW, NOW + 10)


class Counts:
    """A metric source that counts 100 requests per side, as Envoy would."""

    def collect(self, query: WindowQuery) -> Window:
        return Window(query.start, query.end, VersionStats(requests=100), VersionStats(requests=100))


def _metrics(version: str, cpu: tuple[float, float], memory: int, pool: tuple[int, int]) -> ExportMetricsServiceRequest:
    """Ten seconds of a service's process and pool metrics, as the OpenTelemetry semantic conventions name them."""
    request = ExportMetricsServiceRequest()
    resource = request.resource_metrics.add()
    for key, value in (("service.name", "shop"), ("service.version", version)):
        resource.resource.attributes.append(KeyValue(key=key))
        resource.resource.attributes[-1].value.string_value = value
    scope = resource.scope_metrics.add()
    utilization, usage, connections = scope.metrics.add(), scope.metrics.add(), scope.metrics.add()
    utilization.name, usage.name, connections.name = ("process.cpu.utilization", "process.memory.usage",
                                                      "db.client.connections.usage")
    for second in range(10):
        at = int((NOW + second + 0.5) * 1e9)
        for mode, value in zip(("user", "system"), cpu, strict=True):
            point = utilization.gauge.data_points.add(time_unix_nano=at, as_double=value)
            point.attributes.append(KeyValue(key="cpu.mode"))
            point.attributes[-1].value.string_value = mode
        usage.sum.data_points.add(time_unix_nano=at, as_int=memory)
        for state, value in zip(("used", "idle"), pool, strict=True):
            point = connections.sum.data_points.add(time_unix_nano=at, as_int=value)
            point.attributes.append(KeyValue(key="state"))
            point.attributes[-1].value.string_value = state
    return request


def test_reported_cpu_memory_and_pool_usage_are_shown_canary_vs_baseline() -> None:
    telemetry = SpanAggregates(clock=lambda: NOW + 12)
    assert telemetry.add_metrics(_metrics("v1", (0.15, 0.05), 100 << 20, (2, 8))) == 50
    telemetry.add_metrics(_metrics("v2", (0.45, 0.15), 150 << 20, (8, 2)))
    window = with_telemetry_detail(Counts(), telemetry).collect(QUERY)

    assert window.canary is not None and window.canary.requests == 100  # the counts are the source's own
    rows = {row.key: row for row in saturation([window])}
    assert set(rows) == {CPU_UTILIZATION, MEMORY_BYTES, POOL_USED}
    cpu, memory, pool = rows[CPU_UTILIZATION], rows[MEMORY_BYTES], rows[POOL_USED]
    assert cpu.canary == pytest.approx(0.6) and cpu.baseline == pytest.approx(0.2)  # user + system
    assert cpu.text() == ("CPU (process.cpu.utilization): canary 60.0% of CPUs vs baseline 20.0% of CPUs "
                          "(3.00x)")
    assert memory.text() == "memory: canary 150.0 MiB vs baseline 100.0 MiB (1.50x)"
    assert (pool.canary, pool.baseline) == (8, 2)  # connections in use; idle ones are not usage
    # levels are averaged over windows, not summed as counts are
    assert saturation([window, window])[0].canary == pytest.approx(0.6)


class Processes:
    """CPU seconds used so far and resident memory per version, as ``/proc`` would answer."""

    def __init__(self) -> None:
        self.cpu = {"v1": 1.0, "v2": 1.0}

    def usage(self, rollout: str, version: str) -> ProcessUsage | None:
        return ProcessUsage(cpu_s=self.cpu[version], rss_bytes=(40 if version == "v1" else 80) * 2**20) \
            if rollout == "shop-v2" else None


def test_cpu_of_the_deployed_versions_is_cores_busy_since_the_last_window_and_per_request() -> None:
    processes, clock = Processes(), [NOW]
    source = with_process_usage(Counts(), processes, lambda: clock[0])
    first = source.collect(QUERY)
    assert first.canary is not None and first.canary.extra == {MEMORY_BYTES: 80 * 2**20}  # no CPU before a delta
    clock[0] += 10
    processes.cpu = {"v1": 2.0, "v2": 4.0}  # v1 used 1 s of CPU in 10 s, v2 3 s
    second = source.collect(QUERY)
    assert second.canary is not None and second.baseline is not None
    assert second.canary.extra[CPU_CORES] == pytest.approx(0.3)
    assert second.baseline.extra[CPU_CORES] == pytest.approx(0.1)
    row = next(r for r in saturation([first, second]) if r.key == CPU_CORES)
    assert row.canary_per_request == pytest.approx(30.0) and row.baseline_per_request == pytest.approx(10.0)
    assert row.text() == ("CPU (processes rollwise runs): canary 0.30 cores vs baseline 0.10 cores (3.00x); "
                          "per request 30.00 ms vs 10.00 ms CPU (3.00x)")
    other = source.collect(WindowQuery("not-ours", "shop", "v1", "v2", NOW, NOW + 10))
    assert other.canary is not None and other.canary.extra == {}  # rollwise runs no process for it


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="Linux /proc")
def test_a_real_process_group_is_read_from_proc() -> None:
    busy = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 3\nwhile time.time() < end: pass"],
                            start_new_session=True)
    try:
        clock = [time.time()]
        source = with_process_usage(Counts(), ProcfsProcesses(lambda _r, v: busy.pid if v == "v2" else None),
                                    lambda: clock[0])
        source.collect(QUERY)
        time.sleep(1.0)
        clock[0] = time.time()
        window = source.collect(QUERY)
    finally:
        busy.kill()
        busy.wait()
    assert window.canary is not None and window.baseline is not None
    assert window.canary.extra[MEMORY_BYTES] > 1 << 20 and window.canary.extra[CPU_CORES] > 0  # it spins
    assert window.baseline.extra == {}
