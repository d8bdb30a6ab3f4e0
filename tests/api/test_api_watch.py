"""``/api/v1/changes`` and ``/api/v1/incidents`` on a real ``rollwise serve``: roles, audit, bad input."""

from __future__ import annotations

import json
from pathlib import Path

from rollwise.adapters.stores.sql import SqlStore
from rollwise.adapters.stores.sql_watch import SqlWatchStore
from rollwise.watch.incidents import Incident
from support.api import audit_rows, make_tokens
from support.cli import rollwise
from support.serve_process import rollwise_serve
from support.specs import SHOP


def test_changes_need_deployer_are_audited_and_listed(store_url: str, flags_file: Path, tmp_path: Path) -> None:
    tokens = make_tokens(store_url)
    body = {"service": "web", "kind": "config", "description": "pool size 50", "region": "eu"}
    with rollwise_serve(store_url, tmp_path, "--flags", str(flags_file)) as server:
        with server.client(tokens["viewer"]) as viewer:
            assert viewer.post("/api/v1/changes", json=body).status_code == 403
        with server.client(tokens["deployer"]) as deployer:
            made = deployer.post("/api/v1/changes", json=body)
            assert made.status_code == 201, made.text
            assert made.json()["actor"] == "deployer-bot" and made.json()["source"] == "api"
            bad = deployer.post("/api/v1/changes", json={**body, "kind": "reboot"})
            assert bad.status_code == 422 and bad.json()["detail"].startswith("kind:")
            assert deployer.post("/api/v1/changes", json={**body, "extra": 1}).status_code == 422
            assert deployer.post("/api/v1/changes", json={"service": "web", "kind": "deploy"}).status_code == 422
        with server.client(tokens["releaser"]) as releaser:
            assert releaser.post("/api/v1/flags/banner/kill", json={"reason": "noisy"}).status_code == 200
        by_cli = rollwise(tmp_path, "changes", "record", "--service", "web", "--kind", "infra", "--description",
                          "node pool resized", "--server", server.url, "--token", tokens["deployer"])
        assert by_cli.returncode == 0, by_cli.stderr
        refused = rollwise(tmp_path, "changes", "record", "--service", "web", "--kind", "infra",
                           "--server", server.url, "--token", tokens["viewer"])
        assert refused.returncode == 1 and refused.stderr.startswith("error: ") and "403" in refused.stderr
        listed_cli = rollwise(tmp_path, "changes", "list", "--service", "web", "-o", "json", "--server", server.url,
                              "--token", tokens["viewer"])
        assert [c["kind"] for c in json.loads(listed_cli.stdout)] == ["config", "flag", "infra"]
        with server.client(tokens["viewer"]) as viewer:
            listed = viewer.get("/api/v1/changes", params={"service": "web"}).json()
    assert [(c["kind"], c["scope"]) for c in listed] == [("config", None), ("flag", "flag:banner"), ("infra", None)]
    assert listed[2]["actor"] == "deployer-bot" and listed[2]["source"] == "api"
    assert listed[1]["description"] == "kill: noisy" and listed[1]["service"] == "*"
    rows = [r for r in audit_rows(store_url) if r.action == "change.record"]
    (row,) = [r for r in rows if r.after and r.after.get("description") == "pool size 50"]
    assert any(r.role == "viewer" for r in rows)  # the refused attempt is audited too
    assert row.actor == "deployer-bot" and row.role == "deployer"


def test_incidents_are_readable_and_hold_releases(store_url: str, tmp_path: Path) -> None:
    with SqlStore(store_url) as store:
        SqlWatchStore(store).open_incident(Incident(service="shop", opened_at=1000.0, onset=960.0,
                                                    metric="error_rate"))
    spec = (SHOP + "  canary:\n    steps:\n      - setWeight: 20\n").encode()
    with rollwise_serve(store_url, tmp_path) as server, server.client() as client:
        (incident,) = client.get("/api/v1/incidents", params={"open": "true"}).json()
        assert incident["id"] == 1 and incident["metric"] == "error_rate" and incident["recovery_s"] is None
        assert client.get("/api/v1/incidents/1").json()["service"] == "shop"
        held = client.post("/api/v1/rollouts", content=spec, headers={"Content-Type": "application/yaml"})
        assert held.status_code == 409 and held.json()["detail"].startswith("held: service shop has open incident #1")
        forced = client.post("/api/v1/rollouts", params={"force": "true"}, content=spec,
                             headers={"Content-Type": "application/yaml"})
        assert forced.status_code == 201, forced.text
        assert client.get("/api/v1/incidents/2").status_code == 404
        assert client.get("/api/v1/incidents/x").status_code == 422
        page = client.get("/").text
        assert 'href="#/incidents"' in page and "/static/incidents.js" in page
        script = client.get("/static/incidents.js")
        assert script.status_code == 200 and "/api/v1/incidents" in script.text
