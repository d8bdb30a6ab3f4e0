"""Rollouts over HTTP: specs rejected whole with FILE:LINE problems, live events, the CLI's --server mode."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from support.api import LiveServer, audit_rows, file_spec, make_tokens

YAML = {"Content-Type": "application/yaml"}


def test_invalid_spec_is_rejected_whole_with_every_problem(live: LiveServer, tmp_path: Path) -> None:
    bad = file_spec("shop", tmp_path / "r.json").replace("service: shop", "service: ''").replace(
        "setWeight: 50", "setWeight: 150")
    with live.client() as client:
        response = client.post("/api/v1/rollouts", content=bad.encode(),
                               headers={**YAML, "X-Rollwise-Spec-File": "shop.yaml"})
        assert response.status_code == 422
        problems = response.json()["problems"]
        assert any(p.startswith("shop.yaml:4: service:") for p in problems), problems
        assert any(p.startswith("shop.yaml:") and "setWeight" in p and "100" in p for p in problems), problems
        assert client.get("/api/v1/rollouts").json() == []
        # JSON bodies get the same treatment, with lines of the JSON text.
        as_json = json.dumps({"name": "shop", "service": "shop", "versions": {"stable": {"name": "v1"}}}, indent=2)
        response = client.post("/api/v1/rollouts", content=as_json.encode(),
                               headers={"Content-Type": "application/json"})
        assert response.status_code == 422
        assert "request:4: versions.canary: Field required" in response.json()["problems"]


def test_spec_update_is_all_or_nothing(live: LiveServer, tmp_path: Path) -> None:
    good = file_spec("shop", tmp_path / "r.json", pause="1h")
    with live.client() as client:
        assert client.post("/api/v1/rollouts", content=good.encode(), headers=YAML).status_code == 201
        before = client.get("/api/v1/rollouts/shop").json()["spec"]
        broken = good.replace("pause: {duration: 1h}", "pause: {duration: soon}")
        response = client.put("/api/v1/rollouts/shop/spec", content=broken.encode(), headers=YAML)
        assert response.status_code == 422 and response.json()["problems"]
        assert client.get("/api/v1/rollouts/shop").json()["spec"] == before
        longer = good.replace("pause: {duration: 1h}", "pause: {duration: 2h}")
        assert client.put("/api/v1/rollouts/shop/spec", content=longer.encode(), headers=YAML,
                          params={"reason": "longer pauses"}).status_code == 200
        assert client.get("/api/v1/rollouts/shop").json()["spec"]["strategy"]["canary"]["steps"][1]["pause"][
            "duration"] == 7200.0
    update = next(r for r in audit_rows(live.store_url) if r.action == "rollout.update")
    assert update.reason == "longer pauses"
    assert update.before["spec"]["strategy"]["canary"]["steps"][1]["pause"]["duration"] == 3600.0


def test_specs_that_start_processes_need_allow_commands(live: LiveServer, tmp_path: Path) -> None:
    spec = file_spec("cmd", tmp_path / "r.json").replace(
        "canary: {name: v2, address: 127.0.0.1:9002}", "canary: {name: v2, command: 'sleep {port}'}")
    with live.client() as client:
        response = client.post("/api/v1/rollouts", content=spec.encode(), headers=YAML)
    assert response.status_code == 422
    assert response.json()["problems"][0].startswith("request:7: versions.canary.command:")


def test_kpis_decisions_windows_and_metrics_read_back(live: LiveServer, tmp_path: Path) -> None:
    with live.client() as client:
        client.post("/api/v1/rollouts", content=file_spec("shop", tmp_path / "r.json").encode(), headers=YAML)
        pushed = client.post("/api/v1/rollouts/shop/kpis", json={"version": "v2", "metric": "checkouts", "value": 2})
        assert pushed.status_code == 201
        assert client.post("/api/v1/rollouts/shop/kpis",
                           json={"version": "v7", "metric": "checkouts"}).status_code == 422
        assert client.post("/api/v1/rollouts/nope/kpis", json={"version": "v2", "metric": "x"}).status_code == 404
        assert client.get("/api/v1/rollouts/shop/decisions").json() == []
        assert client.get("/api/v1/rollouts/shop/windows").json() == []
        assert client.post("/api/v1/rollouts/shop/undo", json={}).status_code == 409
        assert client.get("/api/v1/metrics").status_code == 200


def test_delivery_metrics_trend_buckets_are_asked_for_by_length(live: LiveServer) -> None:
    with live.client() as client:
        hourly = client.get("/api/v1/metrics", params={"since_s": 7200, "bucket_s": 3600}).json()
        assert hourly["bucket_s"] == 3600 and len(hourly["overall"]["trend"]) == 2
        assert client.get("/api/v1/metrics", params={"since_s": 7 * 86400}).json()["bucket_s"] == 86400
        assert client.get("/api/v1/metrics", params={"bucket_s": 60}).status_code == 422  # under an hour


@pytest.mark.timeout(60)
def test_event_stream_pushes_weight_changes_as_the_controller_moves(live_controller: LiveServer,
                                                                   tmp_path: Path) -> None:
    live = live_controller
    weights: list[float] = []
    with httpx.Client(base_url=live.url, timeout=30) as client, client.stream(
        "GET", "/api/v1/events/stream", params={"rollout": "shop", "max_seconds": 20}
    ) as stream:
        lines = stream.iter_lines()
        assert next(lines) == "event: hello"
        client.post("/api/v1/rollouts", content=file_spec("shop", tmp_path / "r.json", pause="1.5s").encode(),
                    headers=YAML)
        for line in lines:
            if line.startswith("data: ") and '"rollout"' in line:
                message = json.loads(line[6:])
                weight = message["rollout"]["canary_weight"]
                if not weights or weights[-1] != weight:
                    weights.append(weight)
                if message["rollout"]["phase"] == "Succeeded":
                    break
    # The stream polls every 0.5 s, so under load it may first see the rollout at its first step.
    assert weights[0] in (0.0, 20.0) and weights[-1] == 100.0, weights
    assert weights == sorted(weights) and {20.0, 50.0, 100.0} <= set(weights), weights


def rollwise(*args: str, env_token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": str(Path(sys.executable).parent), "HOME": "/tmp", **({"ROLLWISE_TOKEN": env_token} if env_token
                                                                        else {})}
    return subprocess.run([sys.executable, "-m", "rollwise.cli.main", *args], capture_output=True, text=True,
                          timeout=60, env=env)


@pytest.mark.timeout(120)
def test_cli_server_mode_uses_the_api_and_its_roles(live_controller: LiveServer, tmp_path: Path) -> None:
    live = live_controller
    made = rollwise("tokens", "create", "--role", "releaser", "--name", "cli-user", "--store", live.store_url)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    assert token.startswith("rw_") and len(made.stdout.strip().splitlines()) == 1
    viewer = make_tokens(live.store_url)["viewer"]
    spec = tmp_path / "shop.yaml"
    spec.write_text(file_spec("shop", tmp_path / "r.json", pause="1h"))
    started = rollwise("rollout", "start", str(spec), "--no-wait", "--server", live.url, "--token", token,
                       "-o", "json")
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout)["name"] == "shop"
    refused = rollwise("rollout", "abort", "shop", "--server", live.url, env_token=viewer)
    assert refused.returncode == 1 and "403" in refused.stderr
    deadline = time.monotonic() + 20
    while httpx.get(f"{live.url}/api/v1/rollouts/shop", headers={"Authorization": f"Bearer {token}"}).json()[
            "canary_weight"] != 20 and time.monotonic() < deadline:
        time.sleep(0.2)
    aborted = rollwise("rollout", "abort", "shop", "--server", live.url, "--token", token, "-r", "cli test")
    assert aborted.returncode == 0, aborted.stderr
    status = rollwise("rollout", "status", "shop", "--server", live.url, "--token", token, "-o", "json")
    assert json.loads(status.stdout)["phase"] == "Aborted"
    history = rollwise("history", "shop", "--server", live.url, "--token", token, "-o", "json")
    assert [e["type"] for e in json.loads(history.stdout)][-2:] == ["command", "phase"]
    missing = rollwise("rollout", "status", "nope", "--server", live.url, "--token", token)
    assert missing.returncode == 1 and "no rollout named 'nope'" in missing.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(spec.read_text().replace("service: shop", "service: ''"))
    invalid = rollwise("rollout", "start", str(bad), "--server", live.url, "--token", token)
    assert invalid.returncode == 2 and f"{bad}:4: service:" in invalid.stderr
    abort_row = next(r for r in audit_rows(live.store_url) if r.action == "rollout.abort" and not r.denied)
    assert (abort_row.actor, abort_row.reason) == ("cli-user", "cli test")
    assert abort_row.before["canary_weight"] == 20 and abort_row.after["canary_weight"] == 0


def test_decisions_serve_typed_evidence_and_legacy_evidence_still_reads(live: LiveServer, tmp_path: Path) -> None:
    """Evidence stored before it had a version (as in older databases) comes back typed, with the version."""
    from rollwise.core.evidence import EVIDENCE_VERSION, evidence_schema
    from rollwise.core.model import Event

    legacy = json.loads((Path(__file__).parents[1] / "core" / "data" / "legacy_evidence.json").read_text())
    stored = legacy["sequential-rollback"]["evidence"]
    with live.client() as client:
        client.post("/api/v1/rollouts", content=file_spec("shop", tmp_path / "r.json", pause="1h").encode(),
                    headers=YAML)
        store = live.app.state.plane.store
        store.save(store.get("shop"), events=[Event(
            rollout="shop", at=time.time(), type="decision", message="errors: canary breaks its SLO",
            data={"index": 1, "action": "rollback", "rule": stored["rule"], "culprit": stored["culprit"],
                  "stage": 0, "weight": 10.0, "evidence": stored})])
        decisions = client.get("/api/v1/rollouts/shop/decisions").json()
        assert len(decisions) == 1 and decisions[0]["weight"] == 10.0
        evidence = decisions[0]["evidence"]
        assert evidence["version"] == EVIDENCE_VERSION and evidence["culprit"] == "errors"
        assert evidence["metrics"][0]["params"]["slo"]["breached"] is True
        assert "Culprit: errors" in decisions[0]["explanation"]
        schema = httpx.get(f"{live.url}/api/v1/schema/evidence")  # public, like /openapi.json
        assert schema.status_code == 200 and schema.json() == evidence_schema()
