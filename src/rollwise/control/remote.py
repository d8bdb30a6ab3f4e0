"""``RemoteControl``: rollouts on a running ``rollwise serve``, over HTTP with a token.

Same calls, summaries and one-line failures as ``LocalControl``, but the server's store, roles and
audit log: the CLI's ``--server URL`` (or ``ROLLWISE_SERVER``) mode.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rollwise.control.client import ApiError, ControlPlaneClient
from rollwise.control.protocol import ENDED, ChangeRef, ControlFailure, Summary, read_spec_file

EventPrinter = Callable[[str, dict[str, Any]], None]
"""Shows one event of a followed rollout: ``(rollout name, event JSON)``."""


class RemoteControl:
    local = False
    missing_note = ""

    def __init__(self, server: str, token: str | None, on_event: EventPrinter, poll_s: float = 1.0) -> None:
        self.title = f"rollwise @ {server}"
        self.client = ControlPlaneClient(server, token)
        self.on_event = on_event
        self.poll_s = poll_s

    def start(self, file: Path, actor: str, commit_time: str | None, change: ChangeRef | None = None,
              force: bool = False) -> Summary:
        if change is not None:
            raise ControlFailure("error: --repo scores the change against a local store; not with --server",
                                 exit_code=2)
        text = read_spec_file(file)
        with _failures():
            return self.client.start(text, source=str(file), commit_time=commit_time, force=force)

    def follow(self, name: str, output: str, max_seconds: float | None, until_paused: bool = False) -> Summary:
        """Print the server's events for ``name`` until it ends (or time runs out, or with
        ``until_paused`` it waits for a person)."""
        started = time.monotonic()
        seen = 0
        with _failures():
            while True:
                summary: Summary = self.client.status(name)
                for event in self.client.events(name, seen):
                    seen = event["seq"]
                    if output != "json":
                        self.on_event(name, event)
                if summary["phase"] in ENDED or (until_paused and summary["phase"] == "Paused"):
                    return summary
                if max_seconds is not None and time.monotonic() - started >= max_seconds:
                    return summary
                time.sleep(self.poll_s)

    def status(self, name: str) -> Summary:
        with _failures(name):
            summary = self.client.status(name)
        summary.pop("spec", None)
        summary.pop("route", None)
        return summary

    def list(self, active: bool) -> list[Summary]:
        with _failures():
            return self.client.list(active)

    def command(self, name: str, command: str, actor: str, reason: str, full: bool = False) -> Summary:
        with _failures(name):
            return self.client.command(name, command, reason=reason, full=full)

    def update(self, name: str, file: Path, actor: str, reason: str) -> Summary:
        text = read_spec_file(file)
        try:
            return self.client.update(name, text, source=str(file), reason=reason)
        except ApiError as exc:
            if exc.status == 409:
                raise ControlFailure(f"error: {exc.message}", exit_code=2) from None
            raise _failure(exc, name) from None

    def events(self, name: str | None) -> builtins.list[dict[str, Any]]:
        with _failures(name):
            return self.client.events(name)

    def close(self) -> None:
        self.client.close()


@contextmanager
def _failures(not_found: str | None = None) -> Iterator[None]:
    try:
        yield
    except ApiError as exc:
        raise _failure(exc, not_found) from None


def _failure(exc: ApiError, not_found: str | None = None) -> ControlFailure:
    """An API error as local mode words it: spec problems exit 2, the rest one ``error:`` line and exit 1."""
    if exc.problems:
        return ControlFailure(*exc.problems, exit_code=2)
    if exc.status == 404 and not_found:
        return ControlFailure(f"error: no rollout named {not_found!r}")
    return ControlFailure(f"error: {exc.message}" + (f" (HTTP {exc.status})" if exc.status else ""))
