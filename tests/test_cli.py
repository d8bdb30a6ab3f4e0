"""The CLI as users run it: a real ``rollwise`` process per command, against a SQLite store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests_support import broken_canary  # type: ignore[import-not-found]

REPO = Path(__file__).resolve().parent.parent


def rollwise(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "rollwise", *args], capture_output=True, text=True,
                            timeout=120, cwd=REPO)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_validate_examples_ok() -> None:
    files = sorted(str(p) for p in (REPO / "examples").glob("*.yaml"))
    assert rollwise("validate", *files).returncode == 0


def test_validate_names_every_mistake_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "canary.yaml"
    bad.write_text(broken_canary((REPO / "examples" / "canary.yaml").read_text()))
    result = rollwise("validate", str(bad))
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 3
    source = bad.read_text().splitlines()
    for line, needle in zip(lines, ("setWieght", "150", "parsecs"), strict=True):
        file, number, path, _ = line.split(":", 3)
        assert file == str(bad)
        assert needle in source[int(number) - 1], line
        assert path.strip().startswith("strategy.canary.steps.")


def test_schema_is_json_schema() -> None:
    schema = json.loads(rollwise("schema", "rollout", check=True).stdout)
    assert schema["title"] == "RolloutSpec"
    assert {"name", "service", "versions", "strategy"} <= set(schema["required"])


def test_simulate_bad_canary_rolls_back_with_evidence() -> None:
    out = rollwise("simulate", "examples/canary.yaml", "--canary-error-rate", "0.05", "--output", "json", check=True)
    result = json.loads(out.stdout)
    assert result["name"] == "checkout"
    assert result["phase"] == "RolledBack"
    rollback = [d for d in result["decisions"] if d["action"] == "rollback"]
    assert rollback, result["decisions"]
    evidence = rollback[-1]["evidence"]
    assert evidence["culprit"] == "error-rate"
    culprit = next(m for m in evidence["metrics"] if m["metric"] == "error-rate")
    assert culprit["canary"] and culprit["statistic"] is not None
    assert result["canary_bad_requests"] <= result["canary_requests"]
    assert {"duration_s", "steps"} <= set(result)


def test_simulate_good_canary_climbs_to_100() -> None:
    out = rollwise("simulate", "examples/canary.yaml", "--canary-error-rate", "0", "--output", "json", check=True)
    result = json.loads(out.stdout)
    assert result["phase"] == "Succeeded"
    assert [s["weight"] for s in result["steps"]] == [5, 10, 25, 50, 100]
    times = [s["at_s"] for s in result["steps"]]
    assert times == sorted(times)


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def _plain_spec(tmp_path: Path) -> Path:
    spec = tmp_path / "plain.yaml"
    spec.write_text((REPO / "examples" / "canary.yaml").read_text().replace("router: envoy", "router: none")
                    .replace("source: envoy", "source: simulated"))
    return spec


def test_rollout_controls_and_history(tmp_path: Path, store: str) -> None:
    spec = _plain_spec(tmp_path)
    started = json.loads(rollwise("rollout", "start", str(spec), "--no-wait", "--store", store, "-o", "json",
                                  check=True).stdout)
    assert started["phase"] == "Pending"
    assert rollwise("rollout", "resume", "checkout", "--store", store).returncode == 1  # not paused
    paused = json.loads(rollwise("rollout", "pause", "checkout", "--store", store, "--actor", "ann", "-r", "freeze",
                                 "-o", "json", check=True).stdout)
    assert paused["phase"] == "Paused"
    listed = json.loads(rollwise("rollout", "list", "--store", store, "-o", "json", check=True).stdout)
    assert [r["name"] for r in listed] == ["checkout"]
    aborted = json.loads(rollwise("rollout", "abort", "checkout", "--store", store, "-o", "json", check=True).stdout)
    assert aborted["phase"] == "Aborted" and aborted["canary_weight"] == 0
    history = json.loads(rollwise("history", "checkout", "--store", store, "-o", "json", check=True).stdout)
    commands = [e for e in history if e["type"] == "command"]
    assert commands[0]["actor"] == "ann" and "freeze" in commands[0]["message"]
    assert [e["seq"] for e in history] == list(range(1, len(history) + 1))


def test_invalid_update_is_rejected_whole(tmp_path: Path, store: str) -> None:
    spec = _plain_spec(tmp_path)
    rollwise("rollout", "start", str(spec), "--no-wait", "--store", store, check=True)
    before = json.loads(rollwise("rollout", "status", "checkout", "--store", store, "-o", "json", check=True).stdout)
    bad = tmp_path / "bad.yaml"
    bad.write_text(broken_canary(spec.read_text()))
    result = rollwise("rollout", "update", "checkout", str(bad), "--store", store)
    assert result.returncode == 2
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 3
    after = json.loads(rollwise("rollout", "status", "checkout", "--store", store, "-o", "json", check=True).stdout)
    assert after == before
    history = json.loads(rollwise("history", "checkout", "--store", store, "-o", "json", check=True).stdout)
    assert not [e for e in history if e["type"] == "spec-updated"]


def test_help_loads_no_heavy_library() -> None:
    """`rollwise --help` must answer at once: no web framework, database layer, SciPy or pydantic models."""
    probe = ("import sys, io, contextlib\nsys.argv = ['rollwise', '--help']\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             "    try:\n        from rollwise.cli.main import main\n        main()\n"
             "    except SystemExit:\n        pass\n"
             "heavy = ('fastapi', 'starlette', 'sqlalchemy', 'alembic', 'numpy', 'scipy', 'pydantic', 'yaml', 'httpx',"
             " 'rich.live', 'uvicorn', 'rollwise.core.model', 'rollwise.flags.definitions')\n"
             "print(','.join(m for m in heavy if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
    assert "flags" in rollwise("--help", check=True).stdout  # the lazily mounted group is still listed
    assert "validate" in rollwise("flags", "--help", check=True).stdout
