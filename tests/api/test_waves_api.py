"""Per-wave status where people read it: the API's rollout JSON, the dashboard's rollout page (headless
Chromium) and the postmortem, for a region-wave rollout decided on the simulated fleet."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from rollwise.report.postmortem import build_postmortem, to_html, to_markdown
from rollwise.simulate import Behaviour, simulate
from rollwise.spec import load_spec_text
from support.api import LiveServer, make_tokens
from support.browser import sign_in
from support.specs import simulated_waves_spec

WAVES = simulated_waves_spec(("first", "[a]"), ("second", "[b]"), ("third", "[c]"))


def _decided(live: LiveServer) -> dict[str, str]:
    result = simulate(load_spec_text(WAVES), canary_in={"b": Behaviour(error_rate=0.05)}, seed=2,
                      store=live.app.state.plane.store)
    assert result.phase == "RolledBack"
    return make_tokens(live.store_url)


def test_the_api_lists_each_wave_with_its_status(live: LiveServer) -> None:
    tokens = _decided(live)
    headers = {"Authorization": f"Bearer {tokens['viewer']}"}
    detail = httpx.get(f"{live.url}/api/v1/rollouts/shop", headers=headers).json()
    assert detail["strategy"] == "regionWaves"
    rows = {w["name"]: w for w in detail["waves"]}
    assert [rows[n]["status"] for n in ("first", "second", "third")] == ["rolled-back", "rolled-back", "pending"]
    assert rows["first"]["canary_requests"] > 0 and rows["first"]["verdicts"].get("expand")
    assert "error-rate" in rows["second"]["failure"] and rows["third"]["started_at"] is None
    assert detail["route"]["region_weights"] == {"a": 0.0, "b": 0.0, "c": 0.0}
    listed = httpx.get(f"{live.url}/api/v1/rollouts", headers=headers).json()
    assert [len(r["waves"]) for r in listed if r["name"] == "shop"] == [3]
    schema = httpx.get(f"{live.url}/api/v1/schema/evidence", headers=headers).json()
    assert "WaveEvidence" in schema["$defs"]

    store = live.app.state.plane.store
    pm = build_postmortem(store.get("shop"), store.events("shop"), store.windows("shop"))
    markdown = to_markdown(pm)
    assert "## Waves" in markdown and "| second | b | rolled-back |" in markdown
    assert '<section id="waves">' in to_html(pm)


@pytest.mark.browser
@pytest.mark.timeout(150)
def test_the_rollout_page_shows_a_table_of_waves(live: LiveServer, browser: Any) -> None:
    tokens = _decided(live)
    page = browser.new_page(viewport={"width": 1360, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{live.url}/")
    sign_in(page, tokens["viewer"])
    page.goto(f"{live.url}/#/rollouts/shop")
    page.wait_for_selector("#waves-table", timeout=30_000)
    statuses = page.locator("#waves-table tbody .wave-status").all_text_contents()
    assert statuses == ["rolled-back", "rolled-back", "pending"]
    second = page.locator('#waves-table tr[data-wave="second"]').inner_text()
    assert "error-rate" in second
    assert errors == []
