"""The experiments page in headless Chromium: the list, a readout with its decision, SRM, metrics and chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from support.api import LiveServer, make_tokens
from support.browser import sign_in
from support.experiments import SPEC, events, exposures

pytestmark = [pytest.mark.browser, pytest.mark.timeout(150)]


def test_experiment_page_shows_the_readout(live: LiveServer, browser: Any, tmp_path: Path) -> None:
    tokens = make_tokens(live.store_url)
    with live.client(tokens["deployer"]) as client:
        assert client.post("/api/v1/experiments", json=SPEC).status_code == 201
        # no "at": the server stamps them now, after the start, so the lift chart has points
        assert client.post("/api/v1/experiments/checkout-v2/exposures", json=exposures(2_000)).status_code == 200
        assert client.post("/api/v1/metric-events", json=events(2_000)).status_code == 200
    page = browser.new_page(viewport={"width": 1360, "height": 1100})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{live.url}/")
    sign_in(page, tokens["viewer"])
    page.wait_for_function("document.querySelector('#view').children.length > 0")  # the rollouts page settled
    page.goto(f"{live.url}/#/experiments")
    page.wait_for_selector("#experiments a")
    page.click("#experiments a")
    page.wait_for_selector("#decision")
    assert page.text_content("#decision") == "stop"
    assert "guardrail errors breached by on" in (page.text_content("#reason") or "")
    assert "off 1,000" in (page.text_content("#counts") or "")
    assert (page.text_content("#srm") or "").startswith("ok")
    assert page.locator("#metrics tbody tr").count() == 3
    page.wait_for_selector("#lift-chart svg polyline", state="attached", timeout=90_000)
    page.screenshot(path=str(tmp_path / "experiment.png"), full_page=True)
    assert not errors, errors
