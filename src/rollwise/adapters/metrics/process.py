"""CPU and memory of the processes rollwise runs, read from Linux's ``/proc`` (the watch's ``ProcessReader``).

A version the local deployer started leads its own process group (``new_session``), so its usage is the sum
over that group: a wrapper script's children count too. CPU is ``utime + stime`` of ``/proc/PID/stat`` in clock
ticks; memory is ``VmRSS`` of ``/proc/PID/status``. No psutil: two small files per process are all it needs.
Where ``/proc`` is missing (not Linux) or the process is gone, the answer is None: no point, not a zero.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from rollwise.watch.series import ProcessUsage

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(proc: Path, pid: int) -> tuple[int, float] | None:
    """(process group, CPU seconds) of ``pid``, or None when it is gone."""
    try:
        text = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses
    return int(fields[2]), (int(fields[11]) + int(fields[12])) / TICKS


def _rss_bytes(proc: Path, pid: int) -> float:
    try:
        for line in (proc / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return float(line.split()[1]) * 1024.0  # kB
    except OSError:
        pass
    return 0.0  # a zombie has no VmRSS


class ProcfsProcesses:
    """Implements ``ProcessReader`` for the versions whose PIDs ``pid_of(rollout, version)`` knows."""

    def __init__(self, pid_of: Callable[[str, str], int | None], proc: str | Path = "/proc") -> None:
        self.pid_of, self.proc = pid_of, Path(proc)

    def usage(self, rollout: str, version: str) -> ProcessUsage | None:
        leader = self.pid_of(rollout, version)
        if leader is None:
            return None
        head = _stat(self.proc, leader)
        if head is None:
            return None
        members = [leader]
        if head[0] == leader:  # a group leader: its group is the version
            members += [pid for pid in self._pids() if pid != leader and (_stat(self.proc, pid) or (0,))[0] == leader]
        cpu = rss = 0.0
        for pid in members:
            stat = _stat(self.proc, pid)
            if stat is not None:
                cpu += stat[1]
                rss += _rss_bytes(self.proc, pid)
        return ProcessUsage(cpu_s=cpu, rss_bytes=rss)

    def _pids(self) -> list[int]:
        try:
            return [int(name) for name in os.listdir(self.proc) if name.isdigit()]
        except OSError:
            return []
