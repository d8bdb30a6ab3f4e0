"""An httpx client for a running ``rollwise serve``: what the CLI uses in ``--server`` mode.

Methods return the API's JSON; failures raise ``ApiError`` with the status, the server's message
and (for invalid specs) every problem line, so the CLI can print them exactly as local mode does.
"""

from __future__ import annotations

import builtins
from typing import Any
from urllib.parse import quote

import httpx


class ApiError(Exception):
    def __init__(self, status: int, message: str, problems: list[str] | None = None):
        self.status = status
        self.message = message
        self.problems = problems or []
        super().__init__(f"HTTP {status}: {message}")


class ControlPlaneClient:
    def __init__(self, base_url: str, token: str | None = None, *, timeout_s: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ControlPlaneClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ rollouts

    def start(self, spec_text: str, source: str = "request", reason: str = "",
              commit_time: str | None = None, force: bool = False) -> dict[str, Any]:
        params = {"reason": reason, **({"commit_time": commit_time} if commit_time else {}),
                  **({"force": "true"} if force else {})}
        return self._call("POST", "/api/v1/rollouts", content=spec_text.encode("utf-8"), params=params,
                          headers={"Content-Type": "application/yaml", "X-Rollwise-Spec-File": source})

    def update(self, name: str, spec_text: str, source: str = "request", reason: str = "") -> dict[str, Any]:
        return self._call("PUT", f"/api/v1/rollouts/{_seg(name)}/spec", content=spec_text.encode("utf-8"),
                          params={"reason": reason},
                          headers={"Content-Type": "application/yaml", "X-Rollwise-Spec-File": source})

    def status(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/rollouts/{_seg(name)}")

    def list(self, active: bool = False) -> list[dict[str, Any]]:
        return self._call("GET", "/api/v1/rollouts", params={"active": str(active).lower()})  # type: ignore[no-any-return]

    def command(self, name: str, command: str, reason: str = "", full: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {"reason": reason}
        if command == "promote":
            body["full"] = full
        return self._call("POST", f"/api/v1/rollouts/{_seg(name)}/{command}", json=body)

    def events(self, name: str | None = None, since_seq: int = 0) -> builtins.list[dict[str, Any]]:
        if name is None:
            return self._call("GET", "/api/v1/events")  # type: ignore[no-any-return]
        return self._call("GET", f"/api/v1/rollouts/{_seg(name)}/events",  # type: ignore[no-any-return]
                          params={"since_seq": since_seq})

    def decisions(self, name: str) -> builtins.list[dict[str, Any]]:
        return self._call("GET", f"/api/v1/rollouts/{_seg(name)}/decisions")  # type: ignore[no-any-return]

    def push_kpi(self, name: str, version: str, metric: str, value: float = 1.0) -> dict[str, Any]:
        return self._call("POST", f"/api/v1/rollouts/{_seg(name)}/kpis",
                          json={"version": version, "metric": metric, "value": value})

    # ------------------------------------------------------------------ plumbing

    # ------------------------------------------------------------------ the watch's change log

    def record_change(self, change: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/api/v1/changes", json=change)  # type: ignore[no-any-return]

    def changes(self, service: str | None, since_s: float) -> builtins.list[dict[str, Any]]:
        params: dict[str, Any] = {"since_s": since_s, **({"service": service} if service else {})}
        return self._call("GET", "/api/v1/changes", params=params)  # type: ignore[no-any-return]

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(0, f"cannot reach {self.base_url}: {exc}") from exc
        if response.status_code < 300:
            return response.json()
        try:
            body = response.json()
        except ValueError:
            body = {"detail": response.text[:500]}
        detail = body.get("detail") if isinstance(body, dict) else body
        if isinstance(detail, list):  # FastAPI validation errors
            detail = "; ".join(f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}" for d in detail)
        problems = body.get("problems") if isinstance(body, dict) else None
        raise ApiError(response.status_code, str(detail), problems)


def _seg(value: str) -> str:
    return quote(value, safe="")
