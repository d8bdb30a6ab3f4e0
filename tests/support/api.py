"""A real rollwise server on a free 127.0.0.1 port, in a thread, for each test that asks for one."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from rollwise.adapters.stores.sql import SqlStore
from rollwise.adapters.stores.sql_audit import SqlAuditLog, SqlTokenRepository
from rollwise.api import create_app
from rollwise.api.policy import SpecPolicy

ROLES = ("viewer", "deployer", "releaser", "admin")


def file_spec(name: str, route_path: Path, pause: str = "1s", weights: tuple[int, ...] = (20, 50, 100)) -> str:
    """A canary spec the controller can drive with no data plane: a FileRouter and fixed pauses."""
    steps = []
    for weight in weights:
        steps.append(f"      - setWeight: {weight}")
        if weight != 100:
            steps.append(f"      - pause: {{duration: {pause}}}")
    return "\n".join([
        "apiVersion: rollwise/v1",
        "kind: Rollout",
        f"name: {name}",
        f"service: {name}",
        "versions:",
        "  stable: {name: v1, address: 127.0.0.1:9001}",
        "  canary: {name: v2, address: 127.0.0.1:9002}",
        f"traffic: {{router: file, path: {json.dumps(str(route_path))}}}",
        "metrics: {source: simulated}",
        "strategy:",
        "  canary:",
        "    steps:",
        *steps,
        "",
    ])


FLAGS = {
    "flags": {
        "new-checkout": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"},
        "banner": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"},
    }
}


@dataclass
class LiveServer:
    url: str
    store_url: str
    app: Any

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0)


@contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """Run ``app`` under uvicorn on a socket bound to port 0; always stop it, even on failure."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it: no Nagle stalls
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="rollwise-test-server",
                              daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'rollwise.db'}"


@pytest.fixture
def flags_file(tmp_path: Path) -> Path:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(FLAGS))
    return path


def make_tokens(store_url: str) -> dict[str, str]:
    """One token per role, created straight in the store (as `rollwise tokens create` does)."""
    with SqlStore(store_url) as store:
        repo = SqlTokenRepository(store)
        return {role: repo.create(f"{role}-bot", role)[1] for role in ROLES}


def audit_rows(store_url: str) -> list[Any]:
    with SqlStore(store_url) as store:
        return SqlAuditLog(store).entries()


def tmp_policy(tmp_path: Path) -> SpecPolicy:
    """Specs from the API may write route files under the test's tmp_path (``serve --allow-path``)."""
    return SpecPolicy(allow_paths=(tmp_path,))


@pytest.fixture
def live(store_url: str, flags_file: Path, tmp_path: Path) -> Iterator[LiveServer]:
    """A server without the controller thread (tests steer state themselves)."""
    app = create_app(store_url, str(flags_file), policy=tmp_policy(tmp_path))
    with serve_app(app) as url:
        yield LiveServer(url, store_url, app)


@pytest.fixture
def live_controller(store_url: str, flags_file: Path, tmp_path: Path) -> Iterator[LiveServer]:
    """A server whose controller thread drives rollouts, as `rollwise serve` does."""
    app = create_app(store_url, str(flags_file), run_controller=True, controller_poll_s=0.1, stream_poll_s=0.2,
                     policy=tmp_policy(tmp_path))
    with serve_app(app) as url:
        yield LiveServer(url, store_url, app)


def start(live: LiveServer, token: str, name: str, route: Path, **spec: Any) -> None:
    response = httpx.post(f"{live.url}/api/v1/rollouts", content=file_spec(name, route, **spec).encode(),
                          headers={"Authorization": f"Bearer {token}", "Content-Type": "application/yaml"})
    assert response.status_code == 201, response.text
