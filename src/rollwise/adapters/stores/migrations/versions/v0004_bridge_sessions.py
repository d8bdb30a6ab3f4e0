"""Bridge sessions: what an Argo Rollouts analysis run or a Flagger canary was judged on so far.

Revision ID: bridge_sessions
Revises: typed_carry
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "bridge_sessions"
down_revision = "typed_carry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bridge_sessions",
        sa.Column("key", sa.String(300), primary_key=True),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("state", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
    )
    op.create_index("ix_bridge_sessions_updated_at", "bridge_sessions", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_bridge_sessions_updated_at", "bridge_sessions")
    op.drop_table("bridge_sessions")
