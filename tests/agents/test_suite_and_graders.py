"""The JSONL suite and the graders (the command and LLM-judge graders through their protocols)."""

from __future__ import annotations

import pytest

from rollwise.agents.graders import Graders
from rollwise.agents.protocols import AgentReply
from rollwise.agents.suite import SuiteError, parse_suite


def test_suite_parses_tasks_with_default_ids_and_grader_shorthand() -> None:
    tasks = parse_suite('{"input": "2+2?", "expected": "4"}\n\n# comment\n'
                        '{"id": "re", "input": "name a colour", "expected": "blue|red", "grader": "regex"}\n')
    assert [t.id for t in tasks] == ["line-1", "re"]
    assert tasks[1].grader is not None and tasks[1].grader.kind == "regex"


@pytest.mark.parametrize(("text", "message"), [
    ("not json\n", "suite.jsonl line 1: not JSON"),
    ('{"input": "x"}\n[1]\n', "suite.jsonl line 2: a task must be a JSON object"),
    ('{"input": ""}\n', "suite.jsonl line 1: input:"),
    ('{"input": "x", "grader": "shell"}\n', "suite.jsonl line 1: grader.kind:"),
    ('{"input": "x", "grader": {"kind": "regex", "pattern": "("}}\n', "not a regular expression"),
    ('{"input": "x", "grader": "jsonSchema"}\n', "needs a schema"),
    ('{"id": 1, "input": "x"}\n{"id": "1", "input": "y"}\n', "line 2: id '1' is used twice"),
    ("\n", "no tasks"),
    ('{"input": "x", "command": "rm -rf /"}\n', "line 1: command: Extra inputs"),
])
def test_bad_suites_are_refused_naming_the_line(text: str, message: str) -> None:
    with pytest.raises(SuiteError, match=None) as caught:
        parse_suite(text, "suite.jsonl")
    assert message in str(caught.value)


def _task(line: str):  # type: ignore[no-untyped-def]
    return parse_suite(line)[0]


def test_exact_regex_and_json_schema_graders() -> None:
    graders = Graders()
    exact = _task('{"input": "capital?", "expected": "Paris"}')
    assert graders.passes(exact, "  paris. ")
    assert not graders.passes(exact, "The capital is Paris")
    as_json = _task('{"input": "json", "expected": {"ok": true}}')
    assert graders.passes(as_json, '{"ok": true}') and not graders.passes(as_json, '{"ok": false}')
    regex = _task('{"input": "c", "expected": "\\\\bparis\\\\b", "grader": "regex"}')
    assert graders.passes(regex, "It is Paris.") and not graders.passes(regex, "Parisian")
    schema = _task('{"input": "j", "grader": {"kind": "jsonSchema", "schema": {"type": "object", '
                   '"required": ["ok"], "properties": {"ok": {"type": "boolean"}}}}}')
    assert graders.passes(schema, 'Sure: {"ok": true} done')
    assert not graders.passes(schema, '{"ok": "yes"}')
    assert not graders.passes(schema, "no json here")


class Recorder:
    def __init__(self, verdict: str):
        self.verdict = verdict
        self.prompts: list[str] = []

    def ask(self, prompt: str) -> AgentReply:
        self.prompts.append(prompt)
        return AgentReply(self.verdict, 1.0)

    def passes(self, command: str, task_input: str, expected: str, answer: str) -> bool:
        self.prompts.append(f"{command}|{task_input}|{expected}|{answer}")
        return answer == expected


def test_llm_judge_and_command_graders_go_through_their_protocols() -> None:
    task = _task('{"input": "haiku about rain", "expected": "a haiku"}')
    judge = Recorder("PASS")
    assert Graders(default="llmJudge", judge=judge).passes(task, "drops on the roof")
    assert "drops on the roof" in judge.prompts[0] and "a haiku" in judge.prompts[0]
    assert not Graders(default="llmJudge", judge=Recorder("FAIL, wrong form")).passes(task, "x")
    runner = Recorder("")
    graders = Graders(default="command", command="check", runner=runner)
    assert graders.passes(task, "a haiku") and not graders.passes(task, "prose")
    assert runner.prompts[0] == "check|haiku about rain|a haiku|a haiku"


def test_a_suite_naming_a_grader_the_evaluation_cannot_run_is_refused() -> None:
    tasks = parse_suite('{"id": "t", "input": "x", "grader": "command"}')
    with pytest.raises(ValueError, match="task 't': the command grader needs"):
        Graders().check(tasks)
