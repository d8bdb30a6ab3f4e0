"""An evaluation suite: JSONL, one task a line (input, expected, and a grader or the suite's default).

    {"id": "add", "input": "17+25?", "expected": "42"}
    {"input": "capital of France?", "expected": "paris", "grader": "regex"}
    {"input": "reply with JSON", "grader": {"kind": "jsonSchema", "schema": {"type": "object"}}}
    {"input": "write a haiku", "expected": "a haiku about rain", "grader": "llmJudge"}

A task may name a grader kind but never a command: the command of a ``command`` grader comes from the
rollout spec only, where the operator's policy (``serve --allow-commands``) sees it. Parsing is pure
(text in, tasks out); a bad line is refused with its number and the field.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

GraderKind = Literal["exact", "regex", "jsonSchema", "command", "llmJudge"]
GRADER_KINDS: tuple[str, ...] = ("exact", "regex", "jsonSchema", "command", "llmJudge")


class SuiteError(ValueError):
    """A suite that cannot be used; the message names the line and the field."""


class TaskGrader(BaseModel):
    """How one task's answer is graded; fields beyond ``kind`` refine it (a pattern, a schema)."""

    model_config = ConfigDict(extra="forbid")

    kind: GraderKind
    pattern: str | None = Field(default=None, description="regex: searched in the answer (default: expected).")
    schema_: dict[str, Any] | None = Field(default=None, alias="schema",
                                           description="jsonSchema: the schema (default: expected).")
    ignoreCase: bool = True


class Task(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str
    input: str = Field(min_length=1)
    expected: Any = None
    grader: TaskGrader | None = None

    @model_validator(mode="after")
    def _grader_needs(self) -> Task:
        grader = self.grader
        if grader is None:
            return self
        if grader.kind == "regex":
            pattern = grader.pattern if grader.pattern is not None else self.expected
            if not isinstance(pattern, str):
                raise ValueError("a regex grader needs a pattern (or a string expected)")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"grader.pattern is not a regular expression: {exc}") from None
        if grader.kind == "jsonSchema" and not isinstance(grader.schema_ or self.expected, dict):
            raise ValueError("a jsonSchema grader needs a schema (or an object expected)")
        return self


def parse_task(raw: Any, line: int) -> Task:
    """One decoded JSONL line as a task; its id defaults to the line number."""
    if not isinstance(raw, dict):
        raise SuiteError(f"line {line}: a task must be a JSON object")
    data = dict(raw)
    data.setdefault("id", f"line-{line}")
    data["id"] = str(data["id"])
    if isinstance(data.get("grader"), str):
        data["grader"] = {"kind": data["grader"]}
    try:
        return Task.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "task"
        raise SuiteError(f"line {line}: {where}: {first['msg']}") from None


def parse_suite(text: str, source: str = "suite") -> list[Task]:
    """Every task of a JSONL suite; blank lines and ``#`` comments are skipped. Refuses duplicate ids."""
    tasks: list[Task] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            raw = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise SuiteError(f"{source} line {number}: not JSON ({exc.msg})") from None
        try:
            task = parse_task(raw, number)
        except SuiteError as exc:
            raise SuiteError(f"{source} {exc}") from None
        if task.id in seen:
            raise SuiteError(f"{source} line {number}: id {task.id!r} is used twice")
        seen.add(task.id)
        tasks.append(task)
    if not tasks:
        raise SuiteError(f"{source}: no tasks")
    return tasks
