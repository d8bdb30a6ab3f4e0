"""``rollwise changes`` and ``rollwise incidents`` as users run them: subprocesses on a SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

from rollwise.adapters.stores.sql import SqlStore
from rollwise.adapters.stores.sql_audit import SqlAuditLog
from rollwise.adapters.stores.sql_watch import SqlWatchStore
from rollwise.watch.incidents import Incident
from support.cli import rollwise


def test_record_then_list_shows_the_change_and_audits_it(tmp_path: Path) -> None:
    made = rollwise(tmp_path, "changes", "record", "--service", "web", "--kind", "deploy", "--version", "v7",
                    "--region", "eu", "--description", "hotfix for login", "--actor", "ana", "-o", "json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["id"] == "c1"
    listed = rollwise(tmp_path, "changes", "list", "--service", "web", "--since", "1h", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    (change,) = json.loads(listed.stdout)
    assert (change["kind"], change["version"], change["region"], change["actor"]) == ("deploy", "v7", "eu", "ana")
    assert rollwise(tmp_path, "changes", "list", "--service", "db", "-o", "json").stdout.strip() == "[]"
    with SqlStore(f"sqlite:///{tmp_path / 'r.db'}") as store:
        (row,) = [e for e in SqlAuditLog(store).entries() if e.action == "change.record"]
    assert row.actor == "ana" and row.role == "local" and row.target == "service:web"


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    for args, field in [(("--service", "web", "--kind", "reboot"), "--kind"),
                        (("--service", "web", "--kind", "deploy"), "--version"),
                        (("--service", "", "--kind", "config"), "--service")]:
        result = rollwise(tmp_path, "changes", "record", *args)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith(f"error: {field}"), result.stderr
    result = rollwise(tmp_path, "changes", "list", "--since", "yesterday")
    assert result.returncode == 2 and "--since" in result.stderr and "Traceback" not in result.stderr


def test_rollout_steps_appear_in_the_log(tmp_path: Path, examples_dir: Path) -> None:
    assert rollwise(tmp_path, "rollout", "start", str(examples_dir / "canary.yaml"), "--no-wait").returncode == 0
    assert rollwise(tmp_path, "controller", "--once").returncode == 0
    listed = json.loads(rollwise(tmp_path, "changes", "list", "-o", "json").stdout)
    assert [c["kind"] for c in listed][:2] == ["rollout-start", "rollout-step"]
    assert listed[0]["version"] == "v2" and listed[0]["source"] == "rollwise"


def test_incidents_list_and_show(tmp_path: Path) -> None:
    with SqlStore(f"sqlite:///{tmp_path / 'r.db'}") as store:
        SqlWatchStore(store).open_incident(Incident(
            service="web", opened_at=1000.0, onset=960.0, metric="error_rate",
            culprit={"id": "c4", "kind": "deploy", "service": "web", "version": "v7", "at": 900.0},
            attribution={"confidence": 0.91, "reason": "deploy v7 60s before onset", "onset": None}))
    listed = rollwise(tmp_path, "incidents", "list")
    assert listed.returncode == 0 and "#1" in listed.stdout and "c4" in listed.stdout
    shown = rollwise(tmp_path, "incidents", "show", "1")
    assert shown.returncode == 0 and "version v7" in shown.stdout and "confidence 0.91" in shown.stdout
    missing = rollwise(tmp_path, "incidents", "show", "7")
    assert missing.returncode == 1 and missing.stderr.strip() == "error: no incident #7"
