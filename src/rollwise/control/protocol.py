"""``RolloutControl``: the one interface the CLI drives rollouts through, here or on a server.

The two implementations answer the same calls with the same summaries (JSON-ready dicts) and fail
the same way: ``ControlFailure`` carries the lines to print (each one line, as a person reads it)
and the exit code, so the CLI prints them and exits without knowing where the rollout lives.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from rollwise.spec.models import RolloutSpec

Summary = dict[str, Any]
ENDED = ("Succeeded", "RolledBack", "Aborted")


@dataclass(frozen=True)
class ChangeRef:
    """The change a rollout ships: a repository and the revisions ``since..until`` (rollout start --repo)."""

    repo: str
    since: str
    until: str


class ControlFailure(Exception):
    """A control call that did not happen: what to tell the person (one line each) and the exit code."""

    def __init__(self, *lines: str, exit_code: int = 1) -> None:
        super().__init__(lines[0] if lines else "")
        self.lines = lines
        self.exit_code = exit_code


class RolloutControl(Protocol):
    """Start, steer and read rollouts. Every write is audited under the caller's name and role."""

    title: str  # what a rollout table is titled: where the rollouts live
    local: bool  # True: this machine's store (the live view can show each rollout's latest event)

    @property
    def missing_note(self) -> str:
        """`` (why)`` when the store read does not exist, so an empty answer says why; else nothing."""
        ...

    def start(self, file: Path, actor: str, commit_time: str | None, change: ChangeRef | None = None,
              force: bool = False) -> Summary:
        """Create a rollout; ``change`` (a repository range) is scored and may reshape the plan; held
        (``ControlFailure``) while its service has an open incident, unless ``force``."""
        ...

    def follow(self, name: str, output: str, max_seconds: float | None, until_paused: bool = False) -> Summary:
        """Until the rollout ends (or ``max_seconds``, or with ``until_paused`` until it waits for a
        person): drive it here, or watch the server drive it."""
        ...

    def status(self, name: str) -> Summary: ...

    def list(self, active: bool) -> list[Summary]: ...

    def command(self, name: str, command: str, actor: str, reason: str, full: bool = False) -> Summary: ...

    def update(self, name: str, file: Path, actor: str, reason: str) -> Summary: ...

    def events(self, name: str | None) -> builtins.list[dict[str, Any]]:
        """Every event of ``name`` (all rollouts if None), oldest first, as JSON dicts."""
        ...

    def close(self) -> None: ...


@contextmanager
def _spec_problems() -> Iterator[None]:
    """A spec that cannot be read or is invalid: every problem as ``FILE:LINE: path: message``, exit 2."""
    from rollwise.spec import SpecError

    try:
        yield
    except SpecError as exc:
        raise ControlFailure(*(str(p) for p in exc.problems), exit_code=2) from None


def load_spec_file(path: Path) -> RolloutSpec:
    """The validated spec in ``path``, or ``ControlFailure`` (exit 2) listing every problem."""
    from rollwise.spec import load_spec

    with _spec_problems():
        return load_spec(path)


def read_spec_file(path: Path) -> str:
    """The text of ``path`` for a server to validate, or ``ControlFailure`` (unreadable, not UTF-8, huge)."""
    from rollwise.spec.loader import read_spec_text

    with _spec_problems():
        return read_spec_text(path)
