"""Commits from a git repository through the plain ``git`` command (no library: one ``git log``
with ``--numstat`` gives every number the features need, and git is already where the code is)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from rollwise.learning.features import Commit, FileChange

RECORD, FIELD = "\x1e", "\x1f"
FORMAT = f"--format={RECORD}%H{FIELD}%ae{FIELD}%at{FIELD}%B{FIELD}"


class RepositoryError(ValueError):
    """One line: the repository or revision cannot be read."""


@dataclass(frozen=True)
class GitRepository:
    path: Path
    timeout_s: float = 120.0

    def history(self, until: str) -> list[Commit]:
        return self._log(until)

    def between(self, since: str, until: str) -> list[Commit]:
        return self._log(f"{since}..{until}")

    def resolve(self, rev: str) -> str:
        return self._git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").strip()

    def _log(self, revisions: str) -> list[Commit]:
        for rev in revisions.split(".."):
            self.resolve(rev)
        text = self._git("log", "--reverse", "--no-merges", "--no-renames", "--numstat", FORMAT, revisions, "--")
        return [commit for record in text.split(RECORD)[1:] if (commit := _commit(record)) is not None]

    def _git(self, *args: str) -> str:
        if not (self.path / ".git").exists() and not (self.path / "HEAD").exists():
            raise RepositoryError(f"--repo: {self.path} is not a git repository")
        try:
            done = subprocess.run(["git", "-C", str(self.path), *args], capture_output=True, timeout=self.timeout_s,
                                  check=False)
        except FileNotFoundError:
            raise RepositoryError("git is not installed") from None
        except subprocess.TimeoutExpired:
            raise RepositoryError(f"git {args[0]} took longer than {self.timeout_s:.0f}s") from None
        if done.returncode != 0:
            detail = done.stderr.decode("utf-8", "replace").strip().splitlines()
            what = args[-1] if args[0] == "rev-parse" else " ".join(args[:1])
            raise RepositoryError(f"git {what}: {detail[-1] if detail else 'unknown revision'}")
        return done.stdout.decode("utf-8", "replace")


def _commit(record: str) -> Commit | None:
    parts = record.split(FIELD)
    if len(parts) < 5:
        return None
    sha, author, at, message, stats = parts[0], parts[1], parts[2], parts[3], parts[4]
    files = []
    for line in stats.strip().splitlines():
        added, deleted, path = [*line.split("\t", 2), "", "", ""][:3]
        if path:
            files.append(FileChange(path, int(added) if added.isdigit() else 0,
                                    int(deleted) if deleted.isdigit() else 0))
    return Commit(sha.strip(), author.lower(), float(at), message.strip(), tuple(files))
