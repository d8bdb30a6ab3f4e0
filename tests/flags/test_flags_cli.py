"""`rollwise flags ...` commands via typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from rollwise.flags.cli import flags_app

runner = CliRunner()

DOC = {
    "flags": {
        "beta": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
            "targeting": {"if": [{"ends_with": [{"var": "email"}, "@corp.example"]}, "on"]},
        },
        "price": {"state": "ENABLED", "variants": {"a": 1.5, "b": 2.0}, "defaultVariant": "a"},
    }
}


def write(tmp_path: Path, doc: object = DOC) -> Path:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(doc))
    return path


def test_validate_ok_and_every_problem_with_exit_2(tmp_path: Path) -> None:
    ok = runner.invoke(flags_app, ["validate", str(write(tmp_path))])
    assert ok.exit_code == 0 and "2 flags valid" in ok.output
    bad = write(tmp_path, {"flags": {"a": {"state": "ON", "variants": {"x": 1}, "defaultVariant": "y"}, "b": {}}})
    result = runner.invoke(flags_app, ["validate", str(bad)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 4
    assert any(ln.startswith(f"{bad}:1: flags.a.state: ") for ln in lines)
    assert any(ln.startswith(f"{bad}:1: flags.a.defaultVariant: ") for ln in lines)
    assert sum("flags.b." in ln for ln in lines) == 2


def test_rule_problems_are_errors_unless_lenient(tmp_path: Path) -> None:
    doc = {"flags": {"x": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a", "targeting": {"nope": []}}}}
    path = write(tmp_path, doc)
    lenient = runner.invoke(flags_app, ["validate", "--lenient", str(path)])
    assert lenient.exit_code == 0 and "warning:" in lenient.output and "unknown operator 'nope'" in lenient.output
    strict = runner.invoke(flags_app, ["validate", str(path)])
    assert strict.exit_code == 2 and "flags.x.targeting.nope: unknown operator 'nope'" in strict.output
    assert runner.invoke(flags_app, ["validate", "--strict", str(path)]).exit_code == 2


def test_eval_text_and_json(tmp_path: Path) -> None:
    path = write(tmp_path)
    text = runner.invoke(flags_app, ["eval", str(path), "beta", "--context", '{"email": "a@corp.example"}'])
    assert text.exit_code == 0
    assert text.output.splitlines() == ["value: true", "variant: on", "reason: TARGETING_MATCH"]
    out = runner.invoke(flags_app, ["eval", str(path), "price", "--output", "json"])
    body = json.loads(out.output)
    assert (body["value"], body["variant"], body["reason"]) == (1.5, "a", "STATIC")
    assert runner.invoke(flags_app, ["eval", str(path), "ghost"]).exit_code == 1
    assert runner.invoke(flags_app, ["eval", str(path), "beta", "--context", "[1]"]).exit_code == 2


def test_kill_restore_schedule_list_history(tmp_path: Path) -> None:
    path = write(tmp_path)
    kill = runner.invoke(flags_app, ["kill", "beta", "--file", str(path), "--reason", "bad", "--actor", "ana"])
    assert kill.exit_code == 0 and "version 1: kill beta by ana (bad)" in kill.output
    assert json.loads(path.read_text())["flags"]["beta"]["targeting"] == {}
    again = runner.invoke(flags_app, ["kill", "beta", "--file", str(path), "--reason", "x", "--actor", "ana"])
    assert again.exit_code == 1 and "already killed" in again.output
    listing = runner.invoke(flags_app, ["list", "--file", str(path)])
    assert "beta\tENABLED\tboolean\tdefault=off KILLED" in listing.output
    restore = runner.invoke(flags_app, ["restore", "beta", "--file", str(path), "--reason", "ok", "--actor", "bo"])
    assert restore.exit_code == 0
    sched = runner.invoke(
        flags_app,
        [
            *("schedule", "beta", "--file", str(path), "--at", "2031-03-06T09:00:00Z", "--set-percent", "50"),
            *("--reason", "half on Thursday", "--actor", "pm"),
        ],
    )
    assert sched.exit_code == 0, sched.output
    neither = runner.invoke(
        flags_app, ["schedule", "beta", "--file", str(path), "--at", "2031-03-06T09:00:00Z", "--reason", "r"]
    )
    assert neither.exit_code == 2
    listed = json.loads(runner.invoke(flags_app, ["list", "--file", str(path), "--output", "json"]).output)
    assert listed["version"] == 3
    assert [(s["flag"], s["action"], s["percent"], s["at"]) for s in listed["schedules"]] == [
        ("beta", "set-percent", 50.0, "2031-03-06T09:00:00Z")
    ]
    history = runner.invoke(flags_app, ["history", "--file", str(path)])
    rows = [ln.split("\t") for ln in history.output.strip().splitlines()]
    assert [(r[0], r[2], r[3], r[5]) for r in rows] == [
        ("v1", "ana", "kill", "bad"),
        ("v2", "bo", "restore", "ok"),
        ("v3", "pm", "schedule", "half on Thursday"),
    ]


def test_output_yaml_is_real_yaml_and_unknown_formats_are_refused(tmp_path: Path) -> None:
    """`--output`/`-o` takes text, json or yaml on every flags command that prints data (issue 11, item 11)."""
    import subprocess
    import sys

    import yaml

    path = write(tmp_path)
    runner.invoke(flags_app, ["kill", "beta", "--file", str(path), "--reason", "bad", "--actor", "ana"])
    for args in (["list", "--file", str(path)], ["history", "--file", str(path)],
                 ["eval", str(path), "beta"]):
        as_json = json.loads(runner.invoke(flags_app, [*args, "--output", "json"]).output)
        as_yaml = runner.invoke(flags_app, [*args, "-o", "yaml"])
        assert as_yaml.exit_code == 0 and yaml.safe_load(as_yaml.output) == as_json
        assert not as_yaml.output.lstrip().startswith("{")
    proc = subprocess.run([sys.executable, "-m", "rollwise", "flags", "list", "--file", str(path), "-o", "xml"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "'xml' is not one of" in proc.stderr and proc.stdout == ""
