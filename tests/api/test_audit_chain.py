"""`rollwise audit verify` catches a row edited, removed or reordered straight in the database.

The database refuses UPDATE/DELETE on audit_log (triggers), so each test first drops those
triggers, as someone with full database access would, then tampers with plain SQL.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest
from sqlalchemy import create_engine, text

from rollwise.adapters.stores.sql import SqlStore
from rollwise.adapters.stores.sql_audit import SqlAuditLog

Tamper = Callable[[object], None]


def verify(store_url: str) -> subprocess.CompletedProcess[str]:
    """The real command in a child process, exactly as an operator runs it."""
    return subprocess.run([sys.executable, "-m", "rollwise.cli.main", "audit", "verify", "--store", store_url],
                          capture_output=True, text=True, timeout=60)


def verify_in_process(store_url: str) -> subprocess.CompletedProcess[str]:
    """The same command through typer's runner: no interpreter start-up per case."""
    from typer.testing import CliRunner

    from rollwise.cli.main import app

    result = CliRunner().invoke(app, ["audit", "verify", "--store", store_url])
    return subprocess.CompletedProcess([], result.exit_code, result.stdout, result.stderr)


def seed(store_url: str, rows: int = 5) -> None:
    with SqlStore(store_url) as store:
        log = SqlAuditLog(store)
        for i in range(rows):
            log.append(actor=f"user{i}", role="releaser", action="rollout.promote", target="checkout",
                       before={"phase": "Progressing", "canary_weight": 10.0 * i},
                       after={"phase": "Progressing", "canary_weight": 10.0 * (i + 1)}, reason=f"step {i}")


def tamper_sql(store_url: str, *statements: str) -> None:
    engine = create_engine(store_url)
    try:
        with engine.begin() as conn:
            for trigger in ("audit_log_no_update", "audit_log_no_delete"):
                conn.execute(text(f"DROP TRIGGER IF EXISTS {trigger}"))
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


def test_intact_chain_verifies(store_url: str) -> None:
    seed(store_url)
    result = verify(store_url)
    assert result.returncode == 0, result.stderr
    assert "intact: 5 row(s)" in result.stdout


def test_verify_command_exits_non_zero_after_an_edit(store_url: str) -> None:
    seed(store_url)
    tamper_sql(store_url, "UPDATE audit_log SET before = NULL WHERE id = 1")
    result = verify(store_url)
    assert result.returncode == 1
    assert "audit row id=1" in " ".join(result.stderr.split())


def test_database_refuses_edits_without_dropping_triggers(store_url: str) -> None:
    seed(store_url, 1)
    engine = create_engine(store_url)
    try:
        with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
            conn.execute(text("UPDATE audit_log SET actor = 'mallory'"))
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("statements", "bad_id", "words"),
    [
        (["UPDATE audit_log SET reason = 'nothing to see' WHERE id = 3"], 3, "edited"),
        (["UPDATE audit_log SET after = json_set(after, '$.canary_weight', 100.0) WHERE id = 2"], 2, "edited"),
        (["UPDATE audit_log SET actor = 'someone-else' WHERE id = 5"], 5, "edited"),
        (["DELETE FROM audit_log WHERE id = 2"], 3, "removed"),
        # Swap rows 2 and 4 (through a free id, since ids are unique).
        (["UPDATE audit_log SET id = 100 WHERE id = 2", "UPDATE audit_log SET id = 2 WHERE id = 4",
          "UPDATE audit_log SET id = 4 WHERE id = 100"], 2, "reordered"),
    ],
    ids=["edit-reason", "edit-after-json", "edit-last-row", "remove", "reorder"],
)
def test_verify_names_the_first_bad_row(store_url: str, statements: list[str], bad_id: int, words: str) -> None:
    seed(store_url)
    tamper_sql(store_url, *statements)
    result = verify_in_process(store_url)
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert f"audit row id={bad_id}" in message
    assert words in message


def test_verify_over_the_api_reports_the_same(store_url: str) -> None:
    import asyncio

    import httpx

    from rollwise.api import create_app

    seed(store_url)
    tamper_sql(store_url, "UPDATE audit_log SET target = 'other' WHERE id = 4")
    transport = httpx.ASGITransport(app=create_app(store_url), client=("127.0.0.1", 50000))

    async def call() -> dict[str, object]:
        async with httpx.AsyncClient(transport=transport, base_url="http://rollwise") as client:
            return (await client.get("/api/v1/audit/verify")).json()  # type: ignore[no-any-return]

    body = asyncio.run(call())
    assert body["ok"] is False and body["first_bad_row"] == 4 and body["rows"] == 4
