"""Headless Chromium (Debian's) for tests that look at what a person would see."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.common import require_or_skip

CHROMIUM = Path("/usr/bin/chromium")
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"]


def render_in_chromium(html: Path, screenshot: Path, heading: str = "checkout") -> list[dict[str, float]]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require_or_skip(False, "python playwright is not installed")
        raise
    require_or_skip(CHROMIUM.exists(), "chromium missing: apt-get install -y chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            failed: list[str] = []
            page.on("requestfailed", lambda request: failed.append(request.url))
            page.goto(html.as_uri())
            boxes = [box for svg in page.query_selector_all("svg.chart") if (box := svg.bounding_box())]
            assert page.title().startswith("Postmortem")
            assert page.inner_text("h1").startswith(heading)
            page.screenshot(path=str(screenshot), full_page=True)
            assert failed == []  # nothing to fetch: the file is self-contained
            return boxes  # type: ignore[return-value]
        finally:
            browser.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium shared by a module's tests (each opens its own page), closed after them."""
    require_or_skip(CHROMIUM.exists(), f"{CHROMIUM} missing: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def sign_in(page: Any, token: str) -> None:
    if page.is_hidden("#token-form"):
        page.click("#token-button")
    page.fill("#token-input", token)
    page.click("#token-save")
