"""One evaluation batch: a few tasks drawn from the suite, each run k times on stable and canary.

Tasks are drawn **with replacement**, uniformly, from a generator seeded by the rollout and the window:
the tasks of a rollout are then independent draws from the suite, which is what the paired test
assumes (its null is about the suite's mean), and a batch can be recomputed from its seed. Runs of
one task alternate stable and canary, so drift in a shared dependency hits both alike.

Calls go out ``concurrency`` at a time (agents answer slowly, and a look must not hold the controller for
minutes); results are put back in task order, so a batch reads the same however the calls interleave.

A batch is kept on its window as plain JSON (``Window.evaluations[name]``) so the store keeps it and
the judge re-reads it like any other observation.
"""

from __future__ import annotations

import hashlib
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from rollwise.agents.graders import Graders
from rollwise.agents.protocols import AgentEndpoint, AgentReply
from rollwise.agents.suite import Task

SIDES = ("stable", "canary")


@dataclass(frozen=True)
class TaskResult:
    """One task's k runs on both versions: pass (1) or fail (0) per run, mean latency, tokens used."""

    id: str
    stable: list[int]
    canary: list[int]
    ms: tuple[float, float] = (0.0, 0.0)
    tokens: tuple[float | None, float | None] = (None, None)

    @property
    def difference(self) -> float:
        """Stable pass share minus canary pass share: the paired test's outcome for this task."""
        return sum(self.stable) / len(self.stable) - sum(self.canary) / len(self.canary)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "stable": self.stable, "canary": self.canary, "ms": list(self.ms),
                "tokens": list(self.tokens)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskResult:
        ms = data.get("ms") or [0.0, 0.0]
        tokens = data.get("tokens") or [None, None]
        return cls(id=str(data["id"]), stable=[int(v) for v in data["stable"]],
                   canary=[int(v) for v in data["canary"]], ms=(float(ms[0]), float(ms[1])),
                   tokens=(_num(tokens[0]), _num(tokens[1])))


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class Batch:
    tasks: list[TaskResult]
    errors: dict[str, int] = field(default_factory=lambda: {"stable": 0, "canary": 0})
    seed: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"tasks": [t.to_dict() for t in self.tasks], "errors": dict(self.errors), "seed": self.seed}

    @classmethod
    def from_dict(cls, data: Any) -> Batch:
        if not isinstance(data, dict):
            return cls(tasks=[])
        return cls(tasks=[TaskResult.from_dict(t) for t in data.get("tasks", [])],
                   errors={k: int(v) for k, v in (data.get("errors") or {}).items()}, seed=str(data.get("seed", "")))


def draw_tasks(tasks: list[Task], count: int, seed: str) -> list[Task]:
    """``count`` tasks drawn uniformly with replacement, reproducibly from ``seed``."""
    digest = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big")
    chooser = random.Random(digest)
    return [chooser.choice(tasks) for _ in range(count)]


@dataclass
class EvaluationRunner:
    """Runs batches of one evaluation against the two versions' endpoints."""

    tasks: list[Task]
    graders: Graders
    stable: AgentEndpoint
    canary: AgentEndpoint
    runs: int = 3
    per_batch: int = 10
    concurrency: int = 4

    def _graded(self, task: Task, side: str) -> tuple[AgentReply, int]:
        reply = (self.stable if side == "stable" else self.canary).ask(task.input)
        return reply, int(reply.error is None and self.graders.passes(task, reply.text))

    def batch(self, seed: str) -> Batch:
        drawn = draw_tasks(self.tasks, self.per_batch, seed)
        calls = [(task, side) for task in drawn for _ in range(self.runs) for side in SIDES]
        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            graded = iter(list(pool.map(lambda call: self._graded(*call), calls)))
        results = []
        errors = {"stable": 0, "canary": 0}
        for task in drawn:
            passes: dict[str, list[int]] = {"stable": [], "canary": []}
            replies: dict[str, list[AgentReply]] = {"stable": [], "canary": []}
            for _ in range(self.runs):
                for side in SIDES:
                    reply, passed = next(graded)
                    replies[side].append(reply)
                    errors[side] += reply.error is not None
                    passes[side].append(passed)
            results.append(TaskResult(
                id=task.id, stable=passes["stable"], canary=passes["canary"],
                ms=(_mean_ms(replies["stable"]), _mean_ms(replies["canary"])),
                tokens=(_tokens(replies["stable"]), _tokens(replies["canary"])),
            ))
        return Batch(tasks=results, errors=errors, seed=seed)


def _mean_ms(replies: list[AgentReply]) -> float:
    return sum(r.latency_ms for r in replies) / len(replies) if replies else 0.0


def _tokens(replies: list[AgentReply]) -> float | None:
    """Tokens of the task's runs summed, when the endpoint reported them for every run."""
    counts = [r.tokens for r in replies]
    if not counts or any(c is None for c in counts):
        return None
    return float(sum(c for c in counts if c is not None))
