"""Acceptance: ``rollwise demo --scenario bad-canary`` with ROLLWISE_SLACK_WEBHOOK_URL pointing at a local
receiver leaves a valid Block Kit message naming the culprit metric with its numbers, and
``rollwise report`` writes an HTML postmortem that renders in headless Chromium.

Runs only once the demo command exists (another part of rollwise builds it)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rollwise.cli.main import app
from support.browser import render_in_chromium
from support.reports import Receiver, assert_within_slack_limits


def _demo_exists() -> bool:
    result = CliRunner().invoke(app, ["demo", "--help"])
    return result.exit_code == 0 and "--scenario" in result.output


@pytest.mark.slow
@pytest.mark.envoy
@pytest.mark.browser
@pytest.mark.timeout(600)
def test_bad_canary_demo_notifies_slack_and_reports(receiver: Receiver, tmp_path: Path) -> None:
    if not _demo_exists():
        pytest.skip("`rollwise demo --scenario` is not built yet")
    store = f"sqlite:///{tmp_path / 'demo.db'}"
    env = {**os.environ, "ROLLWISE_SLACK_WEBHOOK_URL": receiver.url, "ROLLWISE_NOTIFY_LOG": str(tmp_path / "n.jsonl"),
           "ROLLWISE_STORE": store}
    for key in ("ROLLWISE_TEAMS_WEBHOOK_URL", "ROLLWISE_WEBHOOK_URL"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, "-m", "rollwise", "demo", "--scenario", "bad-canary",
                           "--output", "json", "--store", store],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=540)
    assert proc.returncode in (0, 3), proc.stderr[-2000:]  # 3: the rollout ended rolled back, as it should

    messages = [r.json() for r in receiver.wait_for(1, timeout=15)]
    for message in messages:
        assert_within_slack_limits(message)
    rollbacks = [m for m in messages if "rolled back" in m["blocks"][0]["text"]["text"]]
    assert rollbacks, [m["text"] for m in messages]
    rendered = json.dumps(rollbacks[-1]["blocks"], ensure_ascii=False)
    assert "Culprit metric:" in rendered
    assert re.search(r"\d+(\.\d+)?% \(\d+ (errors|slow|bad) of \d+\)", rendered), rendered  # canary vs baseline

    from rollwise.wiring import open_store

    records = [r for r in open_store(store).list() if str(r.phase) == "RolledBack"]
    assert records, "the bad canary should have been rolled back"
    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", records[-1].name, "--format", "html", "--out", str(out),
                                      "--store", store])
    assert result.exit_code == 0, result.output
    boxes = render_in_chromium(out, tmp_path / "demo-report.png", heading="demo")

    explained = CliRunner().invoke(app, ["explain", records[-1].name, "--store", store])
    assert explained.exit_code == 0, explained.output
    text = explained.output
    assert "Decision: rollback" in text and "Rule: " in text  # the rule that fired
    assert re.search(r"Culprit: (error-rate|latency-p99)", text), text  # the metric
    assert re.search(r"canary \d+ (bad )?of \d+", text), text  # its numbers
    assert len(boxes) >= 3 and all(b["width"] > 0 and b["height"] > 0 for b in boxes)
