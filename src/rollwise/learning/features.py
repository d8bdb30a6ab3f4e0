"""Change features from a repository's history, and SZZ-lite outcomes for warming the learner.

Pure: commits arrive as values (``adapters/repos/git.py`` reads them). Features follow Kamei et
al.'s just-in-time defect prediction (size, spread, purpose, history, experience) plus what a
release engineer fears: migrations, configuration and dependency files. Each commit's features
use only the commits before it.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Protocol

DAY = 86400.0
FIX_WORDS = re.compile(r"\b(fix(e[sd])?|bugs?|defects?|hotfix|patch(ed)?|revert(s|ed)?|regression|broke|crash)\b",
                       re.IGNORECASE)
REVERTS = re.compile(r"This reverts commit ([0-9a-f]{7,40})", re.IGNORECASE)
MIGRATION = re.compile(r"(^|/)(migrations?|alembic|db/migrate|schema)(/|\.)|\.sql$", re.IGNORECASE)
CONFIG = re.compile(r"\.(ya?ml|toml|ini|cfg|conf|json|env|properties)$|(^|/)(config|settings)[^/]*$|Dockerfile",
                    re.IGNORECASE)
DEPENDENCY = re.compile(r"(^|/)(pyproject\.toml|requirements[^/]*\.txt|setup\.(py|cfg)|poetry\.lock|uv\.lock|"
                        r"package(-lock)?\.json|yarn\.lock|go\.(mod|sum)|Cargo\.(toml|lock)|Gemfile(\.lock)?|pom\.xml)$")
FEATURES = ("la", "ld", "lt", "nf", "nd", "ns", "entropy", "fix", "ndev", "age", "nuc", "exp", "rexp", "sexp",
            "migrations", "config", "dependencies")
RECENT = 90 * DAY
SZZ_WINDOW = 365 * DAY


@dataclass(frozen=True)
class FileChange:
    path: str
    added: int
    deleted: int


@dataclass(frozen=True)
class Commit:
    sha: str
    author: str
    time: float
    message: str
    files: tuple[FileChange, ...]


class ChangeSource(Protocol):
    """Where commits come from (``adapters/repos/git.GitRepository``)."""

    def history(self, until: str) -> list[Commit]:
        """Commits reachable from ``until``, oldest first (no merges)."""
        ...

    def between(self, since: str, until: str) -> list[Commit]:
        """Commits in ``since..until``, oldest first (no merges)."""
        ...


def squash(commits: list[Commit]) -> Commit:
    """A range of commits as one change: lines summed per file, the last commit's author and time."""
    if not commits:
        raise ValueError("the range holds no commits")
    per_file: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for commit in commits:
        for change in commit.files:
            per_file[change.path][0] += change.added
            per_file[change.path][1] += change.deleted
    last = commits[-1]
    return Commit(last.sha, last.author, last.time, "\n".join(c.message for c in commits),
                  tuple(FileChange(p, a, d) for p, (a, d) in per_file.items()))


@dataclass
class History:
    """What is known about the repository before the next commit."""

    size: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    last_change: dict[str, float] = field(default_factory=dict)
    authors_of: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    changes_of: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    commits_by: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    subsystem_commits: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))

    def features(self, commit: Commit) -> dict[str, float]:
        paths = [f.path for f in commit.files]
        churn = [f.added + f.deleted for f in commit.files]
        total = sum(churn)
        entropy = abs(-sum(c / total * math.log2(c / total) for c in churn if c)) if total else 0.0
        ages = [(commit.time - self.last_change[p]) / DAY for p in paths if p in self.last_change]
        subsystems = {_subsystem(p) for p in paths}
        mine = self.commits_by[commit.author]
        return {
            "la": float(sum(f.added for f in commit.files)), "ld": float(sum(f.deleted for f in commit.files)),
            "lt": float(sum(self.size[p] for p in paths)), "nf": float(len(paths)),
            "nd": float(len({p.rpartition("/")[0] for p in paths})), "ns": float(len(subsystems)),
            "entropy": entropy, "fix": float(bool(FIX_WORDS.search(commit.message))),
            "ndev": float(len(set[str]().union(*(self.authors_of[p] for p in paths)))),
            "age": sum(ages) / len(ages) if ages else math.nan,
            "nuc": float(sum(self.changes_of[p] for p in paths)), "exp": float(len(mine)),
            "rexp": float(len(mine) - bisect.bisect_left(mine, commit.time - RECENT)),
            "sexp": float(sum(self.subsystem_commits[(commit.author, s)] for s in subsystems)),
            "migrations": float(any(MIGRATION.search(p) for p in paths)),
            "config": float(any(CONFIG.search(p) for p in paths)),
            "dependencies": float(any(DEPENDENCY.search(p) for p in paths)),
        }

    def learn(self, commit: Commit) -> None:
        for change in commit.files:
            self.size[change.path] = max(0, self.size[change.path] + change.added - change.deleted)
            self.last_change[change.path] = commit.time
            self.authors_of[change.path].add(commit.author)
            self.changes_of[change.path] += 1
        bisect.insort(self.commits_by[commit.author], commit.time)  # sorted: rexp is a binary search
        for subsystem in {_subsystem(f.path) for f in commit.files}:
            self.subsystem_commits[(commit.author, subsystem)] += 1


def _subsystem(path: str) -> str:
    return path.split("/", 1)[0] if "/" in path else "(root)"


def history_features(commits: list[Commit]) -> tuple[History, list[dict[str, float]]]:
    """Each commit's features from the commits before it, and the history after the last."""
    history = History()
    rows = []
    for commit in commits:
        rows.append(history.features(commit))
        history.learn(commit)
    return history, rows


def szz_lite(commits: list[Commit]) -> list[int]:
    """1 for a commit later reverted ("This reverts commit X") or, for each file a later fixing commit
    touched within a year, the last earlier commit that changed that file: SZZ without blame."""
    index = {c.sha: i for i, c in enumerate(commits)}
    labels = [0] * len(commits)
    last_touch: dict[str, int] = {}
    for i, commit in enumerate(commits):
        for reverted in REVERTS.findall(commit.message):
            hit = next((j for sha, j in index.items() if sha.startswith(reverted) and j < i), None)
            if hit is not None:
                labels[hit] = 1
        if FIX_WORDS.search(commit.message):
            for change in commit.files:
                j = last_touch.get(change.path)
                if j is not None and commit.time - commits[j].time <= SZZ_WINDOW:
                    labels[j] = 1
        for change in commit.files:
            last_touch[change.path] = i
    return labels
