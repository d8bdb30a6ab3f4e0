"""The HTTP client of a running server: the one way code outside rollwise pushes KPIs."""

from __future__ import annotations

import json

import httpx
import pytest

from rollwise.control.client import ApiError, ControlPlaneClient


def test_push_kpi_posts_version_metric_value_to_the_rollout_route_and_names_a_refusal() -> None:
    seen: list[tuple[str, str, dict[str, object]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.raw_path.decode(), json.loads(request.content)))
        if "missing" in request.url.path:
            return httpx.Response(404, json={"detail": "no rollout named 'missing'"})
        return httpx.Response(202, json={"accepted": True})

    with ControlPlaneClient("http://127.0.0.1:8080", "t0k", transport=httpx.MockTransport(handler)) as client:
        client.push_kpi("shop", "v2", "checkout", 1)
        client.push_kpi("shop/eu", "v2", "revenue", 12.5)
        with pytest.raises(ApiError, match="HTTP 404: no rollout named 'missing'"):
            client.push_kpi("missing", "v2", "checkout")

    assert seen[0] == ("POST", "/api/v1/rollouts/shop/kpis", {"version": "v2", "metric": "checkout", "value": 1})
    assert seen[1][1] == "/api/v1/rollouts/shop%2Feu/kpis"
    assert seen[1][2] == {"version": "v2", "metric": "revenue", "value": 12.5}
