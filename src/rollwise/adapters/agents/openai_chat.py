"""An agent behind an OpenAI-style chat completions endpoint (``POST …/v1/chat/completions``).

The task's input is sent as one user message; the answer is ``choices[0].message.content`` and the
token cost ``usage.total_tokens`` when the server reports it. An agent's failure (refused, timed out,
a body without an answer) is a failed run with its reason, never an exception.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from rollwise.agents.protocols import AgentReply


class OpenAIChatEndpoint:
    def __init__(self, url: str, model: str | None = None, timeout: float = 30.0,
                 headers: dict[str, str] | None = None, client: httpx.Client | None = None):
        self.url = url
        self.model = model or "default"
        self.client = client or httpx.Client(timeout=timeout, headers=headers or {})

    def ask(self, prompt: str) -> AgentReply:
        body = {"model": self.model, "messages": [{"role": "user", "content": prompt}]}
        started = time.perf_counter()
        try:
            response = self.client.post(self.url, json=body)
            elapsed = (time.perf_counter() - started) * 1000.0
            if response.status_code >= 400:
                return AgentReply("", elapsed, error=f"HTTP {response.status_code}")
            data = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            return AgentReply("", (time.perf_counter() - started) * 1000.0, error=type(exc).__name__)
        return _reply(data, elapsed)

    def close(self) -> None:
        self.client.close()


def _reply(data: Any, elapsed: float) -> AgentReply:
    try:
        text = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return AgentReply("", elapsed, error="no choices[0].message.content in the answer")
    usage = data.get("usage") if isinstance(data, dict) else None
    tokens = usage.get("total_tokens") if isinstance(usage, dict) else None
    return AgentReply(str(text or ""), elapsed, tokens=int(tokens) if isinstance(tokens, int | float) else None)
