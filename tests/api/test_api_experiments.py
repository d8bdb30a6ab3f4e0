"""``/api/v1/experiments`` through a real ``rollwise serve``: roles, batched ingestion, readout as JSON and
CSV, and a guardrail breach that stops the experiment and kills its flag, audited with evidence."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from pathlib import Path

from rollwise.api.experiments import GUARDRAIL_INTERVAL_S
from support.api import FLAGS, audit_rows, make_tokens
from support.experiments import SPEC, events, exposures
from support.serve_process import rollwise_serve


def test_roles_ingestion_readout_and_guardrail_kill(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'rollwise.db'}"
    flags = tmp_path / "flags.json"
    flags.write_text(json.dumps(FLAGS))
    tokens = make_tokens(store_url)
    env = {"ROLLWISE_AUDIT_KEY": "k" * 32}
    with rollwise_serve(store_url, tmp_path, "--flags", str(flags), env=env) as server:
        viewer, deployer, releaser = (server.client(tokens[r]) for r in ("viewer", "deployer", "releaser"))
        assert viewer.post("/api/v1/experiments", json=SPEC).status_code == 403
        bad = deployer.post("/api/v1/experiments", json={**SPEC, "variants": ["off"]})
        assert bad.status_code == 422 and bad.json()["detail"][0]["msg"].startswith("variants:")
        assert deployer.post("/api/v1/experiments", json=SPEC).status_code == 201
        assert deployer.post("/api/v1/experiments", json=SPEC).status_code == 409

        pushed = deployer.post("/api/v1/experiments/checkout-v2/exposures", json=exposures(4_000))
        assert pushed.json() == {"received": 4000, "new": 4000}
        batch = events(4_000)
        for start in range(0, len(batch), 5_000):
            assert deployer.post("/api/v1/metric-events", json=batch[start:start + 5_000]).status_code == 200
        wrong = deployer.post("/api/v1/metric-events", json=[{"subject": "u1", "event": "buy", "value": "x"}])
        assert (wrong.status_code, wrong.json()["detail"][0]["msg"]) == (422, "events[0].value: a finite number")
        assert viewer.post("/api/v1/metric-events", json=batch[:1]).status_code == 403

        shown = viewer.get("/api/v1/experiments/checkout-v2").json()
        assert shown["readout"]["counts"] == {"off": 2000, "on": 2000}
        assert shown["readout"]["decision"] == "stop"
        table = list(csv.DictReader(io.StringIO(viewer.get("/api/v1/experiments/checkout-v2/readout",
                                                           params={"format": "csv"}).text)))
        assert [r["metric"] for r in table] == ["purchase", "revenue_per_session", "errors"]
        assert viewer.get("/api/v1/experiments/nope").status_code == 404
        # the CLI against the server reads the same readout; a viewer's token cannot stop it
        remote = [sys.executable, "-m", "rollwise", "experiments"]
        where = ["--server", server.url, "--token", tokens["viewer"]]
        shown_cli = subprocess.run([*remote, "show", "checkout-v2", "-o", "json", *where], capture_output=True,
                                   text=True, timeout=120)
        assert json.loads(shown_cli.stdout)["readout"]["counts"] == {"off": 2000, "on": 2000}
        refused = subprocess.run([*remote, "stop", "checkout-v2", *where], capture_output=True, text=True, timeout=120)
        assert refused.returncode == 1 and refused.stderr.startswith("error: 403:")
        assert "<svg" in viewer.get("/api/v1/experiments/checkout-v2/report").text

        assert deployer.post("/api/v1/experiments/checkout-v2/check").status_code == 403
        # events keep arriving; once the check interval has passed, the next batch triggers a guardrail check
        time.sleep(GUARDRAIL_INTERVAL_S)
        assert deployer.post("/api/v1/metric-events", json=[{"subject": "u1", "event": "error"}]).status_code == 200
        deadline = time.monotonic() + 60
        while viewer.get("/api/v1/experiments/checkout-v2").json()["status"] != "stopped":
            assert time.monotonic() < deadline, "the guardrail did not stop the experiment"
            time.sleep(0.5)
        checked = releaser.post("/api/v1/experiments/checkout-v2/check").json()
        assert checked["status"] == "stopped" and checked["breaches"][0]["variant"] == "on"
        listed = {f["key"]: f for f in viewer.get("/api/v1/flags").json()["flags"]}
        assert listed["new-checkout"]["killed"] is True
        assert releaser.post("/api/v1/experiments/checkout-v2/stop", json={"reason": "again"}).status_code == 409

    rows = [r for r in audit_rows(store_url) if r.action == "experiment.guardrail"]
    assert len(rows) == 1
    assert (rows[0].actor, rows[0].role) == ("rollwise-guardrails", "releaser")
    evidence = rows[0].after["evidence"]
    assert evidence["flag_killed"] == "new-checkout" and evidence["breaches"][0]["metric"] == "errors"
    assert evidence["breaches"][0]["cs_low"] > 0.1 and "rule" in evidence
