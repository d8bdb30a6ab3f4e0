"""Past releases' measured effects (``core.releases.PastEffect``), kept in the SQL store's database.

One row per metric of each finished rollout (table ``release_effects``, migration ``release_effects``):
written by the engine after a rollout's end is committed, read once when a rollout begins to fit its
mixture priors. Rows are only added; a rollout's run is kept once however often it is offered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields

from sqlalchemy import (
    Boolean,
    Column,
    Double,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    and_,
    insert,
    select,
)

from rollwise.adapters.stores.sql import SqlStore
from rollwise.core.releases import PastEffect

#: The most past effects one read returns (the newest): enough for every service's priors, bounded.
READ_LIMIT = 5000

metadata = MetaData()

release_effects_table = Table(
    "release_effects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("service", String(255), nullable=False),
    Column("metric", String(255), nullable=False),
    Column("metric_type", String(32), nullable=False),
    Column("rollout", String(255), nullable=False),
    Column("run", Integer, nullable=False),
    Column("finished_at", Double, nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("regression", Boolean, nullable=False),
    Column("ratio", Double, nullable=False),
    Column("ratio_low", Double, nullable=True),
    Column("ratio_high", Double, nullable=True),
    Column("effect", Double, nullable=True),
    Column("effect_low", Double, nullable=True),
    Column("effect_high", Double, nullable=True),
    Column("canary_trials", Double, nullable=False),
    Column("canary_bad", Double, nullable=False),
    Column("baseline_trials", Double, nullable=False),
    Column("baseline_bad", Double, nullable=False),
    Column("prior_trials", Double, nullable=False),
    Column("prior_bad", Double, nullable=False),
    UniqueConstraint("rollout", "run", "metric", "finished_at", name="uq_release_effects_run_metric"),
    Index("ix_release_effects_kind_time", "metric_type", "finished_at"),  # all services' recent effects of a kind
)

_COLUMNS = [f.name for f in fields(PastEffect)]


class SqlReleaseHistory:
    """``ReleaseHistory`` in the store's database."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store

    def record_effects(self, effects: Sequence[PastEffect]) -> None:
        table = release_effects_table
        with self.store.write() as conn:
            for effect in effects:
                same = and_(table.c.rollout == effect.rollout, table.c.run == effect.run,
                            table.c.metric == effect.metric, table.c.finished_at == effect.finished_at)
                if conn.execute(select(table.c.id).where(same)).first() is None:
                    conn.execute(insert(table).values(**effect.to_dict()))

    def past_effects(self, metric_types: Sequence[str]) -> list[PastEffect]:
        table = release_effects_table
        query = (select(*(table.c[name] for name in _COLUMNS))
                 .where(table.c.metric_type.in_(list(metric_types)))
                 .order_by(table.c.finished_at.desc(), table.c.id.desc()).limit(READ_LIMIT))
        with self.store.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [PastEffect(**dict(row._mapping)) for row in reversed(rows)]
