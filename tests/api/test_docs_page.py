"""`/docs` is readable offline: no script, stylesheet or font from a CDN (FastAPI's default page loads
Swagger UI from one)."""

from __future__ import annotations

import re

from support.api import LiveServer


def test_docs_page_lists_the_api_and_loads_nothing_from_elsewhere(live: LiveServer) -> None:
    with live.client() as client:
        page = client.get("/docs")
        assert page.status_code == 200
        html = page.text
        assert "/api/v1/rollouts/{name}/events" in html and "openapi.json" in html
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html, re.I), "a third-party URL in /docs"
        assert "<script" not in html and "<link" not in html
        assert client.get("/redoc").status_code == 404  # the CDN-backed ReDoc page is gone too
