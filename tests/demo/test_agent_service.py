"""The demo agent without the model: its prompts, its memory writes and recall, its refusals.

A stand-in model server (embeddings from a hash, answers that echo the question) lets these run in
seconds with only the test extra (lancedb); the real model is exercised by test_agent_demo.py.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from rollwise.demo.agent import agent_service
from rollwise.demo.agent.agent_service import Agent, AgentServer, Memory, make_handler, safe_user
from rollwise.demo.agent.prompts import PERSONAS, messages_for

lancedb = pytest.importorskip("lancedb")
pa = pytest.importorskip("pyarrow")

DIM = 8


def _vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    raw = [b - 128.0 for b in digest[:DIM]]
    norm = sum(v * v for v in raw) ** 0.5
    return [v / norm for v in raw]


class FakeModels(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[list[dict[str, str]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        if self.path == "/v1/embeddings":
            document: dict[str, Any] = {"data": [{"embedding": _vector(t)} for t in body["input"]]}
        else:
            FakeModels.seen.append(body["messages"])
            answer = "Paris" if "France" in body["messages"][-1]["content"] else "?"
            document = {"choices": [{"message": {"role": "assistant", "content": answer}}],
                        "usage": {"total_tokens": 3}}
        data = json.dumps(document).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def model_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeModels)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeModels.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _agent(model_url: str, uri: Path, table: str, remember: bool) -> Iterator[str]:
    agent = Agent("v2", "v2", model_url, Memory(str(uri), table, remember), max_tokens=12, temperature=0.7)
    server = AgentServer(("127.0.0.1", 0), make_handler(agent))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _ask(url: str, question: str, user: str = "user-1") -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", headers={"x-user": user},
                      json={"messages": [{"role": "user", "content": question}]}, timeout=10)


def test_every_prompt_of_a_persona_shares_its_prefix() -> None:
    """The model server computes a persona's prefix once: only the last message may differ."""
    for persona in PERSONAS:
        plain = messages_for(persona, "What is 3+4?")
        recalled = messages_for(persona, "What is 9*8?", ["Asked: What is 9*8? Answered: 72"])
        assert plain[:-1] == recalled[:-1]
        assert recalled[-1]["role"] == "user" and "72" in recalled[-1]["content"]
    assert len(messages_for("v1", "q")) > len(messages_for("v2", "q"))  # v1 keeps its worked examples


def test_the_canary_writes_only_once_its_copy_exists_and_recalls_what_it_wrote(
        tmp_path: Path, model_url: str) -> None:
    for url in _agent(model_url, tmp_path, "memories-canary", remember=True):
        first = _ask(url, "What is the capital of France?")
        assert first.status_code == 200 and first.json()["choices"][0]["message"]["content"] == "Paris"
        assert httpx.get(f"{url}/healthz").json()["memorySkipped"] == 1  # no copy yet: nothing written

        schema = pa.schema([("id", pa.int64()), ("text", pa.string()), ("user", pa.string()),
                            ("source", pa.string()), ("vector", pa.list_(pa.float32(), DIM))])
        lancedb.connect(str(tmp_path)).create_table("memories-canary", schema=schema)
        _ask(url, "What is the capital of France?")
        rows = lancedb.connect(str(tmp_path)).open_table("memories-canary").to_arrow().to_pylist()
        assert [(r["user"], r["source"]) for r in rows] == [("user-1", "v2")]
        assert rows[0]["text"] == "Asked: What is the capital of France? Answered: Paris"

        again = _ask(url, "What is the capital of France?")
        assert again.json()["rollwise"]["recalled"] == 1
        assert "You remember" in FakeModels.seen[-1][-1]["content"]
        assert _ask(url, "What is the capital of France?", user="user-2").json()["rollwise"]["recalled"] == 0


def test_the_stable_agent_reads_its_memory_but_never_writes(tmp_path: Path, model_url: str) -> None:
    schema = pa.schema([("id", pa.int64()), ("text", pa.string()), ("user", pa.string()),
                        ("source", pa.string()), ("vector", pa.list_(pa.float32(), DIM))])
    lancedb.connect(str(tmp_path)).create_table("memories", schema=schema)
    for url in _agent(model_url, tmp_path, "memories", remember=False):
        assert _ask(url, "What is the capital of France?").status_code == 200
    assert lancedb.connect(str(tmp_path)).open_table("memories").count_rows() == 0


def test_bad_requests_are_refused_with_a_reason(tmp_path: Path, model_url: str) -> None:
    for url in _agent(model_url, tmp_path, "memories", remember=False):
        refused = httpx.post(f"{url}/v1/chat/completions", json={"messages": [{"role": "system", "content": "x"}]})
        assert refused.status_code == 400 and "no user message" in refused.json()["error"]
        assert httpx.post(f"{url}/v1/chat/completions", content=b"{").status_code == 400
    assert safe_user("u1' OR 1=1 --") == "u1OR11--" and safe_user(None) == "anonymous"


def test_the_agent_demo_says_in_one_line_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from rollwise.cli.main import app
    from rollwise.demo.agent import model_server

    monkeypatch.setattr(model_server, "missing_packages", lambda: ["torch"])
    result = CliRunner().invoke(app, ["demo", "--scenario", "agent"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "make agents" in lines[0] and "Traceback" not in result.output


def test_main_refuses_an_unknown_persona() -> None:
    with pytest.raises(SystemExit) as exc:
        agent_service.main(["--port", "1", "--version", "v9", "--persona", "v9", "--model-url", "http://x"])
    assert exc.value.code == 2


def test_the_shipped_suite_has_fifty_gradable_tasks() -> None:
    from rollwise.agents.graders import Graders
    from rollwise.agents.suite import parse_suite
    from rollwise.demo.agent.scenario import SUITE

    tasks = parse_suite(SUITE.read_text(encoding="utf-8"), str(SUITE))
    assert len(tasks) == 50
    Graders().check(tasks)  # no grader that needs a command or a judge
    by_id = {t.id: t for t in tasks}
    graders = Graders()
    assert graders.passes(by_id["capital-france"], "Paris.") and not graders.passes(
        by_id["capital-france"], "La capitale de la France est Paris.")
    assert graders.passes(by_id["json-ok"], '{"ok": true}') and graders.passes(by_id["yes-fire"], "Yes!")
