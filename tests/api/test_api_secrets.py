"""Secrets in a spec reach the notification receivers and nobody else: not a viewer of the API (rollout,
list, events, stream, decisions), not the audit log, not the server's output, not the local CLI."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from rollwise.adapters.notifiers.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from rollwise.adapters.stores.sql import SqlStore
from rollwise.spec.secrets import fingerprint
from support.api import file_spec, make_tokens
from support.serve_process import rollwise_serve

YAML = {"Content-Type": "application/yaml"}
HMAC_KEY = "hmac-key-5f0c1e77"
WEBHOOK_TOKEN = "whtoken-8d2a41c9"
TEAMS_TOKEN = "teamstoken-3b9e07aa"
SLACK_TOKEN = "slacktoken-c41d96f2"  # only in the server's environment, referenced by name
SECRETS = (HMAC_KEY, WEBHOOK_TOKEN, TEAMS_TOKEN, SLACK_TOKEN)


class Receiver:
    """Records every POST on a loopback port."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.arrived:
                    receiver.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    receiver.arrived.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> list[tuple[str, dict[str, str], bytes]]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: predicate(self.requests), timeout), self.requests
            return list(self.requests)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    thread = threading.Thread(target=rec.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        rec.server.shutdown()
        rec.server.server_close()
        thread.join(5)


def _notify(receiver: Receiver) -> str:
    return (f"notify:\n  webhook: '{receiver.url}/hook?token={WEBHOOK_TOKEN}'\n  webhookSecret: {HMAC_KEY}\n"
            f"  teams: '{receiver.url}/teams/{TEAMS_TOKEN}'\n  slackEnv: ROLLWISE_NOTIFY_SLACK\n")


def _assert_clean(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{where} shows a secret: ...{text[max(0, text.find(secret) - 80):][:200]}"


def _viewer_reads(client: httpx.Client, name: str) -> dict[str, str]:
    paths = ["/api/v1/rollouts", f"/api/v1/rollouts/{name}", f"/api/v1/rollouts/{name}/events", "/api/v1/events",
             f"/api/v1/rollouts/{name}/decisions", f"/api/v1/rollouts/{name}/windows", "/api/v1/metrics"]
    texts = {}
    for path in paths:
        response = client.get(path)
        assert response.status_code == 200, (path, response.text)
        texts[path] = response.text
    return texts


@pytest.mark.timeout(180)
def test_viewers_logs_and_audit_never_see_secrets_but_receivers_get_them(tmp_path: Path, receiver: Receiver) -> None:
    store_url = f"sqlite:///{tmp_path / 'rollwise.db'}"
    tokens = make_tokens(store_url)
    spec = file_spec("paid", tmp_path / "routes" / "paid.json", pause="1h", weights=(20, 100)) + _notify(receiver)
    env = {"ROLLWISE_NOTIFY_SLACK": f"{receiver.url}/slack/{SLACK_TOKEN}"}
    with rollwise_serve(store_url, tmp_path, "--allow-path", str(tmp_path / "routes"), "--allow-url",
                        f"{receiver.url}/", env=env) as server:
        with server.client(tokens["deployer"]) as deployer:
            started = deployer.post("/api/v1/rollouts", content=spec.encode(), headers=YAML)
            assert started.status_code == 201, started.text
        receiver.wait_for(lambda got: {p.split("/")[1].split("?")[0] for p, _, _ in got} >= {"hook", "teams", "slack"})
        with server.client(tokens["viewer"]) as viewer:
            shown = viewer.get("/api/v1/rollouts/paid").json()["spec"]["notify"]
            assert shown["webhookSecret"] == f"***sha256:{fingerprint(HMAC_KEY)}"
            assert shown["teams"].startswith(f"{receiver.url}/***sha256:")
            assert shown["slackEnv"] == "ROLLWISE_NOTIFY_SLACK"
            with viewer.stream("GET", "/api/v1/events/stream", params={"max_seconds": 3}) as stream:
                _round_trip_and_finish(server.client(tokens["releaser"]), shown)
                streamed = "".join(stream.iter_text())
            assert "event: rollout" in streamed
            reads = _viewer_reads(viewer, "paid")
        with server.client(tokens["admin"]) as admin:
            reads["/api/v1/audit (admin)"] = admin.get("/api/v1/audit").text
    logs = {"server output": server.log.read_text(), "delivery log": (tmp_path / "deliveries.jsonl").read_text()}
    for where, text in {**reads, "event stream": streamed, **logs}.items():
        _assert_clean(where, text)
    _assert_clean("audit_log table", _table_text(tmp_path / "rollwise.db", "audit_log"))
    _assert_clean("events table", _table_text(tmp_path / "rollwise.db", "events"))
    _assert_clean("local CLI", _local_cli(store_url, "paid"))
    _assert_receivers_got_the_real_secrets(receiver)
    with SqlStore(store_url) as store:  # the round trip kept the real secret for delivery
        assert store.get("paid").spec.notify.webhookSecret == HMAC_KEY  # type: ignore[union-attr]


def _round_trip_and_finish(releaser: httpx.Client, shown: dict[str, Any]) -> None:
    """GET → edit → PUT with the redacted values as shown keeps the secrets; then promote to the end."""
    with releaser:
        spec = releaser.get("/api/v1/rollouts/paid").json()["spec"]
        assert spec["notify"] == shown
        spec["labels"] = {"team": "payments"}
        updated = releaser.put("/api/v1/rollouts/paid/spec", json=spec, params={"reason": "add a label"})
        assert updated.status_code == 200, updated.text
        forged = {**spec, "notify": {**spec["notify"], "webhookSecret": "***sha256:00000000"}}
        refused = releaser.put("/api/v1/rollouts/paid/spec", json=forged)
        assert refused.status_code == 422 and "notify.webhookSecret" in refused.text
        assert releaser.post("/api/v1/rollouts/paid/promote", json={"full": True}).status_code == 200


def _table_text(db: Path, table: str) -> str:
    with sqlite3.connect(db) as conn:
        return json.dumps(conn.execute(f"SELECT * FROM {table}").fetchall(), default=str)


def _local_cli(store_url: str, name: str) -> str:
    outputs = []
    for args in (["rollout", "status", name, "--output", "json"], ["rollout", "list", "--output", "json"],
                 ["history", name, "--output", "json"]):
        done = subprocess.run([sys.executable, "-m", "rollwise", *args, "--store", store_url],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout + done.stderr)
    return "\n".join(outputs)


def _assert_receivers_got_the_real_secrets(receiver: Receiver) -> None:
    hooks = [(path, headers, body) for path, headers, body in receiver.requests if path.startswith("/hook")]
    assert hooks and all(path == f"/hook?token={WEBHOOK_TOKEN}" for path, _, _ in hooks)
    for _, headers, body in hooks:
        assert verify_signature(HMAC_KEY, body, headers[TIMESTAMP_HEADER.lower()], headers[SIGNATURE_HEADER.lower()])
    assert any(path == f"/teams/{TEAMS_TOKEN}" for path, _, _ in receiver.requests)
    assert any(path == f"/slack/{SLACK_TOKEN}" for path, _, _ in receiver.requests)
