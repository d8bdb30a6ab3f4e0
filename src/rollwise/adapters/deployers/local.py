"""Run each version as a local process: the deployer for laptops, demos and CI.

A version with an ``address`` is someone else's process and is only handed back. A version with
a ``command`` is started here with ``{port}`` filled in, counts as deployed only once its health
path answers 2xx, and is stopped by its PID (SIGTERM, then SIGKILL). Its output goes to a log
file per version, because a version that fails to start is debugged from that log.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from rollwise.local_processes import free_port, spawn_logged
from rollwise.spec.models import VersionRef


class DeployError(RuntimeError):
    pass


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class RunningVersion:
    process: subprocess.Popen[bytes]
    address: str
    command: str
    log_path: Path


class LocalProcessDeployer:
    """Implements ``Deployer`` with child processes of this one."""

    def __init__(
        self,
        log_dir: str | Path,
        *,
        host: str = "127.0.0.1",
        stop_timeout_s: float = 5.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # process output stays the owner's
        self.host = host
        self.stop_timeout_s = stop_timeout_s
        self.env = env
        self._running: dict[tuple[str, str], RunningVersion] = {}
        self._lock = threading.Lock()

    def ensure(self, rollout: str, version: VersionRef) -> str:
        if version.address:
            return version.address
        assert version.command is not None  # VersionRef guarantees address or command
        key = (rollout, version.name)
        with self._lock:
            running = self._running.get(key)
            if running and running.process.poll() is None and running.command == version.command:
                return running.address
            if running:
                self._terminate(running)
                del self._running[key]
            port = version.port or free_port()
            command = version.command.replace("{port}", str(port))
            log_path = self.log_dir / f"{rollout}-{version.name}.log"
            with open(log_path, "ab") as log_file:
                log_file.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} $ {command}\n".encode())
            try:
                process = spawn_logged(
                    shlex.split(command), log_path, env={**os.environ, **self.env} if self.env else None,
                    new_session=True,  # our own process group: a stop reaches its children
                )
            except OSError as exc:
                raise DeployError(f"version {version.name}: cannot start {command!r}: {exc}") from exc
            running = RunningVersion(process, f"{self.host}:{port}", version.command, log_path)
            try:
                self._wait_healthy(version, running)
            except BaseException:
                self._terminate(running)
                raise
            self._running[key] = running
            return running.address

    def stop(self, rollout: str, version: VersionRef) -> None:
        with self._lock:
            running = self._running.pop((rollout, version.name), None)
            if running:
                self._terminate(running)

    def close(self) -> None:
        with self._lock:
            for running in self._running.values():
                self._terminate(running)
            self._running.clear()

    def pid(self, rollout: str, version: str) -> int | None:
        running = self._running.get((rollout, version))
        return running.process.pid if running else None

    def is_running(self, rollout: str, version: str) -> bool:
        running = self._running.get((rollout, version))
        return running is not None and running.process.poll() is None

    def log_path(self, rollout: str, version: str) -> Path:
        return self.log_dir / f"{rollout}-{version}.log"

    def _wait_healthy(self, version: VersionRef, running: RunningVersion) -> None:
        url = f"http://{running.address}{version.healthPath}"
        deadline = time.monotonic() + version.readyTimeout
        last = "no answer"
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() < deadline:
                code = running.process.poll()
                if code is not None:
                    raise DeployError(
                        f"version {version.name} exited with {code} before it was ready; "
                        f"log {running.log_path}:\n{_tail(running.log_path)}"
                    )
                try:
                    response = client.get(url)
                    if 200 <= response.status_code < 300 and running.process.poll() is None:
                        return  # healthy, and it is our process answering (not a stranger on the port)
                    last = f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    last = type(exc).__name__
                time.sleep(0.05)
        raise DeployError(
            f"version {version.name} not ready within {version.readyTimeout}s ({url}: {last}); "
            f"log {running.log_path}:\n{_tail(running.log_path)}"
        )

    def _terminate(self, running: RunningVersion) -> None:
        process = running.process
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)  # the group we created, led by this PID
        try:
            process.wait(timeout=self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=self.stop_timeout_s)
