"""``rollwise experiments`` as users run it: a real process on a local store and flag file."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from support.api import FLAGS
from support.experiments import SPEC, events, exposures, write_jsonl


def rollwise(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLWISE_")}
    env.update(HOME=str(tmp_path), ROLLWISE_STORE=f"sqlite:///{tmp_path / 'rollwise.db'}", ROLLWISE_ACTOR="ana")
    return subprocess.run([sys.executable, "-m", "rollwise", "experiments", *args], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)


def test_create_push_show_check_kills_the_flag(tmp_path: Path) -> None:
    spec = tmp_path / "exp.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    flags = tmp_path / "flags.json"
    flags.write_text(json.dumps(FLAGS))
    assert rollwise(tmp_path, "create", "-f", str(spec)).returncode == 0
    again = rollwise(tmp_path, "create", "-f", str(spec))
    assert again.returncode == 1 and again.stderr.strip() == "error: an experiment named 'checkout-v2' exists already"
    pushed = rollwise(tmp_path, "push-exposures", "checkout-v2", str(write_jsonl(tmp_path / "x.jsonl",
                                                                                  exposures(4_000))))
    assert pushed.stdout.strip() == "4000 exposures recorded (4000 new subjects)"
    assert rollwise(tmp_path, "push-events", str(write_jsonl(tmp_path / "e.jsonl", events(4_000)))
                    ).returncode == 0

    shown = json.loads(rollwise(tmp_path, "show", "checkout-v2", "-o", "json").stdout)
    assert shown["readout"]["counts"] == {"off": 2000, "on": 2000}
    assert shown["readout"]["decision"] == "stop"
    rows = list(csv.DictReader(io.StringIO(rollwise(tmp_path, "show", "checkout-v2", "-o", "csv").stdout)))
    assert {(r["metric"], r["breach"]) for r in rows} == {("purchase", "False"), ("revenue_per_session", "False"),
                                                          ("errors", "True")}

    checked = rollwise(tmp_path, "check", "checkout-v2", "--flags", str(flags))
    assert checked.returncode == 0 and "guardrail errors breached by on" in checked.stdout
    assert "new-checkout" in json.loads(flags.read_text())["$rollwise"]["killed"]
    listed = rollwise(tmp_path, "list").stdout
    assert listed.startswith("checkout-v2\tstopped\tflag new-checkout")
    report = tmp_path / "r.html"
    assert rollwise(tmp_path, "report", "checkout-v2", "-o", str(report)).returncode == 0
    assert "<svg" in report.read_text() and "guardrail errors breached" in report.read_text()

    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLWISE_")}
    audit = subprocess.run([sys.executable, "-m", "rollwise", "audit", "list", "--output", "json",
                            "--store", f"sqlite:///{tmp_path / 'rollwise.db'}"], capture_output=True, text=True,
                           env={**env, "HOME": str(tmp_path)}, timeout=60)
    actions = [row["action"] for row in json.loads(audit.stdout)]
    assert "experiment.create" in actions and "experiment.guardrail" in actions


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**SPEC, "variants": ["only"]}))
    result = rollwise(tmp_path, "create", "-f", str(bad))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("error: variants:")
    events_file = tmp_path / "e.jsonl"
    events_file.write_text('{"subject": "u1", "event": "buy"}\n{"subject": "u\\t2", "event": "buy"}\n')
    result = rollwise(tmp_path, "push-events", str(events_file))
    assert (result.returncode, result.stderr.strip()) == (2, "error: events[1].subject: 1-255 characters, no tab, "
                                                             "newline or backslash")
    events_file.write_text('{"subject": "u1", "event": "buy"}\nnot json\n')
    result = rollwise(tmp_path, "push-events", str(events_file))
    assert result.returncode == 2 and result.stderr.strip().startswith(f"error: {events_file}:2: not JSON")
    missing = rollwise(tmp_path, "show", "nope")
    assert (missing.returncode, missing.stderr.strip()) == (1, "error: no experiment named 'nope'")
    assert "Traceback" not in missing.stderr + result.stderr
