"""What the evaluation runner needs from the outside world: an agent to ask, a command to run.

An agent version is an HTTP endpoint (``adapters/agents/openai_chat.py``, ``adapters/agents/json_post.py``);
a ``command`` grader runs a program the operator allowed (``adapters/agents/command.py``). ``wiring.py``
builds them from the spec; the runner and the graders only see these protocols.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class AgentReply:
    """One answer of an agent: its text, how long it took, and the tokens it reported (if it did).

    ``error`` is set when no answer came (refused, timed out, unreadable): the run counts as failed.
    """

    text: str
    latency_ms: float
    tokens: int | None = None
    error: str | None = None


@runtime_checkable
class AgentEndpoint(Protocol):
    def ask(self, prompt: str) -> AgentReply:
        """Send one task's input to the agent and return its answer (never raises for the agent's faults)."""
        ...


class CommandRunner(Protocol):
    def passes(self, command: str, task_input: str, expected: str, answer: str) -> bool:
        """Run ``command`` with the answer on stdin; exit status 0 means the answer passes."""
        ...
