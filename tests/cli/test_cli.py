"""The CLI as users run it: a real ``rollwise`` process per command, against a SQLite store."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from support.common import (
    REPO,
    broken_canary,  # type: ignore[import-not-found]
)


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


def _file_spec(tmp_path: Path, name: str = "shop") -> Path:
    spec = tmp_path / f"{name}.yaml"
    spec.write_text("\n".join([
        f"name: {name}", f"service: {name}", "versions:", "  stable: {name: v1, address: 127.0.0.1:9001}",
        "  canary: {name: v2, address: 127.0.0.1:9002}", f"traffic: {{router: file, path: '{tmp_path / 'r.json'}'}}",
        "metrics: {source: simulated}", "strategy:", "  canary:", "    steps:", "      - setWeight: 20",
        "      - pause: {untilApproved: true}", ""]))
    return spec


def rollwise_home(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLWISE_")}
    return subprocess.run([sys.executable, "-m", "rollwise", *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO, env={**env, "HOME": str(home)})


def test_default_store_is_private_and_status_shows_readable_times(tmp_path: Path) -> None:
    home = tmp_path / "home"
    started = rollwise_home(home, "rollout", "start", str(_file_spec(tmp_path)), "--no-wait")
    assert started.returncode == 0, started.stderr
    folder = home / ".rollwise"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for file in folder.glob("rollwise.db*"):  # the database and its -wal/-shm files
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    status = rollwise_home(home, "rollout", "status", "shop").stdout
    created = next(line for line in status.splitlines() if "created_at" in line)
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \((just now|\d+\w+ ago)\)", created), created
    assert not re.search(r"\b1\d{9}\.\d", status)  # no epoch floats in text output
    as_json = json.loads(rollwise_home(home, "rollout", "status", "shop", "-o", "json").stdout)
    assert isinstance(as_json["created_at"], float)  # JSON keeps numbers, like the API


def test_reusing_a_name_keeps_each_runs_history_and_report_apart(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'r.db'}"
    spec = str(_file_spec(tmp_path))
    for reason in ("first-run-reason", "second-run-reason"):
        assert rollwise("rollout", "start", spec, "--no-wait", "--store", store, check=True)
        assert rollwise("rollout", "abort", "shop", "-r", reason, "--store", store, check=True)
    latest = json.loads(rollwise("history", "shop", "--store", store, "-o", "json", check=True).stdout)
    first = json.loads(rollwise("history", "shop", "--run", "1", "--store", store, "-o", "json", check=True).stdout)
    assert latest[0]["type"] == first[0]["type"] == "created"
    assert latest[0]["seq"] > first[-1]["seq"]
    assert "second-run-reason" in json.dumps(latest) and "first-run-reason" not in json.dumps(latest)
    assert "first-run-reason" in json.dumps(first) and "second-run-reason" not in json.dumps(first)
    report = rollwise("report", "shop", "--store", store, check=True).stdout
    assert "second-run-reason" in report and "first-run-reason" not in report
    beyond = rollwise("history", "shop", "--run", "3", "--store", store)
    assert beyond.returncode == 1 and "run(s) 1..2" in beyond.stderr


def test_dash_o_is_the_output_format_in_every_command(tmp_path: Path) -> None:
    store = str(tmp_path / "r.db")
    rollwise("tokens", "create", "--role", "viewer", "--name", "ci", "--store", store, check=True)
    assert json.loads(rollwise("tokens", "list", "-o", "json", "--store", store, check=True).stdout)[0]["name"] == "ci"
    assert json.loads(rollwise("audit", "verify", "-o", "json", "--store", store, check=True).stdout)["ok"] is True
    assert json.loads(rollwise("audit", "list", "-o", "json", "--store", store, check=True).stdout)
    refused = rollwise("report", "nothing", "-o", "out.html", "--store", store)
    assert refused.returncode == 2 and "--out out.html" in refused.stderr  # -o is no longer a file
