"""The watch's tables: the change log (changes made outside rollwise, and its flag changes) and incidents.

A branch of its own from ``typed_carry`` (the store upgrades to every head). Written out by hand: a
migration is a frozen record of that revision.

Revision ID: watch_changes
Revises: typed_carry
Create Date: 2026-12-06
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "watch_changes"
down_revision = "typed_carry"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(JSONB(), "postgresql")


def _serial() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "watch_changes",
        sa.Column("id", _serial(), primary_key=True, autoincrement=True),
        sa.Column("service", sa.String(255), nullable=False),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("version", sa.String(255), nullable=True),
        sa.Column("previous_version", sa.String(255), nullable=True),
        sa.Column("region", sa.String(255), nullable=True),
        sa.Column("scope", sa.String(255), nullable=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("source", sa.String(255), nullable=False),
        sa.Column("data", _json(), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_watch_changes_service_at", "watch_changes", ["service", "at"])
    op.create_table(
        "watch_incidents",
        sa.Column("id", _serial(), primary_key=True, autoincrement=True),
        sa.Column("service", sa.String(255), nullable=False),
        sa.Column("opened_at", sa.Double, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("resolved_at", sa.Double, nullable=True),
        sa.Column("body", _json(), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_watch_incidents_service_status", "watch_incidents", ["service", "status"])


def downgrade() -> None:
    op.drop_table("watch_incidents")
    op.drop_table("watch_changes")
