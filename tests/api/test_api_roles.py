"""Every write endpoint × every kind of caller over real HTTP: allowed, 401 or 403, and every refusal audited."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from rollwise.api import create_app
from support.api import ROLES, LiveServer, audit_rows, file_spec, make_tokens, serve_app, tmp_policy

RANK = {role: i for i, role in enumerate(ROLES, start=1)}


def write_endpoints(tmp_path: Path) -> list[tuple[str, str, dict[str, Any], str, str, str]]:
    """(method, path, request kwargs, role needed, audit action, audit target) of every write."""
    spec = file_spec("matrix", tmp_path / "matrix.json")
    yaml_body = {"content": spec.encode(), "headers": {"Content-Type": "application/yaml"}}
    rows: list[tuple[str, str, dict[str, Any], str, str, str]] = [
        ("POST", "/api/v1/rollouts", yaml_body, "deployer", "rollout.start", "rollouts"),
        ("POST", "/api/v1/rollouts/matrix/kpis", {"json": {"version": "v2", "metric": "checkouts", "value": 1}},
         "deployer", "rollout.kpi", "matrix"),
        ("PUT", "/api/v1/rollouts/matrix/spec", yaml_body, "releaser", "rollout.update", "matrix"),
    ]
    for command in ("promote", "pause", "resume", "approve", "undo", "abort"):
        rows.append(("POST", f"/api/v1/rollouts/matrix/{command}", {"json": {"reason": "matrix"}}, "releaser",
                     f"rollout.{command}", "matrix"))
    rows += [
        ("POST", "/api/v1/flags/banner/kill", {"json": {"reason": "matrix"}}, "releaser", "flag.kill", "flag:banner"),
        ("POST", "/api/v1/flags/banner/restore", {"json": {"reason": "matrix"}}, "releaser", "flag.restore",
         "flag:banner"),
        ("POST", "/api/v1/tokens", {"json": {"name": "made-by-matrix", "role": "viewer"}}, "admin",
         "tokens.create", "tokens"),
        ("DELETE", "/api/v1/tokens/999", {}, "admin", "tokens.revoke", "tokens"),
    ]
    return rows


@pytest.mark.timeout(120)
def test_role_matrix_allows_refuses_and_audits_every_refusal(store_url: str, tmp_path: Path,
                                                            flags_file: Path) -> None:
    tokens = make_tokens(store_url)
    callers: dict[str, str | None] = {"anonymous": None, "bogus": "rw_not-a-real-token", **tokens}
    expected_denials: Counter[tuple[str, str, str, int]] = Counter()
    outcomes: dict[tuple[str, str], int] = {}
    app = create_app(store_url, str(flags_file), policy=tmp_policy(tmp_path))
    with serve_app(app) as url:
        live = LiveServer(url, store_url, app)
        with live.client(tokens["admin"]) as admin:
            assert admin.post("/api/v1/rollouts", content=file_spec("matrix", tmp_path / "m.json").encode(),
                              headers={"Content-Type": "application/yaml"}).status_code == 201
        for method, path, kwargs, needed, action, target in write_endpoints(tmp_path):
            for caller, token in callers.items():
                with live.client(token) as client:
                    status = client.request(method, path, **kwargs).status_code
                outcomes[(caller, action)] = status
                if token is None or caller == "bogus":
                    assert status == 401, (caller, method, path, status)
                    expected_denials[("unknown", action, target, 401)] += 1
                elif RANK[caller] < RANK[needed]:
                    assert status == 403, (caller, method, path, status)
                    expected_denials[(f"{caller}-bot", action, target, 403)] += 1
                else:
                    assert status not in (401, 403) and status < 500, (caller, method, path, status)
    # Spot-check that "allowed" really acted, not merely "was not refused".
    assert outcomes[("deployer", "rollout.kpi")] == 201
    assert outcomes[("releaser", "rollout.pause")] == 200
    assert outcomes[("admin", "tokens.create")] == 201

    rows = audit_rows(store_url)
    denied = Counter((r.actor, r.action, r.target, r.after["status"]) for r in rows if r.denied)
    assert denied == expected_denials
    assert all(r.role == "none" for r in rows if r.denied and r.after["status"] == 401)
    allowed = [r for r in rows if not r.denied]
    pause = next(r for r in allowed if r.action == "rollout.pause")
    assert pause.actor == "releaser-bot" and pause.reason == "matrix"
    assert pause.before["phase"] == "Progressing" and pause.after["phase"] == "Paused"


def test_reads_need_a_token_once_tokens_exist(live: LiveServer) -> None:
    with live.client() as anonymous:
        assert anonymous.get("/api/v1/rollouts").status_code == 200  # no tokens yet: loopback is trusted
        tokens = make_tokens(live.store_url)
        assert anonymous.get("/api/v1/rollouts").status_code == 401
        assert anonymous.get("/healthz").status_code == 200
        assert anonymous.get("/").status_code == 200
        assert anonymous.get("/openapi.json").status_code == 200
        assert anonymous.get("/api/v1/whoami").json()["tokens_required"] is True
    with live.client(tokens["viewer"]) as viewer:
        assert viewer.get("/api/v1/rollouts").status_code == 200
        assert viewer.get("/api/v1/whoami").json() == {"authenticated": True, "name": "viewer-bot",
                                                        "role": "viewer", "tokens_required": True}
        assert viewer.get("/api/v1/audit").status_code == 403  # the audit log is admin-only


def test_bootstrap_is_open_on_loopback_until_the_first_token(live: LiveServer, tmp_path: Path) -> None:
    spec = file_spec("boot", tmp_path / "boot.json").encode()
    with live.client() as anonymous:
        started = anonymous.post("/api/v1/rollouts", content=spec, headers={"Content-Type": "application/yaml"})
        assert started.status_code == 201
        made = anonymous.post("/api/v1/tokens", json={"name": "first-admin", "role": "admin"})
        assert made.status_code == 201
        assert anonymous.post("/api/v1/rollouts/boot/pause", json={}).status_code == 401
    with live.client(made.json()["token"]) as admin:
        assert admin.post("/api/v1/rollouts/boot/pause", json={}).status_code == 200
        token_id = made.json()["id"]
        assert admin.delete(f"/api/v1/tokens/{token_id}").status_code == 200
        # A revoked token is refused, and revoking every token does not reopen the API.
        assert admin.post("/api/v1/rollouts/boot/resume", json={}).status_code == 401
    with live.client() as anonymous:
        assert anonymous.post("/api/v1/rollouts/boot/resume", json={}).status_code == 401
    start = next(r for r in audit_rows(live.store_url) if r.action == "rollout.start")
    assert start.actor == "local (no tokens yet)" and start.after["spec"]["name"] == "boot"


def test_other_addresses_always_need_a_token(store_url: str) -> None:
    """No tokens yet, but the caller is not on loopback: refused (and audited)."""
    app = create_app(store_url)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))

    async def call() -> int:
        async with httpx.AsyncClient(transport=transport, base_url="http://rollwise") as client:
            response = await client.post("/api/v1/rollouts/x/abort", json={})
            return response.status_code

    import asyncio

    assert asyncio.run(call()) == 401
    assert [(r.actor, r.action) for r in audit_rows(store_url)] == [("unknown", "rollout.abort")]
