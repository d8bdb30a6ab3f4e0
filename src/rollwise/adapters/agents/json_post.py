"""An agent behind a plain JSON POST: ``{"input": task}`` in, ``{"output": answer}`` out.

The field names are the spec's (``inputField``/``outputField``); a nested output field is written with
dots (``result.text``). Tokens come from ``usage.total_tokens`` or a top-level ``tokens`` when present.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from rollwise.agents.protocols import AgentReply


class JsonPostEndpoint:
    def __init__(self, url: str, input_field: str = "input", output_field: str = "output",
                 timeout: float = 30.0, headers: dict[str, str] | None = None, client: httpx.Client | None = None):
        self.url = url
        self.input_field = input_field
        self.output_path = output_field.split(".")
        self.client = client or httpx.Client(timeout=timeout, headers=headers or {})

    def ask(self, prompt: str) -> AgentReply:
        started = time.perf_counter()
        try:
            response = self.client.post(self.url, json={self.input_field: prompt})
            elapsed = (time.perf_counter() - started) * 1000.0
            if response.status_code >= 400:
                return AgentReply("", elapsed, error=f"HTTP {response.status_code}")
            data = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            return AgentReply("", (time.perf_counter() - started) * 1000.0, error=type(exc).__name__)
        text = _dig(data, self.output_path)
        if text is None:
            return AgentReply("", elapsed, error=f"no {'.'.join(self.output_path)} in the answer")
        return AgentReply(text if isinstance(text, str) else _json(text), elapsed, tokens=_tokens(data))

    def close(self) -> None:
        self.client.close()


def _dig(data: Any, path: list[str]) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def _tokens(data: Any) -> int | None:
    usage = _dig(data, ["usage", "total_tokens"])
    value = usage if usage is not None else _dig(data, ["tokens"])
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
