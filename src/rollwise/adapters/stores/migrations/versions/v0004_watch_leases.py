"""Watch leases (``adapters/stores/sql_leases.py``): which process watches which service after release.

Several controllers (and ``serve``) on one store each run the post-release watch; without a lease
every one of them would score the same service and open its own incident. One row per watched
service names its holder, when the lease expires and a token that grows each time it changes
hands. Written out by hand: a migration is a frozen record of that revision.

Revision ID: watch_leases
Revises: typed_carry
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "watch_leases"
down_revision = "typed_carry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "watch_leases",
        sa.Column("service", sa.String(255), primary_key=True),
        sa.Column("holder", sa.String(255), nullable=True),
        sa.Column("token", sa.Integer, nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False),
        sa.Column("acquired_at", sa.Double, nullable=False),
    )
    op.create_index("ix_watch_leases_holder", "watch_leases", ["holder"])


def downgrade() -> None:
    op.drop_index("ix_watch_leases_holder", "watch_leases")
    op.drop_table("watch_leases")
