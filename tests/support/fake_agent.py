"""A fake agent: an HTTP service that answers arithmetic tasks right with a known probability.

It speaks both protocols rollwise knows: a plain JSON POST (``POST /answer`` with ``{"input": ...}`` →
``{"output": ..., "usage": {"total_tokens": n}}``) and OpenAI-style chat completions (``POST
/v1/chat/completions``). A task reads ``what is A+B?``; the agent answers ``A+B`` with probability
``rate`` and ``A+B+1`` otherwise. Run as a process (``python tests/support/fake_agent.py PORT RATE SEED``)
for end-to-end rollouts, or in a thread with ``start_in_thread`` for adapter tests.
"""

from __future__ import annotations

import json
import random
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TASK = re.compile(r"what is (\d+)\s*\+\s*(\d+)", re.IGNORECASE)


def answer(prompt: str, rate: float, chooser: random.Random) -> str:
    match = TASK.search(prompt)
    if match is None:
        return "I do not know"
    total = int(match.group(1)) + int(match.group(2))
    return str(total if chooser.random() < rate else total + 1)


def make_server(port: int, rate: float, seed: int) -> ThreadingHTTPServer:
    chooser = random.Random(seed)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._send(200 if self.path == "/healthz" else 404, {"ok": self.path == "/healthz"})

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except json.JSONDecodeError:
                self._send(400, {"error": "not JSON"})
                return
            if self.path == "/judge":  # an LLM judge's stand-in: PASS when the answer equals the reference
                prompt = str(body.get("input", ""))
                reference, answered = (re.search(rf"^{key}: (.*)$", prompt, re.MULTILINE)
                                       for key in ("Reference", "Answer"))
                same = reference is not None and answered is not None and reference[1] == answered[1]
                self._send(200, {"output": "PASS" if same else "FAIL"})
            elif self.path == "/echo-header":  # which x-eval header arrived: routing checks
                self._send(200, {"output": self.headers.get("x-eval", "")})
            elif self.path == "/broken":
                self._send(500, {"error": "broken on purpose"})
            elif self.path == "/answer":
                with lock:
                    text = answer(str(body.get("input", "")), rate, chooser)
                self._send(200, {"output": text, "usage": {"total_tokens": 7}})
            elif self.path == "/v1/chat/completions":
                prompt = " ".join(str(m.get("content", "")) for m in body.get("messages", []))
                with lock:
                    text = answer(prompt, rate, chooser)
                self._send(200, {"choices": [{"message": {"role": "assistant", "content": text}}],
                                 "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}})
            else:
                self._send(404, {"error": "no such path"})

    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


def start_in_thread(rate: float, seed: int = 1) -> ThreadingHTTPServer:
    """A fake agent on a free port in this process; call ``shutdown()`` and ``server_close()`` after."""
    server = make_server(0, rate, seed)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


if __name__ == "__main__":
    make_server(int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])).serve_forever()
