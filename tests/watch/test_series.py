"""The watch's series beyond errors and mean latency, through the runner with a real store: request volume
(a drop is bad), p99 latency from the histogram, a KPI ratio, process CPU and memory, a Prometheus series."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from rollwise.core.clock import VirtualClock
from rollwise.core.model import VersionStats, Window, WindowQuery
from rollwise.spec import load_spec_text
from rollwise.spec.loader import SpecError
from rollwise.watch.series import ProcessUsage, watched
from support.watch import SPEC, run, watch_of


class Traffic:
    """One version's traffic: volume, a slow tail, a conversion ratio; each settable from a point on."""

    def __init__(self) -> None:
        self.requests, self.slow, self.conversion = 20000, 0.005, 0.10
        self.rng = random.Random(3)

    def collect(self, query: WindowQuery) -> Window:
        n = round(self.requests * self.rng.uniform(0.97, 1.03))
        slow = round(self.rng.gauss(n * self.slow, math.sqrt(n * self.slow) + 1e-9))
        fast = n - slow
        buckets = ((10.0, fast // 2), (20.0, fast), (50.0, fast), (100.0, n), (math.inf, n))
        p = self.conversion
        checkouts = max(0.0, round(self.rng.gauss(n * p, math.sqrt(n * p * (1 - p)))))
        stats = VersionStats(requests=n, errors=round(n * 0.01), latency_buckets=buckets,
                             latency_sum_ms=fast * 12.0 + slow * 75.0, kpis={"visit": float(n), "checkout": checkouts})
        return Window(query.start, query.end, stats, None, cursor={"n": 1})


def test_by_default_every_series_the_service_has_is_watched_each_its_bad_way(tmp_path: Path) -> None:
    watch, _ = watch_of(tmp_path, "watch: {interval: 10s}\n")
    watch.refresh()
    assert watched(watch.targets["shop"].record.spec) == {
        "errorRate": "up", "latencyMean": "up", "latencyP99": "up", "requestRate": "down", "cpu": "up",
        "memory": "up", "kpi:conversion": "down"}


def test_a_drop_in_request_volume_opens_an_incident(tmp_path: Path) -> None:
    traffic = Traffic()
    watch, clock = watch_of(tmp_path, "watch: {interval: 10s}\n", traffic)
    assert run(watch, clock, 40) == []  # steady traffic: nothing on any series
    traffic.requests = 9000
    (opened,) = run(watch, clock, 4)
    assert opened.metric == "requestRate"
    assert opened.series[-1][1] < 0.5 * opened.series[0][1]  # the chart shows the drop (requests per second)


def test_a_slower_tail_opens_an_incident_on_the_p99(tmp_path: Path) -> None:
    traffic = Traffic()
    watch, clock = watch_of(tmp_path, "watch: {interval: 10s, metrics: [latencyP99]}\n", traffic)
    assert run(watch, clock, 40) == []
    before = watch.targets["shop"].points["latencyP99"][-1][1]
    traffic.slow = 0.03  # 3 % of requests slow: the mean barely moves, the p99 jumps a bucket
    (opened,) = run(watch, clock, 4)
    assert opened.metric == "latencyP99" and before < 50 < opened.series[-1][1]


def test_a_conversion_drop_opens_an_incident_on_the_kpi(tmp_path: Path) -> None:
    traffic = Traffic()
    watch, clock = watch_of(tmp_path, "watch: {interval: 10s, metrics: [kpi:conversion, errorRate]}\n", traffic)
    assert run(watch, clock, 40) == []
    traffic.conversion = 0.08  # -20 % (a -10 % step is 4 sd of one point here: found later or not at all)
    seen = run(watch, clock, 12)
    assert seen and seen[0].metric == "kpi:conversion" and seen[0].status == "open"
    assert seen[0].attribution["onset"]["effect_high"] < 0  # it fell, with its interval


class LeakyProcess:
    """A version's processes whose memory drifts upwards from ``leak_from`` while CPU ticks along."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock, self.leak_from = clock, math.inf
        self.rng = random.Random(5)
        self.started = clock.now()

    def usage(self, rollout: str, version: str) -> ProcessUsage | None:
        if version != "v1":
            return None  # rollwise runs no process for v2 here
        now = self.clock.now()
        leak = max(0.0, now - self.leak_from) * 20_000.0  # 20 kB/s: 72 MB an hour
        return ProcessUsage(cpu_s=(now - self.started) * 0.25,
                            rss_bytes=100e6 + leak + self.rng.uniform(-200_000, 200_000))


def test_a_memory_leak_is_a_drift_that_opens_an_incident_on_memory(tmp_path: Path) -> None:
    watch, clock = watch_of(tmp_path, "watch: {interval: 10s, metrics: [memory, cpu]}\n")
    watch.processes = LeakyProcess(clock)
    assert run(watch, clock, 60) == []
    cpu = [v for _, v in watch.targets["shop"].points["cpu"]]
    assert cpu and all(abs(v - 0.25) < 1e-6 for v in cpu)  # cores, from CPU seconds between points
    leaky = watch.processes
    assert isinstance(leaky, LeakyProcess)
    leaky.leak_from = clock.now()
    seen = run(watch, clock, 180)  # up to half an hour
    assert [i.metric for i in seen][:1] == ["memory"]
    assert seen[0].opened_at - leaky.leak_from < 1200  # found within 20 minutes (+24 MB on 100 MB)
    assert seen[0].attribution["onset"]["effect_low"] > 0


class QueueDepth:
    def __init__(self) -> None:
        self.value, self.asked = 40.0, []
        self.rng = random.Random(9)

    def scalar(self, promql: str, at: float) -> float | None:
        self.asked.append(promql)
        return self.value + self.rng.uniform(-2, 2)


def test_a_prometheus_series_named_in_the_spec_is_watched_its_way(tmp_path: Path) -> None:
    queue = QueueDepth()
    block = ("watch:\n  interval: 10s\n  metrics: [queue]\n  series:\n"
             "    - {name: queue, query: 'sum(queue_depth{service=\"{service}\"}[{window}])', direction: up}\n")
    watch, clock = watch_of(tmp_path, block, prometheus_for=lambda record: queue)
    assert run(watch, clock, 40) == []
    assert queue.asked[-1] == 'sum(queue_depth{service="shop"}[10s])'
    queue.value = 90.0
    (opened,) = run(watch, clock, 4)
    assert opened.metric == "queue"


@pytest.mark.parametrize(("block", "message"), [
    ("watch: {metrics: [latencyP50]}", "unknown series 'latencyP50'"),
    ("watch: {metrics: ['kpi:revenue']}", "'kpi:revenue' names no kpi metric"),
    ("watch: {series: [{name: cpu, query: up}]}", "not a built-in metric's"),
])
def test_a_watched_series_that_does_not_exist_is_refused(block: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        load_spec_text(SPEC + block + "\n")


def test_rollwise_validate_names_the_line_of_an_unknown_watched_series(tmp_path: Path) -> None:
    from support.cli import rollwise

    spec = tmp_path / "shop.yaml"
    spec.write_text(SPEC + "watch:\n  metrics: [errorRate, queue]\n")
    done = rollwise(tmp_path, "validate", str(spec))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{spec}:16:" in done.stdout + done.stderr and "unknown series 'queue'" in done.stdout + done.stderr
    spec.write_text(SPEC + "watch:\n  metrics: [errorRate, queue]\n  series: [{name: queue, query: 'sum(q)'}]\n")
    assert rollwise(tmp_path, "validate", str(spec)).returncode == 0
