"""The Envoys of an ADS fleet (``adapters/stores/sql_fleet.py``): one row per node id, what it accepted.

Written out by hand: a migration is a frozen record of that revision.

Revision ID: envoy_fleet
Revises: typed_carry
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "envoy_fleet"
down_revision = "typed_carry"
branch_labels = ("ads_fleet",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "envoy_nodes",
        sa.Column("node_id", sa.String(255), primary_key=True),
        sa.Column("region", sa.String(255), nullable=True),
        sa.Column("zone", sa.String(255), nullable=True),
        sa.Column("admin", sa.String(255), nullable=True),
        sa.Column("listen", sa.String(255), nullable=True),
        sa.Column("server", sa.String(255), nullable=True),
        sa.Column("connected", sa.Boolean, nullable=False),
        sa.Column("seen_at", sa.Double, nullable=False),
        sa.Column("versions", sa.Text, nullable=False),
        sa.Column("confirmed", sa.Text, nullable=False),
        sa.Column("nacked", sa.Text, nullable=False),
        sa.Column("nack_message", sa.Text, nullable=True),
        sa.Column("nack_at", sa.Double, nullable=True),
        sa.Column("clusters", sa.Text, nullable=True),  # the clusters it last ACKed: {"version", "resources"}
    )


def downgrade() -> None:
    op.drop_table("envoy_nodes")
