"""Graders: does an agent's answer pass a task? Exact, regex, JSON Schema, a command, an LLM judge.

The first three are pure functions of the task and the answer. ``command`` and ``llmJudge`` reach out
through ``CommandRunner`` and ``AgentEndpoint`` (the same endpoint protocol the agents use), so the
runner stays free of I/O of its own.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import jsonschema

from rollwise.agents.protocols import AgentEndpoint, CommandRunner
from rollwise.agents.suite import Task, TaskGrader

JUDGE_PROMPT = (
    "You grade an assistant's answer. Reply with PASS if the answer is correct for the task and agrees "
    "with the reference, otherwise FAIL. Reply with one word.\n\nTask: {input}\nReference: {expected}\n"
    "Answer: {answer}\n"
)


def normalize(text: str) -> str:
    """Lower case, single spaces, no surrounding whitespace or final full stop."""
    return " ".join(text.strip().lower().split()).rstrip(".").strip()


def expected_text(expected: Any) -> str:
    return expected if isinstance(expected, str) else json.dumps(expected, sort_keys=True)


def exact(task: Task, answer: str) -> bool:
    """The whole normalized answer equals the expected one; a JSON expected compares parsed."""
    if task.expected is None:
        return False
    if not isinstance(task.expected, str):
        try:
            return bool(json.loads(answer) == task.expected)
        except json.JSONDecodeError:
            return False
    return normalize(answer) == normalize(task.expected)


def regex(task: Task, answer: str, grader: TaskGrader) -> bool:
    pattern = grader.pattern if grader.pattern is not None else task.expected
    flags = re.IGNORECASE if grader.ignoreCase else 0
    return re.search(str(pattern), answer, flags) is not None


def json_schema(task: Task, answer: str, grader: TaskGrader) -> bool:
    """The answer parses as JSON (the first ``{...}`` or ``[...]`` in it) and is valid against the schema."""
    schema = grader.schema_ if grader.schema_ is not None else task.expected
    document = _first_json(answer)
    if document is None:
        return False
    return jsonschema.Draft202012Validator(schema).is_valid(document[0])


def _first_json(answer: str) -> tuple[Any] | None:
    try:
        return (json.loads(answer),)
    except json.JSONDecodeError:
        pass
    decoder = json.JSONDecoder()
    for start, char in enumerate(answer):
        if char in "{[":
            try:
                return (decoder.raw_decode(answer, start)[0],)
            except json.JSONDecodeError:
                continue
    return None


@dataclass
class Graders:
    """Every grader a suite may name, with the spec's default and the outside help some need."""

    default: str = "exact"
    command: str | None = None
    runner: CommandRunner | None = None
    judge: AgentEndpoint | None = None

    def check(self, tasks: list[Task]) -> None:
        """Refuse a suite that names a grader this evaluation cannot run (before any agent is asked)."""
        for task in tasks:
            kind = task.grader.kind if task.grader else self.default
            if kind == "command" and not (self.command and self.runner):
                raise ValueError(f"task {task.id!r}: the command grader needs the evaluation's grader command")
            if kind == "llmJudge" and self.judge is None:
                raise ValueError(f"task {task.id!r}: the llmJudge grader needs the evaluation's judge endpoint")

    def passes(self, task: Task, answer: str) -> bool:
        grader = task.grader or TaskGrader(kind=self.default)  # type: ignore[arg-type]
        kind = grader.kind
        if kind == "exact":
            return exact(task, answer)
        if kind == "regex":
            return regex(task, answer, grader)
        if kind == "jsonSchema":
            return json_schema(task, answer, grader)
        if kind == "command":
            assert self.command is not None and self.runner is not None
            return self.runner.passes(self.command, task.input, expected_text(task.expected), answer)
        assert self.judge is not None
        reply = self.judge.ask(JUDGE_PROMPT.format(input=task.input, expected=expected_text(task.expected),
                                                   answer=answer))
        return reply.error is None and normalize(reply.text).startswith("pass")
