"""What the data plane confirmed: desired vs applied route revision, and when to retire versions.

Existing rollouts: the desired route revision is read from the stored state; ended ones count as
applied (the runners of the time applied them or never will), so an upgrade re-applies nothing.

Revision ID: route_applied
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "route_applied"
down_revision = "0001"
branch_labels = None
depends_on = None

_TERMINAL = ("Succeeded", "RolledBack", "Aborted")


def upgrade() -> None:
    with op.batch_alter_table("rollouts") as batch:
        batch.add_column(sa.Column("route_revision", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("applied_route_revision", sa.Integer, nullable=True))
        batch.add_column(sa.Column("applied_route_at", sa.Double, nullable=True))
        batch.add_column(sa.Column("retire_at", sa.Double, nullable=True))
    conn = op.get_bind()
    rollouts = sa.table(
        "rollouts", sa.column("name", sa.String), sa.column("phase", sa.String), sa.column("state", sa.JSON),
        sa.column("updated_at", sa.Double), sa.column("route_revision", sa.Integer),
        sa.column("applied_route_revision", sa.Integer), sa.column("applied_route_at", sa.Double),
    )
    for row in conn.execute(sa.select(rollouts.c.name, rollouts.c.phase, rollouts.c.state, rollouts.c.updated_at)):
        state: Any = row.state if isinstance(row.state, dict) else json.loads(row.state)
        route_revision = int(state.get("route", {}).get("revision", 0))
        values: dict[str, Any] = {"route_revision": route_revision}
        if row.phase in _TERMINAL:
            values.update(applied_route_revision=route_revision, applied_route_at=row.updated_at)
        conn.execute(sa.update(rollouts).where(rollouts.c.name == row.name).values(**values))


def downgrade() -> None:
    with op.batch_alter_table("rollouts") as batch:
        for column in ("retire_at", "applied_route_at", "applied_route_revision", "route_revision"):
            batch.drop_column(column)
