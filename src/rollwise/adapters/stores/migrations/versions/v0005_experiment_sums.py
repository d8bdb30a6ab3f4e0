"""Experiments: rollups per metric (not per event) carrying the subject's variant, and per-variant sums.

A live readout used to join every exposure to its rollup rows (seconds at a million subjects). Now each
rollup row is one experiment × metric × subject and carries the variant its first exposure gave it, and
``experiment_sums`` keeps each variant's sufficient statistics, updated by the same statements that update
the rollups (see ``sql_experiments.py``): a readout reads a handful of rows.

The old rollups are derived data: they are dropped, and every existing experiment gets
``rollups_version`` 0, which makes the store rebuild its rollups and sums from ``metric_events`` and
``experiment_exposures`` before it next reads or writes them. Being derived, both new tables are UNLOGGED on
PostgreSQL: ingestion writes no WAL for them (at a million subjects the full-page images alone were ~170 MB
per 100,000 events); a crash empties them, and the store rebuilds them when it sees an experiment's marker
row gone. Written out by hand: a migration is a frozen
record of that revision.

Revision ID: experiment_sums
Revises: experiments
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "experiment_sums"
down_revision = "experiments"
branch_labels = None
depends_on = None


def _bytewise(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def upgrade() -> None:
    op.add_column("experiments", sa.Column("rollups_version", sa.Integer, nullable=False, server_default="0"))
    op.drop_table("experiment_rollups")
    op.create_table(
        "experiment_rollups",
        # keys compare byte-wise on PostgreSQL: every upsert descends the primary key with them
        sa.Column("experiment", _bytewise(64), primary_key=True),
        sa.Column("metric", _bytewise(128), primary_key=True),
        sa.Column("subject", _bytewise(255), primary_key=True),
        sa.Column("variant", sa.String(128), nullable=True),  # null until the subject is exposed
        sa.Column("exposed_at", sa.Double, nullable=True),
        sa.Column("pre_n", sa.BigInteger, nullable=False),
        sa.Column("pre_sum", sa.Double, nullable=False),
        sa.Column("post_n", sa.BigInteger, nullable=False),
        sa.Column("post_sum", sa.Double, nullable=False),
        sa.Column("den_sum", sa.Double, nullable=False),
        postgresql_with={"fillfactor": 70},  # room on each page for HOT updates: no new index entry per upsert
    )
    op.create_table(
        "experiment_sums",
        sa.Column("experiment", _bytewise(64), primary_key=True),
        sa.Column("metric", _bytewise(128), primary_key=True),  # '': the exposure counts per variant
        sa.Column("variant", _bytewise(128), primary_key=True),
        sa.Column("n", sa.BigInteger, nullable=False),
        sa.Column("y_sum", sa.Double, nullable=False),
        sa.Column("y_sum_sq", sa.Double, nullable=False),
        sa.Column("x_sum", sa.Double, nullable=False),
        sa.Column("x_sum_sq", sa.Double, nullable=False),
        sa.Column("xy_sum", sa.Double, nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE experiment_rollups SET UNLOGGED")
        op.execute("ALTER TABLE experiment_sums SET UNLOGGED")


def downgrade() -> None:
    op.drop_table("experiment_sums")
    op.drop_table("experiment_rollups")
    op.create_table(
        "experiment_rollups",
        sa.Column("experiment", _bytewise(64), primary_key=True),
        sa.Column("event", _bytewise(128), primary_key=True),
        sa.Column("subject", _bytewise(255), primary_key=True),
        sa.Column("pre_n", sa.BigInteger, nullable=False),
        sa.Column("pre_sum", sa.Double, nullable=False),
        sa.Column("post_n", sa.BigInteger, nullable=False),
        sa.Column("post_sum", sa.Double, nullable=False),
        postgresql_with={"fillfactor": 70},
    )
    op.drop_column("experiments", "rollups_version")
