"""Fixtures for notifier and report tests: a real HTTP receiver on 127.0.0.1, a port nobody listens
on, and simulated rollout histories driven by the real engine."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from rollwise.adapters.notifiers.slack import MAX_BLOCKS, MAX_FIELD, MAX_HEADER, MAX_SECTION
from rollwise.adapters.stores.memory import MemoryStore
from rollwise.core.clock import VirtualClock
from rollwise.core.engine import RolloutEngine
from rollwise.core.protocols import Notifier, Store
from rollwise.simulate import Behaviour
from rollwise.simulate.runner import T0
from rollwise.simulate.world import SimulatedWorld
from rollwise.spec import load_spec
from rollwise.spec.models import RolloutSpec

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Records every POST; answers with ``statuses`` in order, then 200 forever."""

    url: str
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    arrived: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.arrived = threading.Condition(self.lock)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.requests) >= count, timeout)
            return list(self.requests)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            rec = state["r"]
            with rec.arrived:
                rec.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                status = rec.statuses.pop(0) if rec.statuses else 200
                rec.arrived.notify_all()
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["r"] = Receiver(url=f"http://127.0.0.1:{server.server_port}/hook")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state["r"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (the port was bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


def canary_spec() -> RolloutSpec:
    return load_spec(REPO / "examples" / "canary.yaml")


def run_rollout(spec: RolloutSpec, canary: Behaviour, store: Store | None = None, notifier: Notifier | None = None,
                seed: int = 0, max_s: float = 3600.0) -> tuple[Store, str]:
    """Drive ``spec`` with the real engine on simulated traffic and a virtual clock; return (store, phase)."""
    store = store or MemoryStore()
    clock = VirtualClock(T0)
    world = SimulatedWorld(Behaviour(), canary, seed=seed, t0=T0)
    engine = RolloutEngine(store=store, clock=clock, router=world, metrics=world, notifier=notifier)
    engine.start(spec)
    record = engine.tick(spec.name)
    while not record.phase.terminal and clock.now() - T0 < max_s:
        clock.advance(10.0)
        record = engine.tick(spec.name)
    return store, str(record.phase)




def assert_within_slack_limits(message: dict[str, Any]) -> None:
    blocks = message["blocks"]
    assert 0 < len(blocks) <= MAX_BLOCKS
    for block in blocks:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= MAX_HEADER
            assert block["text"]["type"] == "plain_text"
        if block["type"] == "section":
            if "text" in block:
                assert len(block["text"]["text"]) <= MAX_SECTION
            for item in block.get("fields", []):
                assert len(item["text"]) <= MAX_FIELD
            assert len(block.get("fields", [])) <= 10
