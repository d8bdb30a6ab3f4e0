"""The flag service: OFREP shapes, bulk ETag/304, auth, exposures, release controls over HTTP, SSE."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from rollwise.flags.service import create_flags_app
from support.flags_server import serve

DOC: dict[str, Any] = {
    "metadata": {"flagSetId": "shop"},
    "flags": {
        "ratio": {"state": "ENABLED", "variants": {"low": 1.0, "high": 2.5}, "defaultVariant": "low"},
        "color": {
            "state": "ENABLED",
            "variants": {"red": "red", "blue": "blue"},
            "defaultVariant": "red",
            "targeting": {"fractional": [["red", 50], ["blue", 50]]},
            "metadata": {"experiment": True},
        },
        "off": {"state": "DISABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"},
        "broken": {
            "state": "ENABLED",
            "variants": {"a": 1},
            "defaultVariant": "a",
            "targeting": {"bogus": [1]},
        },
        "ghost-variant": {
            "state": "ENABLED",
            "variants": {"a": 1},
            "defaultVariant": "a",
            "targeting": {"if": [True, "zzz"]},
        },
    },
}


@pytest.fixture
def flags_file(tmp_path: Path) -> Path:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(DOC))
    return path


def test_single_flag_ofrep_responses(flags_file: Path) -> None:
    with TestClient(create_flags_app(flags_file)) as client:
        ok = client.post("/ofrep/v1/evaluate/flags/ratio", json={"context": {"targetingKey": "u"}})
        assert ok.status_code == 200
        assert ok.json() == {
            "key": "ratio",
            "reason": "STATIC",
            "variant": "low",
            "metadata": {"flagSetId": "shop"},
            "value": 1.0,
        }
        assert '"value":1.0' in ok.text.replace(" ", "")  # a float stays a float on the wire
        disabled = client.post("/ofrep/v1/evaluate/flags/off", json={})
        assert disabled.status_code == 200 and "value" not in disabled.json() and disabled.json()["variant"] is None
        assert disabled.json()["reason"] == "DISABLED"
        missing = client.post("/ofrep/v1/evaluate/flags/nope", json={"context": {}})
        assert missing.status_code == 404 and missing.json()["errorCode"] == "FLAG_NOT_FOUND"
        parse = client.post("/ofrep/v1/evaluate/flags/broken", json={"context": {}})
        assert parse.status_code == 400 and parse.json()["errorCode"] == "PARSE_ERROR"
        general = client.post("/ofrep/v1/evaluate/flags/ghost-variant", json={"context": {}})
        assert general.status_code == 400 and general.json()["errorCode"] == "GENERAL"
        bad_ctx = client.post("/ofrep/v1/evaluate/flags/ratio", json={"context": [1]})
        assert bad_ctx.status_code == 400 and bad_ctx.json()["errorCode"] == "INVALID_CONTEXT"


def test_bulk_evaluation_etag_and_304(flags_file: Path) -> None:
    with TestClient(create_flags_app(flags_file)) as client:
        first = client.post("/ofrep/v1/evaluate/flags", json={"context": {"targetingKey": "u1"}})
        assert first.status_code == 200
        body = first.json()
        assert body["metadata"] == {"flagSetId": "shop"}
        by_key = {f["key"]: f for f in body["flags"]}
        assert set(by_key) == set(DOC["flags"])
        assert by_key["broken"]["errorCode"] == "PARSE_ERROR"
        etag = first.headers["etag"]
        again = client.post(
            "/ofrep/v1/evaluate/flags", json={"context": {"targetingKey": "u1"}}, headers={"If-None-Match": etag}
        )
        assert again.status_code == 304
        other_ctx = client.post(
            "/ofrep/v1/evaluate/flags", json={"context": {"targetingKey": "u2"}}, headers={"If-None-Match": etag}
        )
        assert other_ctx.status_code == 200
        client.app.state.repository.kill("ratio", "test", "config change invalidates the etag")  # type: ignore[attr-defined]
        changed = client.post(
            "/ofrep/v1/evaluate/flags", json={"context": {"targetingKey": "u1"}}, headers={"If-None-Match": etag}
        )
        assert changed.status_code == 200 and changed.headers["etag"] != etag


def test_auth_once_tokens_are_configured(flags_file: Path) -> None:
    def check(token: str, scope: str) -> str | None:
        return {"reader": "svc-reader", "admin": "ana"}.get(token) if scope == "evaluate" or token == "admin" else None

    with TestClient(create_flags_app(flags_file, token_check=check)) as client:
        url = "/ofrep/v1/evaluate/flags/ratio"
        assert client.post(url, json={}).status_code == 401
        assert client.post(url, json={}, headers={"Authorization": "Bearer wrong"}).status_code == 403
        assert client.post(url, json={}, headers={"Authorization": "Bearer reader"}).status_code == 200
        assert client.post(url, json={}, headers={"X-API-Key": "reader"}).status_code == 200
        kill = "/flags/ratio/kill"
        assert client.post(kill, json={"reason": "x"}, headers={"X-API-Key": "reader"}).status_code == 403
        done = client.post(kill, json={"reason": "x"}, headers={"X-API-Key": "admin"})
        assert done.status_code == 200 and done.json()["actor"] == "ana"


def test_open_on_loopback_but_not_elsewhere(flags_file: Path) -> None:
    app = create_flags_app(flags_file)
    with TestClient(app) as local:
        assert local.post("/ofrep/v1/evaluate/flags/ratio", json={}).status_code == 200
    with TestClient(app, client=("203.0.113.9", 5000)) as remote:
        assert remote.post("/ofrep/v1/evaluate/flags/ratio", json={}).status_code == 401


def test_experiment_exposures_are_recorded_per_variant(flags_file: Path) -> None:
    with TestClient(create_flags_app(flags_file)) as client:
        seen: dict[str, str] = {}
        for i in range(40):
            r = client.post("/ofrep/v1/evaluate/flags/color", json={"context": {"targetingKey": f"user-{i}"}})
            seen[f"user-{i}"] = r.json()["variant"]
        client.post("/ofrep/v1/evaluate/flags/ratio", json={"context": {"targetingKey": "user-1"}})  # not an experiment
        report = client.get("/flags/exposures", params={"flag": "color"}).json()
        assert {(e["subject"], e["variant"]) for e in report["exposures"]} == set(seen.items())
        assert sum(s["exposures"] for s in report["summary"].values()) == 40
        assert set(report["summary"]) == {"red", "blue"}
        assert client.get("/flags/exposures", params={"flag": "ratio"}).json()["exposures"] == []


def test_release_controls_over_http_are_validated_and_audited(flags_file: Path) -> None:
    with TestClient(create_flags_app(flags_file)) as client:
        assert client.post("/flags/off/rollout", json={"percent": 10}).status_code == 400  # no reason
        no_roles = client.post("/flags/color/rollout", json={"percent": 10, "reason": "ramp"})
        assert no_roles.status_code == 400 and "on and off variants" in no_roles.json()["error"]
        assert client.post("/flags/off/rollout", json={"percent": 10, "reason": "ramp"}).status_code == 200
        assert (
            client.post(
                "/flags/off/schedule",
                json={"at": "2031-01-01T00:00:00Z", "action": "set-percent", "percent": 50, "reason": "later"},
            ).status_code
            == 200
        )
        assert client.post("/flags/nope/kill", json={"reason": "x"}).status_code == 400
        listing = client.get("/flags").json()
        assert listing["version"] == 2 and len(listing["schedules"]) == 1
        history = client.get("/flags/history").json()
        assert [(h["action"], h["flag"], h["reason"]) for h in history] == [
            ("set-percent", "off", "ramp"),
            ("schedule", "off", "later"),
        ]


@pytest.mark.timeout(30)
def test_sse_stream_emits_every_configuration_change(flags_file: Path) -> None:
    app = create_flags_app(flags_file, poll_interval=0.05)
    events: list[dict[str, Any]] = []
    ready = threading.Event()
    with serve(app) as base_url:

        def listen() -> None:
            with httpx.Client(timeout=10) as http, http.stream("GET", f"{base_url}/ofrep/v1/changes") as resp:
                assert resp.headers["content-type"].startswith("text/event-stream")
                kind = None
                for line in resp.iter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: "):
                        if kind == "ready":
                            ready.set()
                        else:
                            events.append(json.loads(line[6:]))
                            if len(events) == 2:
                                return

        t = threading.Thread(target=listen, daemon=True)
        t.start()
        assert ready.wait(5)
        repo = app.state.repository
        repo.kill("ratio", "ana", "one")  # a change made through the API/CLI
        doc = json.loads(flags_file.read_text())
        doc["flags"]["color"]["defaultVariant"] = "blue"
        time.sleep(0.05)
        flags_file.write_text(json.dumps(doc))  # a hand edit picked up by the watcher
        t.join(10)
    assert [e["flagsChanged"] for e in events] == [["ratio"], ["color"]]
    assert events[0]["action"] == "kill" and events[1]["action"] == "reload"


def test_router_without_controls_keeps_ofrep_and_exposures(flags_file: Path) -> None:
    from fastapi import FastAPI

    from rollwise.flags import FlagRepository
    from rollwise.flags.service import create_flags_router

    app = FastAPI()
    app.include_router(create_flags_router(FlagRepository(flags_file), include_controls=False))
    with TestClient(app) as client:
        assert client.post("/ofrep/v1/evaluate/flags/ratio", json={}).status_code == 200
        assert client.get("/flags/exposures").status_code == 200
        assert client.post("/flags/ratio/kill", json={"reason": "x"}).status_code == 404
        assert client.get("/flags").status_code == 404
