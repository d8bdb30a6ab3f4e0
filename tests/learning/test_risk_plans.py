"""Plans that follow a change's risk, end to end: a real git repository, a real ``rollwise`` process.

The repository's history teaches the learner that big changes touching migrations get fixed later
and one-line doc edits do not; ``rollout start --repo`` then gives a risky change the careful lane
and a trivial one the fast lane, and ``rollwise explain`` says why for both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rollwise.learning.plan import CAREFUL, FAST, STANDARD, RiskThresholds, adapt_plan, describe
from rollwise.spec.models import CanaryStep

DAY = 86400


def git(repo: Path, *args: str, when: int = 0) -> str:
    stamp = f"@{1_700_000_000 + when} +0000"
    env = {**os.environ, "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp, "GIT_AUTHOR_NAME": "dev",
           "GIT_AUTHOR_EMAIL": "dev@example.org", "GIT_COMMITTER_NAME": "dev", "GIT_COMMITTER_EMAIL": "dev@example.org"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env).stdout


def commit(repo: Path, files: dict[str, str], message: str, when: int) -> None:
    for name, text in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message, when=when)


def big(seed: int, lines: int = 120) -> str:
    return "".join(f"line {seed} {i}\n" for i in range(lines))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 rounds: a risky change (big, migration plus code) later fixed, and two harmless doc edits."""
    path = tmp_path_factory.mktemp("repo")
    git(path, "init", "-q", "-b", "main")
    when = 0
    for i in range(40):
        when += DAY
        commit(path, {f"db/migrations/{i:03d}_change.sql": big(i), f"app/module{i % 5}.py": big(i + 100)},
               f"add schema change {i}", when)
        commit(path, {"docs/notes.md": f"note {i}\n"}, f"docs: note {i}", when + 3600)
        commit(path, {"README.md": f"readme {i}\n"}, f"readme touch {i}", when + 5400)
        commit(path, {f"app/module{i % 5}.py": big(i + 100, 118)}, f"fix crash in module {i % 5}", when + 7200)
    git(path, "tag", "base")
    commit(path, {"db/migrations/999_big.sql": big(999, 400), "app/module1.py": big(1, 300),
                  "app/module2.py": big(2, 250), "settings.yaml": "x: 1\n"}, "rework the schema", when + 2 * DAY)
    git(path, "tag", "risky")
    commit(path, {"README.md": "readme final\n"}, "readme wording", when + 3 * DAY)
    git(path, "tag", "trivial")
    return path


SPEC = """
name: {name}
service: shop
versions:
  stable: {{name: v1, address: 127.0.0.1:9001}}
  canary: {{name: v2, address: 127.0.0.1:9002}}
traffic: {{router: none}}
metrics: {{source: simulated}}
strategy:
  canary:
    analysis:
      adaptive: {{risk: true}}
      metrics: [{{name: errors, type: errorRate}}]
    steps:
      - setWeight: 20
      - pause: {{duration: 60s}}
      - setWeight: 50
      - pause: {{duration: 60s}}
      - setWeight: 80
      - pause: {{duration: 60s}}
"""


