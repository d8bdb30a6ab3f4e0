"""Experiments: definitions, exposures (subject → variant) and metric events.

Metric events are not per experiment: they are what a service saw a subject do (``purchase``,
``session``, ``latency_ms``), joined to an experiment's exposures by subject at readout. The table has
no index: bulk ingestion (COPY) stays fast, and a live readout does not read it: ``experiment_rollups``
keeps, per experiment × event × subject, the counts and sums before and after the start, maintained
with each batch (see ``sql_experiments.py``); only a readout at an earlier time scans the raw events.

Revision ID: experiments
Revises: typed_carry
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "experiments"
down_revision = "typed_carry"
branch_labels = None
depends_on = None


def _bytewise(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("spec", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.Double, nullable=False),
        sa.Column("stopped_at", sa.Double, nullable=True),
        sa.Column("stopped_by", sa.String(255), nullable=True),
        sa.Column("stop_reason", sa.Text, nullable=True),
        sa.Column("killed_flag", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "experiment_exposures",
        sa.Column("experiment", sa.String(64), sa.ForeignKey("experiments.name"), primary_key=True),
        sa.Column("subject", sa.String(255), primary_key=True),
        sa.Column("variant", sa.String(128), nullable=False),
        sa.Column("at", sa.Double, nullable=False),
    )
    op.create_table(
        "metric_events",
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("event", sa.String(128), nullable=False),
        sa.Column("value", sa.Double, nullable=False),
        sa.Column("at", sa.Double, nullable=False),
    )
    op.create_table(
        "experiment_rollups",
        # keys compare byte-wise on PostgreSQL: every upsert descends the primary key with them
        sa.Column("experiment", _bytewise(64), primary_key=True),
        sa.Column("event", _bytewise(128), primary_key=True),
        sa.Column("subject", _bytewise(255), primary_key=True),
        sa.Column("pre_n", sa.BigInteger, nullable=False),
        sa.Column("pre_sum", sa.Double, nullable=False),
        sa.Column("post_n", sa.BigInteger, nullable=False),
        sa.Column("post_sum", sa.Double, nullable=False),
        postgresql_with={"fillfactor": 70},  # room on each page for HOT updates: no new index entry per upsert
    )


def downgrade() -> None:
    op.drop_table("experiment_rollups")
    op.drop_table("metric_events")
    op.drop_table("experiment_exposures")
    op.drop_table("experiments")
