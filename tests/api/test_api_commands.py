"""Manual controls over HTTP: approve answers only an approval gate (409 otherwise), and the history
names the person (issue 11, item 6)."""

from __future__ import annotations

from pathlib import Path

from support.api import LiveServer, file_spec

YAML = {"Content-Type": "application/yaml"}


def test_approve_of_a_human_pause_is_a_409_and_changes_nothing(live: LiveServer, tmp_path: Path) -> None:
    with live.client() as client:
        spec = file_spec("shop", tmp_path / "r.json", pause="1h")
        assert client.post("/api/v1/rollouts", content=spec.encode(), headers=YAML).status_code == 201
        assert client.post("/api/v1/rollouts/shop/pause", json={"reason": "incident"}).status_code == 200
        before = client.get("/api/v1/rollouts/shop").json()
        refused = client.post("/api/v1/rollouts/shop/approve", json={"reason": "oops"})
        assert refused.status_code == 409
        assert "approve answers only an approval gate" in refused.json()["detail"]
        after = client.get("/api/v1/rollouts/shop").json()
        assert after["phase"] == "Paused" and after["revision"] == before["revision"]
        events = client.get("/api/v1/rollouts/shop/events").json()
        assert [e["data"]["command"] for e in events if e["type"] == "command"] == ["pause"]
