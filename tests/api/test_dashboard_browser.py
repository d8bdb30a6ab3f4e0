"""The dashboard in headless Chromium: live weights without reload, role-checked abort, a screenshot."""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.api import LiveServer, make_tokens, start
from support.browser import sign_in
from support.common import REPO

pytestmark = [pytest.mark.browser, pytest.mark.timeout(150)]


def phase(live: LiveServer, token: str, name: str) -> str:
    response = httpx.get(f"{live.url}/api/v1/rollouts/{name}", headers={"Authorization": f"Bearer {token}"})
    return str(response.json()["phase"])


def test_dashboard_live_weights_and_role_checked_abort(live_controller: LiveServer, browser: Any,
                                                      tmp_path: Path) -> None:
    live = live_controller
    tokens = make_tokens(live.store_url)
    page = browser.new_page(viewport={"width": 1360, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # 1. Weights change on screen, pushed by SSE, with no reload.
    page.goto(f"{live.url}/")
    sign_in(page, tokens["releaser"])
    start(live, tokens["releaser"], "web", tmp_path / "web.json", pause="2s", weights=(10, 40, 70, 100))
    page.goto(f"{live.url}/#/rollouts/web")
    page.wait_for_selector("#weight-canary")
    page.evaluate("window.__sameDocument = true")
    page.wait_for_selector("#live.on", timeout=30_000)
    seen: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = page.text_content("#weight-canary") or ""
        if not seen or seen[-1] != text:
            seen.append(text)
        if text == "100%":
            break
        time.sleep(0.1)
    assert page.evaluate("window.__sameDocument") is True, "the page reloaded"
    assert len(seen) >= 3 and seen[-1] == "100%", seen
    page.wait_for_selector("#rollout-phase >> text=Succeeded", timeout=30_000)
    page.wait_for_selector("#history >> text=Succeeded", timeout=30_000)
    artifacts = REPO / "artifacts"
    artifacts.mkdir(exist_ok=True)
    shot = artifacts / "dashboard-rollout.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"dashboard screenshot: {shot} (weights seen: {seen})")

    # 2. A viewer's abort is refused and the page says so; the rollout keeps going.
    start(live, tokens["releaser"], "held", tmp_path / "held.json", pause="1h", weights=(10, 100))
    page.click("#token-button")
    page.click("#token-clear")
    sign_in(page, tokens["viewer"])
    page.goto(f"{live.url}/#/rollouts/held")
    page.wait_for_selector("button[data-command=abort]")
    page.wait_for_selector("#identity >> text=viewer")
    page.click("button[data-command=abort]")
    page.wait_for_selector("#notice.error", timeout=30_000)
    notice = page.text_content("#notice") or ""
    assert "403" in notice and "releaser" in notice, notice
    assert phase(live, tokens["admin"], "held") == "Progressing"

    # 3. A releaser's abort works, and the page shows it.
    sign_in(page, tokens["releaser"])
    page.goto(f"{live.url}/#/rollouts/held")
    page.wait_for_selector("#identity >> text=releaser")
    page.fill("#reason", "browser test")
    page.click("button[data-command=abort]")
    page.wait_for_selector("#notice.ok", timeout=30_000)
    page.wait_for_selector("#rollout-phase >> text=Aborted", timeout=30_000)
    assert phase(live, tokens["admin"], "held") == "Aborted"
    assert page.text_content("#weight-canary") == "0%"
    assert errors == []


FAILING_METRICS = """
name: blind
service: blind
versions:
  stable: {name: v1, address: 127.0.0.1:9001}
  canary: {name: v2, address: 127.0.0.1:9002}
traffic: {router: none}
metrics: {source: prometheus, prometheusUrl: "http://127.0.0.1:PORT"}
strategy:
  canary:
    analysis:
      interval: 1s
      baselineHistory: 0s
      noDataLimit: 1h
      metrics:
        - {name: error-rate, type: errorRate, slo: "< 1%"}
    steps:
      - setWeight: 10
      - pause: {duration: 1h}
"""


def test_dashboard_shows_a_failing_metrics_backend(live_controller: LiveServer, browser: Any) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the socket goes: connections are refused
    live = live_controller
    plane = live.app.state.plane  # the operator allows this (dead) Prometheus: `serve --allow-url`
    plane.policy = dataclasses.replace(plane.policy, allow_urls=(f"http://127.0.0.1:{port}",))
    tokens = make_tokens(live.store_url)
    headers = {"Authorization": f"Bearer {tokens['releaser']}"}
    response = httpx.post(f"{live.url}/api/v1/rollouts", content=FAILING_METRICS.replace("PORT", str(port)).encode(),
                          headers={**headers, "Content-Type": "application/yaml"})
    assert response.status_code == 201, response.text
    deadline = time.monotonic() + 60
    detail: dict[str, Any] = {}
    while not detail.get("metrics_error"):
        assert time.monotonic() < deadline, detail
        time.sleep(0.2)
        detail = httpx.get(f"{live.url}/api/v1/rollouts/blind", headers=headers).json()
    expected = f"Prometheus at http://127.0.0.1:{port} unreachable"
    assert detail["metrics_error"].startswith(expected)
    windows = httpx.get(f"{live.url}/api/v1/rollouts/blind/windows", headers=headers).json()
    assert windows and all(w["error"].startswith(expected) for w in windows)

    page = browser.new_page(viewport={"width": 1360, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{live.url}/")
    sign_in(page, tokens["viewer"])
    page.goto(f"{live.url}/#/rollouts/blind")
    page.wait_for_selector("#metrics-error", timeout=30_000)
    shown = page.text_content("#metrics-error") or ""
    assert shown.startswith("backend error: " + expected), shown
    page.wait_for_selector("#history >> text=metrics backend error", timeout=30_000)
    page.wait_for_selector("#chart-errors >> text=Metrics backend error", timeout=30_000)  # not "no traffic"
    assert errors == []


DECIDED = """
name: NAME
service: shop
versions:
  stable: {name: v1, address: 127.0.0.1:9001}
  canary: {name: v2, address: 127.0.0.1:9002}
traffic: {router: none}
metrics: {source: simulated}
strategy:
  canary:
    analysis:
      interval: 10s
      metrics:
        - {name: error-rate, type: errorRate, slo: "< 2%"}
        - {name: latency-p99, type: latency}
    steps:
      - setWeight: 10
      - pause: {duration: 5m}
      - setWeight: 50
      - pause: {duration: 5m}
      - setWeight: 100
"""

EPOCH = re.compile(r"\b\d{9,}(\.\d+)?\b")


def _evidence_keys() -> set[str]:
    """Names from the evidence schema a person should never read: the camelCase and snake_case ones."""
    from rollwise.core.evidence import evidence_schema

    schema = evidence_schema()
    names = set(schema["properties"])
    for definition in schema["$defs"].values():
        names |= set(definition.get("properties", {}))
    return {n for n in names if n != n.lower() or "_" in n}


def test_rollout_page_shows_each_decisions_reason_chart_and_evidence(live: LiveServer, browser: Any) -> None:
    """A rolled-back and a promoted rollout (decided on simulated traffic, stored where the server reads):
    each decision's one-line reason, the culprit's chart with the decision marked, evidence on demand, and
    no epoch number or evidence key anywhere a person reads."""
    from rollwise.core.model import Phase
    from rollwise.simulate import Behaviour, simulate
    from rollwise.spec import load_spec_text

    store = live.app.state.plane.store
    bad = simulate(load_spec_text(DECIDED.replace("NAME", "bad")), canary=Behaviour(error_rate=0.035), store=store)
    good = simulate(load_spec_text(DECIDED.replace("NAME", "good")), store=store, seed=3)
    assert (bad.phase, good.phase) == (Phase.ROLLED_BACK, Phase.SUCCEEDED)
    page = browser.new_page(viewport={"width": 1360, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    keys = _evidence_keys()
    artifacts = REPO / "artifacts"
    artifacts.mkdir(exist_ok=True)
    for name, outcome in (("bad", "rollback"), ("good", "promotion")):
        page.goto(f"{live.url}/#/rollouts/{name}")
        page.wait_for_selector("#decisions .decision .reason")
        page.wait_for_selector("#chart-errors svg .marker")  # decisions marked on the metric charts
        if name == "bad":
            first = page.locator("#decisions .decision").first
            assert first.locator(".badge").text_content() == "Rolled back"
            assert "error-rate" in (first.locator(".reason").text_content() or "")
            first.locator(".decision-chart svg .marker").wait_for()  # the culprit's chart, decision marked
        page.evaluate("document.querySelectorAll('#decisions details').forEach((d) => { d.open = true; })")
        page.wait_for_selector("#decisions details[open] table.evidence")
        page.screenshot(path=str(artifacts / f"dashboard-{outcome}.png"), full_page=True)
        text = page.inner_text("main")
        assert not EPOCH.search(text), EPOCH.search(text)
        shown = sorted(k for k in keys if re.search(rf"\b{re.escape(k)}\b", text))
        assert not shown, f"evidence keys on the {outcome} page: {shown}"
    assert errors == []
