"""The agent endpoints against a real local HTTP server (both protocols), and the command runner."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from rollwise.adapters.agents.command import SubprocessRunner
from rollwise.adapters.agents.json_post import JsonPostEndpoint
from rollwise.adapters.agents.openai_chat import OpenAIChatEndpoint
from rollwise.local_processes import free_port
from support.fake_agent import start_in_thread  # type: ignore[import-not-found]


@pytest.fixture
def agent() -> Iterator[str]:
    server: ThreadingHTTPServer = start_in_thread(rate=1.0)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_json_post_reads_the_answer_and_tokens(agent: str) -> None:
    endpoint = JsonPostEndpoint(f"{agent}/answer")
    reply = endpoint.ask("What is 2+3?")
    assert (reply.text, reply.tokens, reply.error) == ("5", 7, None)
    assert reply.latency_ms > 0
    endpoint.close()


def test_openai_chat_reads_the_message_and_usage(agent: str) -> None:
    endpoint = OpenAIChatEndpoint(f"{agent}/v1/chat/completions", model="agent-v2")
    reply = endpoint.ask("what is 10 + 4")
    assert (reply.text, reply.tokens, reply.error) == ("14", 7, None)
    endpoint.close()


@pytest.mark.parametrize("make", [
    lambda url: JsonPostEndpoint(url), lambda url: OpenAIChatEndpoint(url),
])
def test_an_agent_failure_is_a_failed_run_not_an_exception(agent: str, make) -> None:  # type: ignore[no-untyped-def]
    assert make(f"{agent}/broken").ask("x").error == "HTTP 500"
    assert make(f"{agent}/answer-nowhere").ask("x").error == "HTTP 404"
    refused = make(f"http://127.0.0.1:{free_port()}/answer").ask("x")
    assert refused.error is not None and refused.text == ""


def test_both_protocols_send_the_configured_headers(agent: str) -> None:
    # the fake agent echoes x-eval in its output on /echo-header (JSON POST shape)
    assert JsonPostEndpoint(f"{agent}/echo-header", headers={"x-eval": "canary"}).ask("x").text == "canary"
    assert JsonPostEndpoint(f"{agent}/echo-header").ask("x").text == ""


def test_wrong_answer_shapes_are_named(agent: str) -> None:
    assert "no result.text" in (JsonPostEndpoint(f"{agent}/answer", output_field="result.text").ask("x").error or "")
    # the chat server's answer has no top-level "output": the JSON POST adapter says what it missed
    assert "no output" in (JsonPostEndpoint(f"{agent}/v1/chat/completions").ask("x").error or "")
    assert "choices" in (OpenAIChatEndpoint(f"{agent}/answer").ask("x").error or "")


def test_command_runner_passes_on_exit_zero_with_the_answer_on_stdin(tmp_path: Path) -> None:
    script = tmp_path / "grade.py"
    script.write_text("import os, sys\n"
                      "sys.exit(0 if sys.stdin.read().strip() == os.environ['ROLLWISE_TASK_EXPECTED'] else 1)\n")
    runner = SubprocessRunner(timeout=20)
    command = f"{sys.executable} {script}"
    assert runner.passes(command, "2+2?", "4", "4\n")
    assert not runner.passes(command, "2+2?", "4", "5")
    assert not runner.passes("/nonexistent/grader", "x", "y", "z")
    hang = tmp_path / "hang.py"
    hang.write_text("import time; time.sleep(30)\n")
    assert not SubprocessRunner(timeout=0.5).passes(f"{sys.executable} {hang}", "x", "y", "z")
