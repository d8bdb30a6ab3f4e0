"""``rollwise watch`` alone, ``rollwise watch policy``, and a release held while its service has an open incident."""

from __future__ import annotations

import json
from pathlib import Path

from rollwise.adapters.stores.sql import SqlStore
from rollwise.adapters.stores.sql_audit import SqlAuditLog
from rollwise.adapters.stores.sql_watch import SqlWatchStore
from rollwise.watch.incidents import Incident
from support.cli import rollwise
from support.specs import SHOP

SPEC = SHOP + """
  canary:
    steps:
      - setWeight: 20
watch: {actions: [notify, undo], minConfidence: 0.7, flags: [checkout]}
"""


def test_watch_policy_and_a_single_pass(tmp_path: Path) -> None:
    (tmp_path / "shop.yaml").write_text(SPEC)
    assert rollwise(tmp_path, "rollout", "start", "shop.yaml", "--no-wait").returncode == 0
    shown = rollwise(tmp_path, "watch", "policy", "shop")
    assert shown.returncode == 0, shown.stderr
    policy = json.loads(shown.stdout)["watch"]
    assert policy["actions"] == ["notify", "undo"] and policy["minConfidence"] == 0.7
    assert rollwise(tmp_path, "watch", "policy", "nope").returncode == 1
    once = rollwise(tmp_path, "watch", "--once")
    assert once.returncode == 0, once.stderr


def test_a_release_is_held_while_an_incident_is_open_and_force_is_audited(tmp_path: Path) -> None:
    (tmp_path / "shop.yaml").write_text(SPEC)
    with SqlStore(f"sqlite:///{tmp_path / 'r.db'}") as store:
        SqlWatchStore(store).open_incident(Incident(service="shop", opened_at=1000.0, onset=960.0,
                                                    metric="errorRate"))
    held = rollwise(tmp_path, "rollout", "start", "shop.yaml", "--no-wait")
    assert held.returncode != 0 and held.stderr.startswith("error: held: service shop has open incident #1")
    assert held.stderr.count("\n") == 1
    forced = rollwise(tmp_path, "rollout", "start", "shop.yaml", "--no-wait", "--force")
    assert forced.returncode == 0, forced.stderr
    with SqlStore(f"sqlite:///{tmp_path / 'r.db'}") as store:
        rows = SqlAuditLog(store).entries()
    assert [r.action for r in rows if r.action.startswith("rollout.start")] == ["rollout.start.held",
                                                                               "rollout.start"]
    assert rows[-1].after["forced_over"][0]["incident"] == 1
