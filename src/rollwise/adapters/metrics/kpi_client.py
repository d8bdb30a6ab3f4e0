"""Push business KPIs (visits, checkouts, revenue) for a version to rollwise's API.

The judge compares conversion between versions, which no proxy can see: the application (or the
demo) reports each event to ``POST /api/v1/rollouts/{name}/kpis`` with ``{version, metric, value}``.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx


class KpiError(RuntimeError):
    pass


class KpiClient:
    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8080",
        *,
        headers: dict[str, str] | None = None,
        timeout_s: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, headers=headers or {}, timeout=timeout_s, transport=transport)

    def push(self, rollout: str, version: str, metric: str, value: float = 1.0) -> None:
        """Record ``value`` of ``metric`` for ``version``; raises ``KpiError`` if not accepted."""
        path = f"/api/v1/rollouts/{quote(rollout, safe='')}/kpis"
        try:
            response = self._http.post(path, json={"version": version, "metric": metric, "value": value})
        except httpx.HTTPError as exc:
            raise KpiError(f"cannot reach {self.base_url}: {exc}") from exc
        if response.status_code >= 300:
            raise KpiError(
                f"KPI {metric}={value} for {rollout}/{version} refused: "
                f"HTTP {response.status_code} {response.text[:200]}"
            )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> KpiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
