"""`RolloutControl`: the CLI's one interface, here (`LocalControl`) or on a server (`RemoteControl`).
Both fail with the same one-line messages and exit codes, and both audit their writes."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn

from rollwise.adapters.stores.sql import SqlStore
from rollwise.api import create_app
from rollwise.api.policy import SpecPolicy
from rollwise.control.local import LocalControl
from rollwise.control.protocol import ControlFailure, RolloutControl
from rollwise.control.remote import RemoteControl
from rollwise.wiring import open_audit

SPEC = """apiVersion: rollwise/v1
kind: Rollout
name: {name}
service: {name}
versions:
  stable: {{name: v1, address: 127.0.0.1:9001}}
  canary: {{name: v2, address: 127.0.0.1:9002}}
traffic: {{router: file, path: "{route}"}}
metrics: {{source: simulated}}
strategy:
  canary:
    steps:
      - setWeight: 20
      - pause: {{untilApproved: true}}
"""


@contextmanager
def _server(store_url: str, tmp_path: Path) -> Iterator[str]:
    app = create_app(store_url, policy=SpecPolicy(allow_paths=(tmp_path,)))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def _refuse(foreground: object, *args: object) -> list[object]:
    raise AssertionError("these tests do not drive rollouts")


@pytest.fixture
def controls(tmp_path: Path) -> Iterator[dict[str, RolloutControl]]:
    store_url = f"sqlite:///{tmp_path / 'rollwise.db'}"
    with _server(store_url, tmp_path) as url:
        local = LocalControl(store_url, foreground=_refuse)
        remote = RemoteControl(url, None, on_event=lambda name, event: None)
        yield {"local": local, "remote": remote}
        remote.close()


def _spec(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(SPEC.format(name=name, route=tmp_path / f"{name}.json"))
    return path


def test_failures_read_the_same_here_and_on_a_server(controls: dict[str, RolloutControl], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: rollwise/v1\nkind: Rollout\nname: x\n")
    for where, control in controls.items():
        for call in (lambda c: c.status("nope"), lambda c: c.command("nope", "pause", "ana", "why"),
                     lambda c: c.events("nope")):
            with pytest.raises(ControlFailure) as missing:
                call(control)
            assert (missing.value.lines, missing.value.exit_code) == (("error: no rollout named 'nope'",), 1), where
        with pytest.raises(ControlFailure) as invalid:
            control.start(bad, "ana", None)
        assert invalid.value.exit_code == 2 and invalid.value.lines, where
        assert all(line.startswith(str(bad)) for line in invalid.value.lines), (where, invalid.value.lines)


def test_writes_either_way_are_audited(controls: dict[str, RolloutControl], tmp_path: Path) -> None:
    local, remote = controls["local"], controls["remote"]
    started = local.start(_spec(tmp_path, "shop"), "ana", None)
    assert started["name"] == "shop" and started["phase"] == "Pending"
    assert remote.status("shop")["phase"] == "Pending"
    assert remote.command("shop", "pause", "ignored-the-server-knows", "lunch")["phase"] == "Paused"
    assert local.status("shop")["phase"] == "Paused"
    assert [s["name"] for s in remote.list(active=True)] == [s["name"] for s in local.list(active=True)] == ["shop"]
    assert [e["type"] for e in remote.events("shop")] == [e["type"] for e in local.events("shop")]
    with SqlStore(f"sqlite:///{tmp_path / 'rollwise.db'}") as store:
        audit, _tokens = open_audit(store)
        rows = [(e.actor, e.role, e.action, e.reason) for e in audit.entries("shop")]
    assert rows == [("ana", "local", "rollout.start", None),
                    ("local (no tokens yet)", "admin", "rollout.pause", "lunch")]
