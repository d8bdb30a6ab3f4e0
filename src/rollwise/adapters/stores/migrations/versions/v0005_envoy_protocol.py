"""Each Envoy's xDS flavour (``adapters/stores/sql_fleet.py``): state of the world or incremental (Delta).

``rollwise fleet list`` shows it; rows written before this revision are state of the world (NULL reads
as ``sotw``), the only protocol the ADS server spoke then. Written out by hand: a migration is a frozen
record of that revision.

Revision ID: envoy_protocol
Revises: envoy_fleet
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "envoy_protocol"
down_revision = "envoy_fleet"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("envoy_nodes", sa.Column("protocol", sa.String(16), nullable=True))


def downgrade() -> None:
    op.drop_column("envoy_nodes", "protocol")
