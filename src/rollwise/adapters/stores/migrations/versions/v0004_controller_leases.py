"""Rollout leases with fencing tokens, the controllers' heartbeats (``adapters/stores/sql_leases.py``),
and the flag documents a fleet of flag servers shares (``adapters/stores/sql_flags.py``).

Several controllers on one store: each rollout's lease names its holder, when the lease expires,
and a fencing token that grows by one each time the lease changes hands. Rows are never deleted,
so a token never goes back. Written out by hand: a migration is a frozen record of that revision.

Revision ID: controller_leases
Revises: typed_carry
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "controller_leases"
down_revision = "typed_carry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollout_leases",
        sa.Column("rollout", sa.String(255), primary_key=True),
        sa.Column("holder", sa.String(255), nullable=True),
        sa.Column("token", sa.Integer, nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False),
        sa.Column("acquired_at", sa.Double, nullable=False),
    )
    op.create_index("ix_rollout_leases_holder", "rollout_leases", ["holder"])
    op.create_table(
        "rollwise_controllers",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("started_at", sa.Double, nullable=False),
        sa.Column("seen_at", sa.Double, nullable=False),
        sa.Column("ttl", sa.Double, nullable=False),
    )
    op.create_table(
        "flag_documents",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("flag_documents")
    op.drop_table("rollwise_controllers")
    op.drop_index("ix_rollout_leases_holder", "rollout_leases")
    op.drop_table("rollout_leases")
