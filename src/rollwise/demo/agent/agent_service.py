"""One version of the demo's agent: a persona (prompt), a memory in LanceDB, and the shared model.

    python -m rollwise.demo.agent.agent_service --port 8001 --version v1 --persona v1 \
        --model-url http://127.0.0.1:8100 --memory-uri /tmp/mem --memory-table memories

It speaks OpenAI-style chat completions (``POST /v1/chat/completions``), so rollwise reaches it like any
agent (``adapters/agents/openai_chat.py``), through Envoy like any service. For each question it recalls the
asking user's nearest memory (``x-user`` header; embeddings from the model server's MiniLM), asks the model
with its persona's prompt, and with ``--remember`` writes the exchange back to its memory table: one
LanceDB commit per write. The rollout gives the canary its own table (``<table>-canary``, a copy of the
tagged stable memory), so what v2 learns never reaches v1's users unless v2 is promoted.

Stdlib HTTP plus httpx and lancedb: the process is light, the models live in the model server.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from rollwise.demo.agent.prompts import PERSONAS, messages_for

#: Cosine similarity a memory needs to be recalled into the prompt (normalized vectors: L2² = 2 - 2·cos).
RECALL_SIMILARITY = 0.6


class Memory:
    """The agent's LanceDB table, opened when first needed (the canary's copy appears when it gets traffic)."""

    def __init__(self, uri: str | None, table: str, remember: bool):
        self.uri, self.name, self.remember = uri, table, remember
        self.lock = threading.Lock()
        self.writes = 0
        self.skipped = 0
        self._db: Any = None

    def _table(self) -> Any | None:
        if self.uri is None:
            return None
        if self._db is None:
            import lancedb

            self._db = lancedb.connect(self.uri, read_consistency_interval=timedelta(0))
        try:
            return self._db.open_table(self.name)
        except (ValueError, FileNotFoundError):
            return None

    def recall(self, user: str, vector: list[float]) -> list[str]:
        table = self._table()
        if table is None:
            return []
        hits = table.search(vector).where(f"user = '{user}'", prefilter=True).limit(1).to_list()
        return [str(h["text"]) for h in hits if 2.0 - float(h["_distance"]) >= 2.0 * RECALL_SIMILARITY]

    def write(self, user: str, text: str, vector: list[float], version: str) -> None:
        if not self.remember:
            return
        with self.lock:
            table = self._table()
            if table is None:  # no copy of the memory for this version yet: nothing may be written
                self.skipped += 1
                return
            row = {"id": time.time_ns(), "text": text, "user": user, "source": version, "vector": vector}
            table.add([row])
            self.writes += 1


def safe_user(value: str | None) -> str:
    """The ``x-user`` header as a memory key: letters, digits, ``-`` and ``_`` only (it goes into a filter)."""
    cleaned = re.sub(r"[^A-Za-z0-9_\-]", "", value or "")[:64]
    return cleaned or "anonymous"


class Agent:
    def __init__(self, version: str, persona: str, model_url: str, memory: Memory, max_tokens: int,
                 temperature: float):
        self.version, self.persona, self.memory = version, persona, memory
        self.max_tokens, self.temperature = max_tokens, temperature
        self.client = httpx.Client(base_url=model_url, timeout=300.0)

    def embed(self, text: str) -> list[float]:
        response = self.client.post("/v1/embeddings", json={"input": [text]})
        response.raise_for_status()
        return [float(v) for v in response.json()["data"][0]["embedding"]]

    def answer(self, question: str, user: str) -> dict[str, Any]:
        vector = self.embed(question) if self.memory.uri else []
        recalled = self.memory.recall(user, vector) if vector else []
        response = self.client.post("/v1/chat/completions", json={
            "messages": messages_for(self.persona, question, recalled),
            "max_tokens": self.max_tokens, "temperature": self.temperature})
        response.raise_for_status()
        completion: dict[str, Any] = response.json()
        text = completion["choices"][0]["message"]["content"]
        if vector:
            self.memory.write(user, f"Asked: {question} Answered: {text}", vector, self.version)
        completion["model"] = f"agent-{self.version}"
        completion["rollwise"] = {"version": self.version, "recalled": len(recalled)}
        return completion


def make_handler(agent: Agent) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "rollwise-demo-agent"

        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] == "/healthz":
                self._send(200, {"ok": True, "version": agent.version, "memoryWrites": agent.memory.writes,
                                 "memorySkipped": agent.memory.skipped})
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self) -> None:
            if self.path.split("?", 1)[0] != "/v1/chat/completions":
                self._send(404, {"error": "not found"})
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
                question = _last_user_message(body)
            except (json.JSONDecodeError, ValueError) as exc:
                self._send(400, {"error": str(exc) or "the body is not JSON"})
                return
            try:
                self._send(200, agent.answer(question, safe_user(self.headers.get("x-user"))))
            except (httpx.HTTPError, KeyError, IndexError) as exc:
                self._send(502, {"error": f"model server: {type(exc).__name__}"})

        def _send(self, status: int, document: dict[str, Any]) -> None:
            data = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.send_header("x-version", agent.version)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def _last_user_message(body: Any) -> str:
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list):
        raise ValueError("messages: give a list")
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user" and isinstance(message.get("content"), str):
            return str(message["content"])
    raise ValueError("messages: no user message")


class AgentServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m rollwise.demo.agent.agent_service",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--version", required=True)
    parser.add_argument("--persona", choices=sorted(PERSONAS), required=True)
    parser.add_argument("--model-url", required=True, help="the model server's base URL")
    parser.add_argument("--memory-uri", default=None, help="the LanceDB folder (none: no memory)")
    parser.add_argument("--memory-table", default="memories")
    parser.add_argument("--remember", action="store_true", help="write each exchange to the memory")
    parser.add_argument("--max-tokens", type=int, default=12)
    parser.add_argument("--temperature", type=float, default=0.7)
    args = parser.parse_args(argv)
    memory = Memory(args.memory_uri, args.memory_table, args.remember)
    agent = Agent(args.version, args.persona, args.model_url, memory, args.max_tokens, args.temperature)
    server = AgentServer((args.host, args.port), make_handler(agent))
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
