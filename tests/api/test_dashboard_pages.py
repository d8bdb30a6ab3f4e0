"""Every dashboard page in headless Chromium, over a store with history: no page shows a raw epoch number
or a raw JSON key, and each page's screenshot lands in ``ROLLWISE_SCREENSHOTS`` (default: a tmp folder)
for CI to keep and for people to look at."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from rollwise.adapters.stores.sql import SqlStore
from rollwise.api import create_app
from rollwise.core.model import Event, Phase, RolloutRecord, RouteState
from rollwise.spec.loader import load_spec_text
from support.api import FLAGS, LiveServer, file_spec, make_tokens, serve_app, start, tmp_policy
from support.browser import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

DAY = 86400.0
EPOCH = re.compile(r"\b\d{9,}(\.\d+)?\b")  # seconds since 1970, printed as they are stored
SNAKE = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b")  # a payload key such as recovery_time_s
PAYLOAD_KEYS = ("count", "median", "values", "dora", "overall", "window_days", "lead_time", "recovery_time_s")
# (service, days ago, outcome, minutes from first traffic to the end, hours from commit to success)
HISTORY = [
    ("checkout", 5.2, "Succeeded", 12, 3.0), ("search", 4.6, "Succeeded", 9, 26.0),
    ("checkout", 4.1, "RolledBack", 35, None), ("search", 3.3, "Succeeded", 15, 5.5),
    ("checkout", 2.8, "Succeeded", 11, 2.0), ("search", 2.2, "RolledBack", 95, None),
    ("checkout", 1.4, "Succeeded", 10, 20.0), ("search", 0.7, "Succeeded", 14, 1.5),
]


def raw_bits(text: str) -> list[str]:
    """What reads as machine output: epoch numbers, snake_case keys, the metrics payload's own key names."""
    found = [m.group(0) for m in EPOCH.finditer(text)] + [m.group(0) for m in SNAKE.finditer(text)]
    for key in PAYLOAD_KEYS:
        found += re.findall(rf'"{key}"|\b{key}\s*[:=]', text)
    return found


def seed_history(store_url: str, now: float, folder: Path) -> None:
    """A few days of ended releases, as the engine's event log records them (re-created names, judged
    rollbacks), so the delivery metrics have figures and trends."""
    with SqlStore(store_url) as store:
        for service, days_ago, outcome, minutes, lead_h in HISTORY:
            spec = load_spec_text(file_spec(service, folder / f"{service}.json"))
            s = now - days_ago * DAY
            end = s + 60 + minutes * 60

            def ev(at: float, type_: str, message: str, service: str = service, **data: Any) -> Event:
                return Event(rollout=service, at=at, type=type_, message=message, data=data)

            record = RolloutRecord(name=service, spec=spec, created_at=s, updated_at=s, route=RouteState(stable="v1"),
                                   commit_time=s - lead_h * 3600 if lead_h else None)
            created = store.create(record, [ev(s, "created", "rollout created")])
            events = [ev(s, "phase", "Progressing", phase="Progressing"),
                      ev(s + 60, "step", "weight 0% -> 20%", kind="setWeight", weight=20.0, previous_weight=0.0),
                      ev(s + 120, "decision", "error rate within budget", index=1, action="continue",
                         rule="collecting", stage=1, weight=20.0)]
            if outcome == "RolledBack":
                events += [ev(end, "decision", "error rate regressed: 4.1% against 0.3%", index=2, action="rollback",
                              rule="slo-breach", culprit="error-rate", stage=1, weight=20.0),
                           ev(end, "phase", "RolledBack: error rate regressed", phase="RolledBack")]
            else:
                events += [ev(end - 30, "step", "weight 20% -> 100%", kind="setWeight", weight=100.0,
                              previous_weight=20.0),
                           ev(end, "phase", "Succeeded: all steps passed", phase="Succeeded")]
            store.save(created.model_copy(update={"phase": Phase(outcome), "finished_at": end, "updated_at": end}),
                       events)


JUDGED = """
name: cart-judged
service: cart
versions:
  stable: {name: v1, address: 127.0.0.1:9001}
  canary: {name: v2, address: 127.0.0.1:9002}
traffic: {router: file, path: "ROUTE"}
metrics: {source: pushed}
strategy:
  canary:
    analysis:
      interval: 1s
      minSamples: 50
      minStageTime: 1s
      metrics:
        - {name: error-rate, type: errorRate, slo: "< 1%"}
    steps:
      - setWeight: 20
      - pause: {duration: 1h}
      - setWeight: 100
"""


