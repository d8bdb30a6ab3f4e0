"""The ``command`` grader's runner: a program of the operator's, the answer on stdin, exit 0 passes.

The command comes from the rollout spec (over the API only with ``serve --allow-commands``); the task
reaches it as environment variables (``ROLLWISE_TASK_INPUT``, ``ROLLWISE_TASK_EXPECTED``), never as
shell text, so a task cannot inject a command. A grader that hangs is stopped and fails the run.
"""

from __future__ import annotations

import os
import shlex
import subprocess


class SubprocessRunner:
    def __init__(self, timeout: float = 30.0):
        self.timeout = timeout

    def passes(self, command: str, task_input: str, expected: str, answer: str) -> bool:
        env = {**os.environ, "ROLLWISE_TASK_INPUT": task_input, "ROLLWISE_TASK_EXPECTED": expected}
        try:
            done = subprocess.run(shlex.split(command), input=answer, text=True, env=env, capture_output=True,
                                  timeout=self.timeout, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return done.returncode == 0