def rollwise(folder: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLWISE_")}
    env["HOME"] = str(folder / "home")
    env["ROLLWISE_STORE"] = f"sqlite:///{folder / 'store.db'}"
    return subprocess.run([sys.executable, "-m", "rollwise", *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=folder, env=env)


def start(folder: Path, repo: Path, name: str, since: str, until: str) -> subprocess.CompletedProcess[str]:
    spec = folder / f"{name}.yaml"
    spec.write_text(SPEC.format(name=name))
    return rollwise(folder, "rollout", "start", spec, "--no-wait", "--repo", repo, "--from", since, "--to", until)


def test_risky_change_gets_the_careful_plan_and_a_trivial_one_the_fast_lane(repo: Path, tmp_path: Path) -> None:
    risky = start(tmp_path, repo, "risky", "base", "risky")
    assert risky.returncode == 0, risky.stderr
    trivial = start(tmp_path, repo, "trivial", "risky", "trivial")
    assert trivial.returncode == 0, trivial.stderr

    explained = rollwise(tmp_path, "explain", "risky")
    assert explained.returncode == 0, explained.stderr
    careful = " ".join(explained.stdout.split())  # the console wraps long lines
    assert "Plan: careful lane" in careful and "a person approves after the 20% stage" in careful, careful
    assert "Drivers:" in careful and "base..risky" in careful
    fast = " ".join(rollwise(tmp_path, "explain", "trivial").stdout.split())
    assert "Plan: fast lane" in fast and "skips setWeight 50" in fast, fast
    assert "now: setWeight 20 → pause 30s → setWeight 80 → pause 30s" in fast

    history = rollwise(tmp_path, "history", "risky", "--output", "json")
    assert history.returncode == 0, history.stderr
    plan = next(e for e in json.loads(history.stdout) if e["type"] == "plan")["data"]["evidence"]["plan"]
    assert plan["stepsAfter"][:2] == ["setWeight 5", "pause 120s"] and plan["runs"] == 2
    assert plan["score"] >= 0.6 and plan["applied"] is True and plan["features"]["migrations"] == 1


def test_risk_score_prints_score_drivers_and_plan(repo: Path, tmp_path: Path) -> None:
    done = rollwise(tmp_path, "risk", "score", "--repo", repo, "--from", "base", "--to", "risky", "--output", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["lane"] == CAREFUL and report["score"] >= 0.6
    assert report["features"]["migrations"] == 1 and report["factors"]
    low = json.loads(rollwise(tmp_path, "risk", "score", "--repo", repo, "--from", "risky", "--to", "trivial",
                              "--output", "json").stdout)
    assert low["lane"] == FAST and low["score"] < 0.25
    bad = rollwise(tmp_path, "risk", "score", "--repo", repo, "--from", "nope", "--to", "risky")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "nope" in bad.stderr


STEPS = [CanaryStep.model_validate(s) for s in (
    {"setWeight": 20}, {"pause": {"duration": 60}}, {"setWeight": 50}, {"pause": {"untilApproved": True}},
    {"setWeight": 80}, {"pause": {"duration": 60}},
)]


def test_adaptation_is_a_pure_function_of_steps_score_and_thresholds() -> None:
    careful = adapt_plan(STEPS, 0.9, RiskThresholds(0.6, 0.2))
    assert careful.lane == CAREFUL and careful.runs == 2
    assert [describe(s) for s in careful.steps] == [
        "setWeight 5", "pause 120s", "setWeight 20", "pause until approved", "pause 120s", "setWeight 50",
        "pause until approved", "setWeight 80", "pause 120s"]
    fast = adapt_plan(STEPS, 0.1, RiskThresholds(0.6, 0.2))
    assert fast.lane == FAST
    # The person's approval gate stays; the 50 % step goes; bakes are halved.
    assert [describe(s) for s in fast.steps] == ["setWeight 20", "pause 30s", "pause until approved", "setWeight 80",
                                                 "pause 30s"]
    middle = adapt_plan(STEPS, 0.4, RiskThresholds(0.6, 0.2))
    assert middle.lane == STANDARD and middle.steps == STEPS and "as written" in middle.reason
    assert adapt_plan(STEPS, 0.9, RiskThresholds(0.6, 0.2)) == careful  # same input, same plan


def test_the_plan_changes_only_when_the_spec_asks_and_the_score_is_always_recorded() -> None:
    from rollwise.learning.plan import plan_for
    from rollwise.learning.risk import RiskAssessment
    from rollwise.spec import load_spec_text

    risky = RiskAssessment(0.9, {"migrations": 1.0, "age": float("nan")}, [("migrations", 1.2)], 100, 10)
    asked = load_spec_text(SPEC.format(name="a"))
    fitted, evidence = plan_for(asked, risky, {"repo": "r", "from": "a", "to": "b"})
    assert evidence.applied and evidence.lane == CAREFUL and evidence.features == {"migrations": 1.0, "age": None}
    assert fitted.strategy.canary is not None and fitted.strategy.canary.steps[0].setWeight == 5
    assert fitted.strategy.canary.analysis is not None and fitted.strategy.canary.analysis.runs == 2
    plain = load_spec_text(SPEC.format(name="b").replace("adaptive: {risk: true}", "adaptive: true"))
    kept, evidence = plan_for(plain, risky, {})
    assert kept == plain and not evidence.applied and evidence.lane == CAREFUL
    assert "analysis.adaptive.risk is not set" in evidence.reason


def test_start_with_a_bad_change_is_one_line_exit_2(repo: Path, tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC.format(name="s"))
    alone = rollwise(tmp_path, "rollout", "start", spec, "--no-wait", "--repo", repo)
    assert alone.returncode == 2 and alone.stderr.strip() == "error: --repo, --from and --to go together"
    bad = rollwise(tmp_path, "rollout", "start", spec, "--no-wait", "--repo", repo, "--from", "nope", "--to", "risky")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "nope" in bad.stderr
    empty = rollwise(tmp_path, "rollout", "start", spec, "--no-wait", "--repo", repo, "--from", "risky",
                     "--to", "risky")
    assert empty.returncode == 2 and "no commits in the range" in empty.stderr
