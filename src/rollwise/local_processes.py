"""Helper processes on this machine: a free loopback port, a child whose output goes to a log, its stop.

The Envoy router, the local Prometheus and the local deployer each start a binary on a port of their
choosing. An adapter never imports another adapter, so the one way to do that lives here, outside
``adapters/``, where all of them (and the demo, the tests and the benchmarks) can share it.
"""

from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the OS's pick), for a process about to bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def spawn_logged(
    argv: Sequence[str], log: Path, *, env: Mapping[str, str] | None = None, new_session: bool = False
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with stdout and stderr appended to ``log`` and no stdin.

    The log file belongs to the child: this process closes its own copy at once, so a long-lived
    controller does not collect one open file per process it ever started.
    """
    with open(log, "ab") as log_file:
        return subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=new_session)


def stop_process(process: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``grace_s``; returns once it is gone."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