def judged_rollback(live: LiveServer, token: str, route: Path) -> None:
    """A canary the judge rolls back: the service pushes its counters, v2 failing one request in five."""
    headers = {"Authorization": f"Bearer {token}"}
    response = httpx.post(f"{live.url}/api/v1/rollouts", content=JUDGED.replace("ROUTE", str(route)).encode(),
                          headers={**headers, "Content-Type": "application/yaml"})
    assert response.status_code == 201, response.text
    deadline = time.monotonic() + 90
    phase = ""
    while phase != "RolledBack":
        assert time.monotonic() < deadline, phase
        for version, errors in (("v1", 0), ("v2", 40)):
            for metric, value in (("requests", 200), ("errors", errors)):
                if value:
                    httpx.post(f"{live.url}/api/v1/rollouts/cart-judged/kpis", headers=headers,
                               json={"version": version, "metric": metric, "value": value})
        time.sleep(0.3)
        phase = httpx.get(f"{live.url}/api/v1/rollouts/cart-judged", headers=headers).json()["phase"]


@dataclass
class Dashboard:
    live: LiveServer
    tokens: dict[str, str]


def wait_phase(live: LiveServer, token: str, name: str, wanted: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        response = httpx.get(f"{live.url}/api/v1/rollouts/{name}", headers={"Authorization": f"Bearer {token}"})
        seen = str(response.json().get("phase"))
        if seen == wanted:
            return
        time.sleep(0.2)
    raise AssertionError(f"{name} is {seen}, not {wanted}")


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """A controller-driven server over the seeded history, plus live rollouts: one promoted to the end,
    one aborted by a releaser, one rolled back by the judge, one still in progress (a viewer's abort refused)."""
    tmp = tmp_path_factory.mktemp("dashboard")
    store_url = f"sqlite:///{tmp / 'rollwise.db'}"
    flags = tmp / "flags.json"
    flags.write_text(json.dumps(FLAGS))
    seed_history(store_url, time.time(), tmp)
    tokens = make_tokens(store_url)
    app = create_app(store_url, str(flags), run_controller=True, controller_poll_s=0.1, stream_poll_s=0.2,
                     policy=tmp_policy(tmp))
    with serve_app(app) as url:
        live = LiveServer(url, store_url, app)
        releaser = tokens["releaser"]
        start(live, releaser, "web", tmp / "web.json", pause="0.5s", weights=(10, 50, 100))
        start(live, releaser, "cart", tmp / "cart.json", pause="1h", weights=(10, 100))
        start(live, releaser, "payments", tmp / "payments.json", pause="1h", weights=(25, 100))
        wait_phase(live, releaser, "web", "Succeeded")
        wait_phase(live, releaser, "cart", "Progressing")
        response = httpx.post(f"{live.url}/api/v1/rollouts/cart/abort", json={"reason": "error budget burning"},
                              headers={"Authorization": f"Bearer {releaser}"})
        assert response.status_code == 200, response.text
        wait_phase(live, releaser, "cart", "Aborted")
        refused = httpx.post(f"{live.url}/api/v1/rollouts/payments/abort", json={"reason": "looks slow"},
                             headers={"Authorization": f"Bearer {tokens['viewer']}"})
        assert refused.status_code == 403  # a denied row in the audit log
        judged_rollback(live, releaser, tmp / "cart-judged.json")
        yield Dashboard(live, tokens)


# (name, hash route, a selector present once the page has drawn its data)
PAGES = [
    ("rollouts", "#/", "#rollouts tr[data-rollout=web]"),
    ("rollout-promoted", "#/rollouts/web", "#history li"),
    ("rollout-aborted", "#/rollouts/cart", "#history li"),
    ("rollout-rolled-back", "#/rollouts/cart-judged", "#decisions article"),
    ("rollout-with-history", "#/rollouts/search", "#decisions article"),
    ("flags", "#/flags", "#flag-table"),
    ("delivery-metrics", "#/metrics", "#dora-summary"),
    ("audit", "#/audit", "#audit table"),
    ("fleet", "#/fleet", "#fleet-summary"),
]


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("ROLLWISE_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class Tab:
    """A signed-in admin's browser tab and the script errors it raised."""

    page: Any
    errors: list[str]


@pytest.fixture
def tab(dashboard: Dashboard, browser: Any) -> Iterator[Tab]:
    page = browser.new_page(viewport={"width": 1360, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{dashboard.live.url}/")
    sign_in(page, dashboard.tokens["admin"])
    page.wait_for_selector("#identity >> text=admin")
    yield Tab(page, errors)
    page.close()


def visible_text(page: Any) -> str:
    """The text a person sees with every "on demand" part (evidence, definitions) opened."""
    page.eval_on_selector_all("details", "els => els.forEach(el => { el.open = true; })")
    return str(page.inner_text("body"))


def visit(page: Any, dashboard: Dashboard, route: str, ready: str) -> None:
    page.goto(f"{dashboard.live.url}/{route}")
    page.wait_for_selector(ready, timeout=30_000)  # a bound for a loaded CI machine, not a speed check
    page.wait_for_timeout(400)  # charts and live refreshes settle


def test_every_page_reads_as_words_not_payload(dashboard: Dashboard, tab: Tab, screenshots: Path) -> None:
    page = tab.page
    problems: dict[str, list[str]] = {}
    for name, route, ready in PAGES:
        visit(page, dashboard, route, ready)
        page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)
        text = visible_text(page)
        assert "Could not load" not in text, (name, text[:500])
        if found := raw_bits(text):
            problems[name] = sorted(set(found))
    print(f"dashboard screenshots: {screenshots}")
    assert problems == {}, problems
    assert tab.errors == []


def test_the_delivery_page_shows_bands_durations_and_trends(dashboard: Dashboard, tab: Tab,
                                                            screenshots: Path) -> None:
    page = tab.page
    visit(page, dashboard, "#/metrics", "#dora-summary")
    table = str(page.inner_text("#dora-summary"))
    for label in ("Deployment frequency", "Lead time for changes", "Change failure rate", "Time to restore",
                  "All services", "checkout", "search", "web"):
        assert label.lower() in table.lower(), (label, table)  # headers are upper-cased by the stylesheet
    assert re.search(r"\b(elite|high|medium|low)\b", table, re.I)
    assert re.search(r"\b\d+ (h|min|days?)\b", table), table  # durations in words
    assert re.search(r"a (day|week|month)", table), table  # frequencies in words
    assert page.locator("#dora-trends svg.chart").count() >= 2  # releases per bucket, and at least one line
    definition = page.get_attribute("#dora-summary thead th:nth-child(2)", "title") or ""
    assert "successful releases per day" in definition and "DORA bands" in definition, definition
    page.click("button[data-scope=search]")
    assert "search" in str(page.inner_text("#metrics section:nth-child(2) h2"))
    page.set_viewport_size({"width": 820, "height": 900})  # a laptop split screen: the table still fits
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=str(screenshots / "delivery-metrics-narrow.png"), full_page=True)
    assert tab.errors == []


def test_rollout_decisions_read_as_words(dashboard: Dashboard, tab: Tab) -> None:
    page = tab.page
    problems: dict[str, list[str]] = {}
    for name, route, ready in PAGES:
        if route.startswith("#/rollouts/"):
            visit(page, dashboard, route, ready)
            if found := raw_bits(str(page.inner_text("#decisions"))):
                problems[name] = sorted(set(found))
    assert problems == {}, problems


def seed_envoys(store_url: str, now: float) -> None:
    """Four Envoys as ADS servers record them: two in eu (one on incremental xDS, one a revision behind),
    one in us refusing the newest route, one gone an hour ago."""
    from rollwise.adapters.stores.sql_fleet import SqlEnvoyFleet
    from rollwise.core.fleet import EnvoyNode

    with SqlStore(store_url) as store:
        SqlEnvoyFleet(store).record_nodes([
            EnvoyNode("edge-eu-1", region="eu", zone="eu-1a", connected=True, seen_at=now, protocol="delta",
                      confirmed={"web": 7}),
            EnvoyNode("edge-eu-2", region="eu", zone="eu-1b", connected=True, seen_at=now, confirmed={"web": 6}),
            EnvoyNode("edge-us-1", region="us", connected=True, seen_at=now, confirmed={"web": 7},
                      nacked={"web": 8}, nack_message="invalid perl operator: (?=lookahead)", nack_at=now),
            EnvoyNode("edge-us-2", region="us", connected=False, seen_at=now - 3600, confirmed={"web": 5}),
        ])


def test_the_fleet_page_shows_envoys_by_region_refusals_laggards_and_controllers(
        dashboard: Dashboard, tab: Tab, screenshots: Path) -> None:
    seed_envoys(dashboard.live.store_url, time.time())
    page = tab.page
    visit(page, dashboard, "#/fleet", "#fleet-envoys table")
    page.screenshot(path=str(screenshots / "fleet.png"), full_page=True)
    assert page.inner_text("#fleet-connected .big").strip() == "3 of 4"
    assert page.inner_text("#fleet-nacking .big").strip() == "1"
    assert page.inner_text("#fleet-behind .big").strip() == "1"  # edge-eu-2 serves web at 6, the fleet at 7
    envoys = str(page.inner_text("#fleet-envoys"))
    assert "region eu · 2 of 2 connected" in envoys.lower()  # headings are upper-cased by the stylesheet
    assert "region us · 1 of 2 connected" in envoys.lower()
    eu2 = str(page.inner_text("tr[data-envoy=edge-eu-2]"))
    assert "behind: the fleet serves 7" in eu2 and "state of the world" in eu2
    assert "incremental" in str(page.inner_text("tr[data-envoy=edge-eu-1]"))
    assert "gone" in str(page.inner_text("tr[data-envoy=edge-us-2]")) and "1 h ago" in envoys
    assert "refused web at revision 8: invalid perl operator" in envoys
    controllers = str(page.inner_text("#fleet-controllers"))
    assert "alive" in controllers  # the server's own controller, sharing the store
    assert raw_bits(visible_text(page)) == []
    assert tab.errors == []
