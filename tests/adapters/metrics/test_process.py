"""CPU and memory of real processes read from /proc, and the watch noticing a real process whose memory grows."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from rollwise.adapters.metrics.process import ProcfsProcesses
from rollwise.core.clock import VirtualClock
from rollwise.watch.series import ProcessUsage
from support.watch import run, watch_of

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

# Grows by 4 MB every 50 ms once the file named by argv[1] exists; a child (same process group) sleeps.
GROWER = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
chunks = []
for _ in range(1200):
    if os.path.exists(sys.argv[1]) and len(chunks) < 100:
        chunks.append(bytearray(4 * 1024 * 1024))
    time.sleep(0.05)
"""


@pytest.fixture
def grower(tmp_path: Path):  # type: ignore[no-untyped-def]
    trigger = tmp_path / "grow"
    process = subprocess.Popen([sys.executable, "-c", GROWER, str(trigger)], start_new_session=True)
    time.sleep(0.5)
    yield process, trigger
    import os
    import signal

    os.killpg(process.pid, signal.SIGKILL)  # our own group: the grower and its child
    process.wait()


def test_usage_sums_the_version_s_process_group_and_follows_its_memory(grower) -> None:  # type: ignore[no-untyped-def]
    process, trigger = grower
    reader = ProcfsProcesses(lambda rollout, version: process.pid if version == "v1" else None)
    assert reader.usage("shop", "v2") is None
    first = reader.usage("shop", "v1")
    assert first is not None and first.rss_bytes > 5e6 and first.cpu_s > 0
    alone = ProcfsProcesses(lambda r, v: process.pid, proc="/proc")
    trigger.write_text("go")
    time.sleep(1.0)
    later = alone.usage("shop", "v1")
    assert later is not None and later.rss_bytes > first.rss_bytes + 40e6
    child_rss = later.rss_bytes - _own_rss(process.pid)
    assert child_rss > 1e6  # the sleeping child counts: it is in the version's process group


def _own_rss(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return float(line.split()[1]) * 1024
    return 0.0


def test_a_gone_process_has_no_usage() -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    assert ProcfsProcesses(lambda r, v: process.pid).usage("shop", "v1") is None


def test_the_watch_opens_an_incident_when_a_real_process_s_memory_grows(grower, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    process, trigger = grower
    watch, clock = watch_of(tmp_path, "watch: {interval: 10s, metrics: [memory, cpu]}\n",
                            processes=ProcfsProcesses(lambda r, v: process.pid if v == "v1" else None))
    assert isinstance(clock, VirtualClock)
    for _ in range(30):  # five virtual minutes of a steady process, read for real
        assert run(watch, clock, 1) == []
        time.sleep(0.02)
    trigger.write_text("go")
    seen = []
    for _ in range(20):
        seen += run(watch, clock, 1)
        time.sleep(0.1)
    assert seen and seen[0].metric == "memory"
    assert seen[0].series[-1][1] > seen[0].series[0][1] + 8e6
    assert isinstance(ProcfsProcesses(lambda r, v: process.pid).usage("shop", "v1"), ProcessUsage)
