"""``rollwise serve`` as users run it: a separate process on a free loopback port, its output in a file."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass
class ServeProcess:
    url: str
    log: Path  # the server's stdout and stderr

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0)


@contextmanager
def rollwise_serve(store_url: str, workdir: Path, *args: str,
                   env: Mapping[str, str] | None = None) -> Iterator[ServeProcess]:
    """Start ``rollwise serve --store STORE_URL ARGS…`` with HOME under ``workdir``; always stop it by its pid."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = workdir / "serve.log"
    home = workdir / "home"
    home.mkdir(parents=True, exist_ok=True)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ROLLWISE_")}
    environ.update({"HOME": str(home), "ROLLWISE_NOTIFY_LOG": str(workdir / "deliveries.jsonl"), **(env or {})})
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rollwise", "serve", "--port", str(port), "--store", store_url, *args],
            stdout=out, stderr=subprocess.STDOUT, env=environ, cwd=workdir,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120  # a loaded CI machine (Envoy tests beside it) can take a minute to import
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"rollwise serve did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.1)
        yield ServeProcess(url, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
