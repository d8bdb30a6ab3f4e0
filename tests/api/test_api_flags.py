"""Flags in `rollwise serve`: one set of flag routes (`/api/v1/flags`) and one auth scheme (the API's tokens,
roles and audit), with OFREP evaluation answered as OFREP clients expect."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollwise.api import create_app
from support.api import LiveServer, audit_rows, make_tokens, serve_app, tmp_policy

OFREP = "/ofrep/v1/evaluate/flags/banner"


@pytest.mark.timeout(120)
def test_flag_writes_need_releaser_and_are_audited(store_url: str, tmp_path: Path, flags_file: Path) -> None:
    tokens = make_tokens(store_url)
    app = create_app(store_url, str(flags_file), policy=tmp_policy(tmp_path))
    with serve_app(app) as url:
        live = LiveServer(url, store_url, app)
        with live.client(tokens["deployer"]) as deployer:
            refused = deployer.post("/api/v1/flags/new-checkout/rollout", json={"percent": 10, "reason": "ramp"})
            assert refused.status_code == 403
        with live.client(tokens["releaser"]) as releaser:
            done = releaser.post("/api/v1/flags/new-checkout/rollout", json={"percent": 10, "reason": "ramp"})
            assert done.status_code == 200, done.text
            assert releaser.post("/api/v1/flags/new-checkout/rollout", json={"percent": 101}).status_code == 422
            later = {"at": "2031-01-01T00:00:00Z", "action": "set-percent", "percent": 50, "reason": "later"}
            assert releaser.post("/api/v1/flags/new-checkout/schedule", json=later).status_code == 200
            bad_time = {**later, "at": "next tuesday"}
            assert releaser.post("/api/v1/flags/new-checkout/schedule", json=bad_time).status_code == 422
            assert releaser.post("/api/v1/flags/nope/kill", json={"reason": "x"}).status_code == 404
            history = releaser.get("/api/v1/flags/history").json()
            assert [(h["action"], h["flag"], h["actor"]) for h in history] == [
                ("set-percent", "new-checkout", "releaser-bot"), ("schedule", "new-checkout", "releaser-bot")]
            assert len(releaser.get("/api/v1/flags").json()["schedules"]) == 1
            # The flags service's own control routes are not served here: /api/v1/flags is the one set.
            assert releaser.post("/flags/banner/kill", json={"reason": "x"}).status_code in (404, 405)
            assert releaser.get("/flags").status_code == 404
    rows = [(r.actor, r.role, r.action, r.target) for r in audit_rows(store_url)]
    assert ("deployer-bot", "deployer", "flag.rollout", "flag:new-checkout") in rows  # the refusal
    assert ("releaser-bot", "releaser", "flag.rollout", "flag:new-checkout") in rows
    assert ("releaser-bot", "releaser", "flag.schedule", "flag:new-checkout") in rows


@pytest.mark.timeout(120)
def test_ofrep_evaluation_takes_the_api_tokens(store_url: str, tmp_path: Path, flags_file: Path) -> None:
    app = create_app(store_url, str(flags_file), policy=tmp_policy(tmp_path))
    with serve_app(app) as url:
        live = LiveServer(url, store_url, app)
        with live.client() as anonymous:
            assert anonymous.post(OFREP, json={}).json()["value"] is True  # loopback, no token exists yet
            tokens = make_tokens(store_url)  # the first token closes the door, OFREP included
            assert anonymous.post(OFREP, json={}).status_code == 401
            assert anonymous.post("/ofrep/v1/evaluate/flags", json={}).status_code == 401
        with live.client("rw_not-a-real-token") as bogus:
            assert bogus.post(OFREP, json={}).status_code == 401
        with live.client(tokens["viewer"]) as viewer:
            body = viewer.post(OFREP, json={"context": {"targetingKey": "u1"}}).json()
            assert body["value"] is True and body["variant"] == "on"
            assert viewer.get("/flags/exposures").status_code == 403  # exposures: releaser
        with live.client(tokens["releaser"]) as releaser:
            assert releaser.get("/flags/exposures").status_code == 200
            assert releaser.post("/api/v1/flags/banner/kill", json={"reason": "incident"}).status_code == 200
        with live.client(tokens["viewer"]) as viewer:
            assert viewer.post(OFREP, json={}).json()["variant"] == "off"
