"""``rollwise report`` writes a Markdown postmortem and one self-contained HTML file whose inline SVG
charts render in headless Chromium (Debian's /usr/bin/chromium driven by Playwright)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rollwise.adapters.stores.sql import SqlStore
from rollwise.cli.main import app
from rollwise.simulate import Behaviour
from support.browser import render_in_chromium
from support.reports import canary_spec, run_rollout


@pytest.fixture
def history(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'rollwise.db'}"
    store = SqlStore(url)
    try:
        # the simulated histograms end in a +Inf bucket, as Envoy's do: the SQL store must round-trip it
        _, phase = run_rollout(canary_spec(), Behaviour(change_at=75, error_rate_after=0.03), store=store)
    finally:
        store.close()
    assert phase == "RolledBack"
    return url


@pytest.mark.browser
@pytest.mark.timeout(180)
def test_html_report_is_self_contained_and_renders_its_charts(history: str, tmp_path: Path) -> None:
    out = tmp_path / "checkout.html"
    result = CliRunner().invoke(app, ["report", "checkout", "--format", "html", "--out", str(out), "--store", history])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert not re.search(r"https?://", html), "no external URLs"
    assert "<script" not in html and "<link" not in html and "@import" not in html
    for section in ('id="impact"', 'id="charts"', 'id="timeline"', 'id="decisions"', 'id="rca"', 'id="followups"'):
        assert section in html
    assert html.count("<svg") >= 4  # weights, error rate, p99 latency, the KPI
    for title in ("Canary traffic weight", "Error rate", "p99 latency", "KPI: checkout per visit"):
        assert title in html
    shot = tmp_path / "report.png"
    boxes = render_in_chromium(out, shot)
    assert len(boxes) >= 4
    assert all(box["width"] > 100 and box["height"] > 100 for box in boxes)
    assert shot.stat().st_size > 10_000


def test_markdown_report_and_rca_text(history: str) -> None:
    md = CliRunner().invoke(app, ["report", "checkout", "--store", history])
    assert md.exit_code == 0, md.output
    for heading in ("# Postmortem — checkout: v1 → v2", "## Impact", "## Canary vs baseline by stage", "## Timeline",
                    "## Decisions", "## Root cause summary", "## Follow-ups"):
        assert heading in md.stdout
    assert "error-rate" in md.stdout and "rolled back" in md.stdout
    rca = CliRunner().invoke(app, ["report", "checkout", "--format", "text", "--store", history])
    assert rca.exit_code == 0 and rca.stdout.startswith("RCA — checkout v2")
    missing = CliRunner().invoke(app, ["report", "nope", "--store", history])
    assert missing.exit_code == 1 and "no rollout named 'nope'" in missing.output
