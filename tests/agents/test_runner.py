"""An evaluation batch: k runs per task on both versions, calls in flight together, results in task order."""

from __future__ import annotations

import threading
import time

from rollwise.agents.graders import Graders
from rollwise.agents.protocols import AgentReply
from rollwise.agents.runner import EvaluationRunner
from rollwise.agents.suite import parse_suite


class Agent:
    """Answers ``expected`` for the tasks it knows, fails the others; counts calls in flight."""

    def __init__(self, knows: set[str], broken: bool = False):
        self.knows, self.broken = knows, broken
        self.in_flight = self.most_in_flight = 0
        self.lock = threading.Lock()

    def ask(self, prompt: str) -> AgentReply:
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        time.sleep(0.02)
        with self.lock:
            self.in_flight -= 1
        if self.broken:
            return AgentReply("", 20.0, error="HTTP 500")
        return AgentReply(prompt.upper() if prompt in self.knows else "?", 20.0, tokens=3)


def test_batches_keep_task_order_and_count_failures_under_concurrency() -> None:
    tasks = parse_suite("\n".join(f'{{"id": "{w}", "input": "{w}", "expected": "{w.upper()}"}}'
                                  for w in ("ab", "cd", "ef", "gh")))
    stable, canary = Agent({"ab", "cd", "ef", "gh"}), Agent({"ab", "cd"})
    runner = EvaluationRunner(tasks=tasks, graders=Graders(), stable=stable, canary=canary, runs=3, per_batch=12,
                              concurrency=6)
    batch = runner.batch("seed-1")
    assert [t.id for t in batch.tasks] == [t.id for t in EvaluationRunner(
        tasks=tasks, graders=Graders(), stable=stable, canary=canary, runs=3, per_batch=12, concurrency=1,
    ).batch("seed-1").tasks]
    for task in batch.tasks:
        assert task.stable == [1, 1, 1]
        assert task.canary == ([1, 1, 1] if task.id in ("ab", "cd") else [0, 0, 0])
        assert task.tokens == (9.0, 9.0) and task.ms == (20.0, 20.0)
    assert stable.most_in_flight > 1
    broken = EvaluationRunner(tasks=tasks, graders=Graders(), stable=stable, canary=Agent(set(), broken=True),
                              runs=2, per_batch=5).batch("seed-2")
    assert broken.errors == {"stable": 0, "canary": 10}
    assert all(t.canary == [0, 0] and t.tokens[1] is None for t in broken.tasks)
