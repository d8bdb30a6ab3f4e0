"""The audit chain is keyed (HMAC with a key outside the database) and anchored (an exported head).

Each tamper here is what someone with full database access but without the audit key can do:
drop the append-only triggers, edit rows, and recompute the (unkeyed) SHA-256 chain so that it
holds again, or cut rows off the end. Every check runs the real ``rollwise audit`` command in a
child process, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, delete, insert, select, text, update

from rollwise.adapters.stores.sql import SqlStore, audit_log_table
from rollwise.adapters.stores.sql_audit import SqlAuditLog, normalise, row_hash
from support.api import file_spec
from support.pg import postgres_schema


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'rollwise.db'}"
        return
    with postgres_schema(request.getfixturevalue("postgres_url")) as url:
        yield url


def rollwise(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rollwise", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def seed(store_url: str, rows: int = 5) -> None:
    with SqlStore(store_url) as store:
        log = SqlAuditLog(store)
        for i in range(rows):
            log.append(actor=f"user{i}", role="releaser", action="rollout.promote", target="checkout",
                       before={"canary_weight": 10.0 * i}, after={"canary_weight": 10.0 * (i + 1)}, reason=f"step {i}")


def _rows(conn: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(select(audit_log_table).order_by(audit_log_table.c.id)).mappings()]


def _drop_triggers(conn: Any) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log"))
    else:
        for trigger in ("audit_log_no_update", "audit_log_no_delete"):
            conn.execute(text(f"DROP TRIGGER IF EXISTS {trigger}"))


def rewrite_with_unkeyed_chain(store_url: str, from_id: int, reason: str, to_id: int | None = None) -> None:
    """Edit row ``from_id`` and recompute the plain SHA-256 chain from there on, as an attacker could."""
    engine = create_engine(store_url)
    try:
        with engine.begin() as conn:
            _drop_triggers(conn)
            rows = _rows(conn)
            prev = next((r["hash"] for r in reversed(rows) if r["id"] < from_id), "")
            for row in rows:
                if row["id"] < from_id or (to_id is not None and row["id"] > to_id):
                    continue
                if row["id"] == from_id:
                    row["reason"] = reason
                digest = row_hash(prev, row)  # no key: all the attacker can compute
                conn.execute(update(audit_log_table).where(audit_log_table.c.id == row["id"])
                             .values(reason=row["reason"], prev_hash=prev, hash=digest))
                prev = digest
    finally:
        engine.dispose()


def cut_off_after(store_url: str, last_kept_id: int) -> None:
    engine = create_engine(store_url)
    try:
        with engine.begin() as conn:
            _drop_triggers(conn)
            conn.execute(delete(audit_log_table).where(audit_log_table.c.id > last_kept_id))
    finally:
        engine.dispose()


def head_of(store_url: str) -> str:
    result = rollwise("audit", "head", "--store", store_url)
    assert result.returncode == 0, result.stderr
    anchor = result.stdout.strip()
    assert anchor.split(":", 1)[0].isdigit() and ":hmac1:" in anchor, anchor
    return anchor


def test_intact_keyed_chain_verifies_with_and_without_head(any_store_url: str) -> None:
    seed(any_store_url)
    anchor = head_of(any_store_url)
    assert anchor.startswith("5:")
    seed(any_store_url, 2)  # rows appended after the exported head are fine
    plain = rollwise("audit", "verify", "--store", any_store_url)
    assert plain.returncode == 0, plain.stderr
    assert "intact: 7 row(s)" in plain.stdout
    anchored = rollwise("audit", "verify", "--store", any_store_url, "--head", anchor)
    assert anchored.returncode == 0, anchored.stderr
    assert "matches --head" in anchored.stdout


def test_rewritten_row_with_recomputed_chain_fails(any_store_url: str) -> None:
    seed(any_store_url)
    rewrite_with_unkeyed_chain(any_store_url, 3, "nothing to see")
    result = rollwise("audit", "verify", "--store", any_store_url)
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert "audit row id=3" in message and "without the audit key" in message, message


def test_whole_log_rewritten_is_caught_by_the_exported_head(any_store_url: str) -> None:
    seed(any_store_url)
    anchor = head_of(any_store_url)
    rewrite_with_unkeyed_chain(any_store_url, 1, "rewritten from the start")
    # Without the head, a log rewritten from its first row is a valid unkeyed chain: verify says so.
    plain = rollwise("audit", "verify", "--store", any_store_url)
    assert plain.returncode == 0
    assert "5 older row(s) are chained by plain SHA-256 only" in " ".join(plain.stdout.split())
    anchored = rollwise("audit", "verify", "--store", any_store_url, "--head", anchor)
    assert anchored.returncode == 1
    assert "audit row id=5" in anchored.stderr and "differs from the exported head" in " ".join(anchored.stderr.split())


def test_rows_cut_off_the_end_fail_verify_head(any_store_url: str) -> None:
    seed(any_store_url)
    anchor = head_of(any_store_url)
    cut_off_after(any_store_url, 3)
    assert rollwise("audit", "verify", "--store", any_store_url).returncode == 0  # still a valid chain
    result = rollwise("audit", "verify", "--store", any_store_url, "--head", anchor, "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["first_bad_row"] == 5 and report["head_id"] == 3
    assert "cut off" in report["problem"]


def test_another_key_cannot_vouch_for_the_chain(any_store_url: str) -> None:
    seed(any_store_url, 2)
    result = rollwise("audit", "verify", "--store", any_store_url, env={"ROLLWISE_AUDIT_KEY": "x" * 32})
    assert result.returncode == 1
    assert "audit row id=1" in result.stderr and "not the audit key" in " ".join(result.stderr.split())


def test_rows_from_before_the_key_still_verify_and_are_counted(any_store_url: str) -> None:
    engine = create_engine(any_store_url)
    SqlStore(any_store_url).close()  # create the tables
    prev = ""
    try:
        with engine.begin() as conn:
            for i in range(2):  # what an older rollwise wrote: plain sha256, no prefix
                row = {"at": 1000.0 + i, "actor": "old", "role": "admin", "action": "tokens.create",
                       "target": f"token:{i}", "before": None, "after": normalise({"n": i}), "reason": None}
                digest = row_hash(prev, row)
                conn.execute(insert(audit_log_table).values(**row, prev_hash=prev, hash=digest))
                prev = digest
    finally:
        engine.dispose()
    seed(any_store_url, 2)
    result = rollwise("audit", "verify", "--store", any_store_url, "--json")
    assert result.returncode == 0, result.stdout
    report = json.loads(result.stdout)
    assert (report["rows"], report["keyed"], report["unkeyed"]) == (4, 2, 2)
    # An old row edited and the old part of the chain recomputed: the first keyed row's link breaks.
    rewrite_with_unkeyed_chain(any_store_url, 1, "edited", to_id=2)
    broken = rollwise("audit", "verify", "--store", any_store_url)
    assert broken.returncode == 1
    assert "audit row id=3" in broken.stderr and "prev_hash" in broken.stderr


def test_bad_head_argument_is_one_line(store_url: str) -> None:
    result = rollwise("audit", "verify", "--store", store_url, "--head", "nonsense")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: --head:") and "Traceback" not in result.stderr


# --------------------------------------------------------------------------- local CLI writes


def test_local_cli_writes_are_audited_with_actor_and_role(any_store_url: str, tmp_path: Path) -> None:
    spec = tmp_path / "shop.yaml"
    spec.write_text(file_spec("shop", tmp_path / "route.json", pause="1h"))
    key_file = tmp_path / "keys" / "audit.key"
    env = {"ROLLWISE_AUDIT_KEY_FILE": str(key_file)}
    store = ["--store", any_store_url, "--actor", "alice"]
    steps = [
        ("rollout", "start", str(spec), "--no-wait", *store),
        ("rollout", "pause", "shop", "-r", "incident 42", *store),
        ("rollout", "resume", "shop", *store),
        ("rollout", "promote", "shop", "-r", "looks good", *store),
        ("rollout", "update", "shop", str(spec), "-r", "same spec", *store),
        ("rollout", "abort", "shop", "-r", "enough", *store),
    ]
    for args in steps:
        result = rollwise(*args, env=env)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    listed = rollwise("audit", "list", "--json", "--store", any_store_url, env=env)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["action"], r["actor"], r["role"]) for r in rows] == [
        (f"rollout.{name}", "alice", "local") for name in ("start", "pause", "resume", "promote", "update", "abort")]
    assert rows[1]["reason"] == "incident 42" and rows[1]["after"]["phase"] == "Paused"
    assert rows[-1]["after"]["phase"] == "Aborted"
    verified = rollwise("audit", "verify", "--store", any_store_url, env=env)
    assert verified.returncode == 0 and "intact: 6 row(s)" in verified.stdout, verified.stderr


def test_unusable_key_is_one_line_and_writes_nothing(store_url: str) -> None:
    result = rollwise("tokens", "create", "--role", "admin", "--name", "x", "--store", store_url,
                      env={"ROLLWISE_AUDIT_KEY": "short"})
    assert result.returncode == 2
    assert result.stderr.strip() == "error: ROLLWISE_AUDIT_KEY: at least 16 characters"
    listed = rollwise("tokens", "list", "--json", "--store", store_url)
    assert json.loads(listed.stdout) == []


def test_api_head_and_verify_with_head(store_url: str) -> None:
    import asyncio

    import httpx

    from rollwise.api import create_app

    seed(store_url)
    transport = httpx.ASGITransport(app=create_app(store_url), client=("127.0.0.1", 50000))

    async def call() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], int]:
        async with httpx.AsyncClient(transport=transport, base_url="http://rollwise") as client:
            head = (await client.get("/api/v1/audit/head")).json()
            cut_off_after(store_url, 4)
            plain = (await client.get("/api/v1/audit/verify")).json()
            anchored = (await client.get("/api/v1/audit/verify", params={"head": head["anchor"]})).json()
            bad = (await client.get("/api/v1/audit/verify", params={"head": "x"})).status_code
            return head, plain, anchored, bad

    head, plain, anchored, bad = asyncio.run(call())
    assert head["id"] == 5 and head["hash"].startswith("hmac1:")
    assert plain["ok"] is True and plain["keyed"] == 4
    assert anchored["ok"] is False and anchored["first_bad_row"] == 5 and "cut off" in anchored["problem"]
    assert bad == 422
