"""Initial schema: rollouts, their events, windows and KPI samples, plus the tables the API uses.

Written out by hand rather than imported from ``sql.py``: a migration is a frozen record of what
the schema was at that revision, whatever the code looks like later.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

APPEND_ONLY = ("events", "audit_log")


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(JSONB(), "postgresql")


def _serial() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "rollouts",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("phase", sa.String(32), nullable=False),
        sa.Column("spec", _json(), nullable=False),
        sa.Column("state", _json(), nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
    )
    op.create_table(
        "events",
        sa.Column("id", _serial(), primary_key=True, autoincrement=True),
        sa.Column("rollout", sa.String(255), sa.ForeignKey("rollouts.name"), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("data", _json(), nullable=False),
        sa.UniqueConstraint("rollout", "seq", name="uq_events_rollout_seq"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "windows",
        sa.Column("id", _serial(), primary_key=True, autoincrement=True),
        sa.Column("rollout", sa.String(255), sa.ForeignKey("rollouts.name"), nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("stage", sa.Integer, nullable=False),
        sa.Column("start", sa.Double, nullable=False),
        sa.Column("end", sa.Double, nullable=False),
        sa.Column("data", _json(), nullable=False),
    )
    op.create_index("ix_windows_rollout_generation_stage", "windows", ["rollout", "generation", "stage"])
    op.create_table(
        "kpi_samples",
        sa.Column("id", _serial(), primary_key=True, autoincrement=True),
        sa.Column("rollout", sa.String(255), nullable=False),
        sa.Column("version", sa.String(255), nullable=False),
        sa.Column("metric", sa.String(255), nullable=False),
        sa.Column("value", sa.Double, nullable=False),
        sa.Column("at", sa.Double, nullable=False),
    )
    op.create_index("ix_kpi_samples_rollout_version_at", "kpi_samples", ["rollout", "version", "at"])
    op.create_table(
        "audit_log",
        sa.Column("id", _serial(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("action", sa.String(255), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("before", _json(), nullable=True),
        sa.Column("after", _json(), nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("prev_hash", sa.String(128), nullable=True),
        sa.Column("hash", sa.String(128), nullable=False, unique=True),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", _serial(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("token_hash", sa.String(128), nullable=False, unique=True),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("revoked_at", sa.Double, nullable=True),
    )
    op.create_table(
        "notifications",
        sa.Column("id", _serial(), primary_key=True, autoincrement=True),
        sa.Column("rollout", sa.String(255), nullable=False),
        sa.Column("event_seq", sa.Integer, nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("response", sa.Text, nullable=True),
        sa.Column("at", sa.Double, nullable=False),
    )
    op.create_index("ix_notifications_rollout_event_seq", "notifications", ["rollout", "event_seq"])
    _forbid_rewrites()


def _forbid_rewrites() -> None:
    """History tables refuse UPDATE and DELETE in the database itself, whoever connects."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION rollwise_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$"
        )
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION rollwise_append_only()"
            )
        return
    for table in APPEND_ONLY:
        for operation in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )


def downgrade() -> None:
    for table in ("notifications", "api_tokens", "audit_log", "kpi_samples", "windows", "events", "rollouts"):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS rollwise_append_only()")
