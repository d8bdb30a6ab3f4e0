"""Past releases' measured effects per service and metric, for the judge's learned priors.

Revision ID: release_effects
Revises: typed_carry
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "release_effects"
down_revision = "typed_carry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "release_effects",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("service", sa.String(255), nullable=False),
        sa.Column("metric", sa.String(255), nullable=False),
        sa.Column("metric_type", sa.String(32), nullable=False),
        sa.Column("rollout", sa.String(255), nullable=False),
        sa.Column("run", sa.Integer, nullable=False),
        sa.Column("finished_at", sa.Double, nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("regression", sa.Boolean, nullable=False),
        sa.Column("ratio", sa.Double, nullable=False),
        sa.Column("ratio_low", sa.Double, nullable=True),
        sa.Column("ratio_high", sa.Double, nullable=True),
        sa.Column("effect", sa.Double, nullable=True),
        sa.Column("effect_low", sa.Double, nullable=True),
        sa.Column("effect_high", sa.Double, nullable=True),
        sa.Column("canary_trials", sa.Double, nullable=False),
        sa.Column("canary_bad", sa.Double, nullable=False),
        sa.Column("baseline_trials", sa.Double, nullable=False),
        sa.Column("baseline_bad", sa.Double, nullable=False),
        sa.Column("prior_trials", sa.Double, nullable=False),
        sa.Column("prior_bad", sa.Double, nullable=False),
        sa.UniqueConstraint("rollout", "run", "metric", "finished_at", name="uq_release_effects_run_metric"),
    )
    op.create_index("ix_release_effects_kind_time", "release_effects", ["metric_type", "finished_at"])


def downgrade() -> None:
    op.drop_index("ix_release_effects_kind_time", table_name="release_effects")
    op.drop_table("release_effects")
