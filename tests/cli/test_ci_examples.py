"""The example pipelines in examples/ci/ (issue 17, part 4): they pass yamllint, and every ``rollwise``
command they run parses against this CLI (command names, options and their values), so an example
cannot drift from the CLI it documents."""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.main import get_command

from rollwise.cli.main import app
from support.common import EXAMPLES

CI = EXAMPLES / "ci"
PIPELINES = sorted(CI.glob("*.yml"))


def test_the_examples_pass_yamllint() -> None:
    assert PIPELINES, "no example pipelines"
    result = subprocess.run([sys.executable, "-m", "yamllint", "--strict", "-c", str(CI / ".yamllint.yaml"),
                             *map(str, PIPELINES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def shell_snippets(node: Any) -> Iterator[str]:
    """Every shell text a pipeline runs: GitHub's ``run:`` and GitLab's ``script:`` entries."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "run" and isinstance(value, str):
                yield value
            elif key in ("script", "before_script", "after_script") and isinstance(value, list):
                yield from (v for v in value if isinstance(v, str))
            else:
                yield from shell_snippets(value)
    elif isinstance(node, list):
        for item in node:
            yield from shell_snippets(item)


def rollwise_commands(text: str) -> list[list[str]]:
    joined = text.replace("\\\n", " ")
    return [shlex.split(line.strip())[1:] for line in joined.splitlines() if line.strip().startswith("rollwise ")]


def parse(args: list[str]) -> Any:
    """Parse ``rollwise ARGS`` as click would run it, without running it; raises on anything unknown."""
    command: Any = get_command(app)
    context: Any = None
    rest, name = list(args), "rollwise"
    while True:
        context = command.make_context(name, rest, parent=context)
        if not hasattr(command, "commands"):
            return command
        rest = [*getattr(context, "_protected_args", []), *context.args]
        sub = command.get_command(context, rest[0])
        assert sub is not None, f"rollwise has no command {rest[0]!r}"
        command, name, rest = sub, rest[0], rest[1:]


@pytest.mark.parametrize("pipeline", PIPELINES, ids=lambda p: p.name)
def test_every_rollwise_command_in_an_example_exists(pipeline: Path) -> None:
    commands = [c for s in shell_snippets(yaml.safe_load(pipeline.read_text())) for c in rollwise_commands(s)]
    assert any(c[:2] == ["rollout", "start"] and "--junit" in c and "--timeout" in c for c in commands), commands
    for args in commands:
        parse(args)


def test_the_checker_refuses_what_the_cli_does_not_have() -> None:
    with pytest.raises(Exception, match="--bogus"):
        parse(["rollout", "start", "x.yaml", "--bogus"])
    with pytest.raises(AssertionError, match="strt"):
        parse(["rollout", "strt", "x.yaml"])
