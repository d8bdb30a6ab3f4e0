"""Experiments in the SQL store's database (tables from migration ``experiments``).

Why it is shaped like this:

* Metric events arrive in bulk, so writes are batched: PostgreSQL gets them through ``COPY`` (psycopg's
  copy protocol, one round trip per batch), SQLite through ``executemany`` in one transaction.
* A readout never pulls events into Python. One SQL statement joins the experiment's exposures to the
  events by subject, folds each subject's events into one value (and a covariate: the same metric
  before the experiment started, for CUPED, or the denominator of a ratio metric), then aggregates per
  variant into sufficient statistics (n, Σy, Σy², Σx, Σx², Σxy). The statistics (``experiments/``) run
  on those few numbers, so a readout over millions of events costs one aggregate query.
* The fold per subject is kept at ingestion, not redone at readout: ``experiment_rollups`` holds, per
  experiment × metric event × subject, the count and sum of that subject's events before and after the
  experiment's start (and before its stop). Each event batch is COPY'd into a temporary table and, in the
  same transaction, appended to ``metric_events`` and UPSERTed into the rollups of every experiment whose
  metrics read that event. A readout of the live (or stopped) experiment then joins one narrow rollup
  row per subject and event to the exposures instead of aggregating every raw event: its cost follows the subjects,
  not the events. Readouts at an earlier ``until`` (the chart over time) still fold the raw events.
* Creating an experiment backfills its rollups from the events already stored; stopping it rebuilds them
  with only the events before the stop. Both take a SHARE lock on ``metric_events`` on PostgreSQL, so no
  concurrent batch can commit between the backfill and the moment it sees the experiment.
* A subject's first exposure wins (``ON CONFLICT DO NOTHING``): a subject is analysed in the variant
  it was first assigned, whatever it saw later.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Double,
    ForeignKey,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    select,
    text,
    update,
)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from rollwise.adapters.stores.sql import JSONColumn, SqlStore
from rollwise.experiments.model import Experiment, ExperimentSpec, Metric
from rollwise.experiments.stats import Moments

metadata = MetaData()

experiments_table = Table(
    "experiments", metadata,
    Column("name", String(64), primary_key=True),
    Column("spec", JSONColumn, nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", Double, nullable=False),
    Column("stopped_at", Double),
    Column("stopped_by", String(255)),
    Column("stop_reason", Text),
    Column("killed_flag", Boolean, nullable=False),
)
exposures_table = Table(
    "experiment_exposures", metadata,
    Column("experiment", String(64), ForeignKey("experiments.name"), primary_key=True),
    Column("subject", String(255), primary_key=True),
    Column("variant", String(128), nullable=False),
    Column("at", Double, nullable=False),
)
events_table = Table(
    "metric_events", metadata,
    Column("subject", String(255), nullable=False),
    Column("event", String(128), nullable=False),
    Column("value", Double, nullable=False),
    Column("at", Double, nullable=False),
)
def _bytewise(length: int) -> String:
    """Rollup keys compare byte-wise on PostgreSQL (collation "C"): every upsert descends the primary key
    with them, and locale-aware comparison made that the largest cost of ingestion."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")  # type: ignore[return-value]


rollups_table = Table(
    "experiment_rollups", metadata,
    Column("experiment", _bytewise(64), primary_key=True),
    Column("event", _bytewise(128), primary_key=True),
    Column("subject", _bytewise(255), primary_key=True),
    Column("pre_n", BigInteger, nullable=False),
    Column("pre_sum", Double, nullable=False),
    Column("post_n", BigInteger, nullable=False),
    Column("post_sum", Double, nullable=False),
    postgresql_with={"fillfactor": 70},
)

_NEVER = 1e300
"""A stop time for running experiments: every event is before it."""


class ExperimentExists(ValueError):
    pass


class ExperimentNotFound(LookupError):
    pass


def _copy_text(rows: Iterable[tuple[str, str, float, float]]) -> bytes:
    """Rows in COPY's text format. Subjects and event names were checked by the caller to hold no tab,
    newline or backslash, so no escaping is needed; floats go out with repr (round-trips exactly)."""
    out = io.StringIO()
    out.writelines(f"{s}\t{e}\t{v!r}\t{a!r}\n" for s, e, v, a in rows)
    return out.getvalue().encode("utf-8")


class SqlExperimentStore:
    """Experiments, exposures and metric events beside the rollouts, in the same database."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store
        self.engine = store.engine
        self.is_postgres = self.engine.dialect.name == "postgresql"

    # ------------------------------------------------------------ experiments

    def create(self, spec: ExperimentSpec, now: float) -> Experiment:
        experiment = Experiment(spec=spec, started_at=now)
        try:
            with self._store.write() as conn:
                self._lock_events(conn)
                conn.execute(experiments_table.insert().values(
                    name=spec.name, spec=spec.model_dump(mode="json", exclude_none=True), status="running",
                    started_at=now, killed_flag=False))
                _fold_into_rollups(conn, "metric_events", spec, now, _NEVER)
        except IntegrityError:
            raise ExperimentExists(f"an experiment named {spec.name!r} exists already") from None
        return experiment

    def _lock_events(self, conn: Connection) -> None:
        """Wait for in-flight event batches and hold new ones until this transaction commits (PostgreSQL;
        SQLite's write transaction is exclusive already)."""
        if self.is_postgres:
            conn.exec_driver_sql("LOCK TABLE metric_events IN SHARE MODE")

    def get(self, name: str) -> Experiment:
        with self.engine.connect() as conn:
            row = conn.execute(select(experiments_table).where(experiments_table.c.name == name)).first()
        if row is None:
            raise ExperimentNotFound(f"no experiment named {name!r}")
        return _experiment(row)

    def list(self) -> list[Experiment]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(experiments_table).order_by(experiments_table.c.started_at)).all()
        return [_experiment(row) for row in rows]

    def stop(self, name: str, *, actor: str, reason: str, now: float, killed_flag: bool = False) -> Experiment:
        """Mark it stopped (once: a stopped experiment stays as it was stopped) and rebuild its rollups from the
        events before the stop, so its frozen readout is the same whether read from rollups or raw events."""
        with self._store.write() as conn:
            self._lock_events(conn)
            done = conn.execute(update(experiments_table)
                                .where(experiments_table.c.name == name, experiments_table.c.status == "running")
                                .values(status="stopped", stopped_at=now, stopped_by=actor, stop_reason=reason,
                                        killed_flag=killed_flag))
            if done.rowcount:
                row = conn.execute(select(experiments_table).where(experiments_table.c.name == name)).one()
                conn.execute(rollups_table.delete().where(rollups_table.c.experiment == name))
                _fold_into_rollups(conn, "metric_events", _experiment(row).spec, row.started_at, now)
        experiment = self.get(name)
        if done.rowcount == 0:
            raise ExperimentExists(f"experiment {name!r} was already stopped")
        return experiment

    # ------------------------------------------------------------ exposures and events

    def record_exposures(self, name: str, rows: Sequence[tuple[str, str, float]]) -> int:
        """(subject, variant, at) rows; a subject's first exposure wins. Returns how many were new.

        PostgreSQL: COPY into a temporary table, then one ``INSERT … SELECT … ON CONFLICT DO NOTHING``;
        SQLite: one ``executemany``.
        """
        if not rows:
            return 0
        if self.is_postgres:
            return self._copy_exposures(name, rows)
        values = [{"experiment": name, "subject": s, "variant": v, "at": a} for s, v, a in rows]
        with self._store.write() as conn:
            result = conn.execute(sqlite_insert(exposures_table).on_conflict_do_nothing()
                                  .returning(exposures_table.c.subject), values)
            return len(result.all())

    def _copy_exposures(self, name: str, rows: Sequence[tuple[str, str, float]]) -> int:
        raw = self.engine.raw_connection()
        try:
            with raw.cursor() as cursor:  # type: ignore[attr-defined]  # psycopg 3 cursor
                cursor.execute("CREATE TEMPORARY TABLE incoming_exposures (subject text, variant text, at double "
                               "precision) ON COMMIT DROP")
                with cursor.copy("COPY incoming_exposures (subject, variant, at) FROM STDIN") as copy:  # type: ignore[attr-defined]
                    copy.write("".join(f"{s}\t{v}\t{a!r}\n" for s, v, a in rows).encode("utf-8"))
                cursor.execute("INSERT INTO experiment_exposures (experiment, subject, variant, at) "
                               "SELECT DISTINCT ON (subject) %s, subject, variant, at FROM incoming_exposures "
                               "ORDER BY subject, at ON CONFLICT DO NOTHING", (name,))
                added = int(cursor.rowcount)
            raw.commit()
            return added
        finally:
            raw.close()

    def record_events(self, rows: Sequence[tuple[str, str, float, float]]) -> int:
        """(subject, event, value, at) rows in one batch and one transaction: into a temporary table (COPY on
        PostgreSQL, executemany on SQLite), from there appended to ``metric_events`` and folded into the
        rollups of the experiments that read those events."""
        if not rows:
            return 0
        with self._store.write() as conn:
            if self.is_postgres:
                raw = conn.connection.driver_connection
                with raw.cursor() as cursor:  # type: ignore[union-attr]
                    cursor.execute("SET LOCAL work_mem = '64MB'")  # the batch's GROUP BY sorts in memory
                    cursor.execute('CREATE TEMPORARY TABLE incoming_events (subject text COLLATE "C", event text '
                                   'COLLATE "C", value double precision, at double precision) ON COMMIT DROP')
                    with cursor.copy("COPY incoming_events (subject, event, value, at) FROM STDIN") as copy:
                        copy.write(_copy_text(rows))
            else:
                conn.exec_driver_sql("CREATE TEMPORARY TABLE IF NOT EXISTS incoming_events (subject TEXT, "
                                     "event TEXT, value REAL, at REAL)")
                conn.exec_driver_sql("DELETE FROM incoming_events")
                conn.exec_driver_sql("INSERT INTO incoming_events (subject, event, value, at) VALUES (?, ?, ?, ?)",
                                     list(rows))
            conn.exec_driver_sql("INSERT INTO metric_events (subject, event, value, at) "
                                 "SELECT subject, event, value, at FROM incoming_events")
            # read after the insert above: it waits for a create/stop holding the SHARE lock, so it sees it
            for row in conn.execute(select(experiments_table)).all():
                stop = row.stopped_at if row.stopped_at is not None else _NEVER
                _fold_into_rollups(conn, "incoming_events", _experiment(row).spec, row.started_at, stop)
        return len(rows)

    def variant_counts(self, name: str, until: float | None = None) -> dict[str, int]:
        query = (select(exposures_table.c.variant, text("count(*)")).where(exposures_table.c.experiment == name)
                 .group_by(exposures_table.c.variant))
        if until is not None:
            query = query.where(exposures_table.c.at < until)
        with self.engine.connect() as conn:
            return {row[0]: int(row[1]) for row in conn.execute(query)}

    def moments(self, experiment: Experiment, metric: Metric, until: float | None = None) -> dict[str, Moments]:
        """Per variant, the sufficient statistics of ``metric`` over subjects exposed before ``until``.

        Read from the rollups when they hold exactly the events the readout wants (now, or at the stop of a
        stopped experiment); from the raw events otherwise."""
        from_rollups = until is None or (experiment.stopped_at is not None and until == experiment.stopped_at)
        sql, params = (rollup_readout_query if from_rollups else readout_query)(experiment, metric, until)
        with self.engine.connect() as conn:
            rows = conn.execute(text(sql), params).all()
        return {row[0]: Moments(float(row[1]), float(row[2] or 0), float(row[3] or 0), float(row[4] or 0),
                                float(row[5] or 0), float(row[6] or 0)) for row in rows}


def _fold_into_rollups(conn: Connection, source: str, spec: ExperimentSpec, start: float, stop: float) -> None:
    """Add the events of ``source`` that ``spec``'s metrics read, folded per event and subject, to the
    experiment's rollups (before ``start`` → pre, from ``start`` to ``stop`` → post, later → ignored)."""
    events = sorted({m.event_name for m in spec.metrics} | {m.denominator for m in spec.metrics if m.denominator})
    query = text(f"""
    INSERT INTO experiment_rollups AS r (experiment, event, subject, pre_n, pre_sum, post_n, post_sum)
    SELECT :name, event, subject,
      SUM(CASE WHEN at < :start THEN 1 ELSE 0 END), SUM(CASE WHEN at < :start THEN value ELSE 0.0 END),
      SUM(CASE WHEN at >= :start THEN 1 ELSE 0 END), SUM(CASE WHEN at >= :start THEN value ELSE 0.0 END)
    FROM {source} WHERE event IN :events AND at < :stop
    GROUP BY event, subject
    ON CONFLICT (experiment, event, subject) DO UPDATE SET pre_n = r.pre_n + excluded.pre_n,
      pre_sum = r.pre_sum + excluded.pre_sum, post_n = r.post_n + excluded.post_n,
      post_sum = r.post_sum + excluded.post_sum
    """).bindparams(bindparam("events", expanding=True))
    conn.execute(query, {"name": spec.name, "start": start, "stop": stop, "events": events})


def _experiment(row: Any) -> Experiment:
    spec = row.spec if isinstance(row.spec, dict) else json.loads(row.spec)
    return Experiment(spec=ExperimentSpec.model_validate(spec), status=row.status, started_at=row.started_at,
                      stopped_at=row.stopped_at, stopped_by=row.stopped_by, stop_reason=row.stop_reason,
                      killed_flag=bool(row.killed_flag))


_VALUE = {
    # the per-subject value y, and its covariate c (pre-period value, or the ratio's denominator)
    "conversion": ("CASE WHEN y_n > 0 THEN 1.0 ELSE 0.0 END", "CASE WHEN pre_n > 0 THEN 1.0 ELSE 0.0 END"),
    "sum": ("y_sum", "pre_sum"),
    "mean": ("y_sum / y_n", "CASE WHEN pre_n > 0 THEN pre_sum / pre_n ELSE 0.0 END"),
    "ratio": ("y_sum", "d_sum"),
}


def readout_query(experiment: Experiment, metric: Metric, until: float | None) -> tuple[str, dict[str, Any]]:
    """One statement: events → one row per subject (aggregated before the join, so SQLite and PostgreSQL
    both join once per subject) ⋈ exposures → one value per subject → sums per variant."""
    y, c = _VALUE[metric.kind]
    if metric.kind != "ratio" and not metric.cuped:
        c = "0.0"
    where_mean = "WHERE y_n > 0" if metric.kind == "mean" else ""
    start = experiment.started_at
    sql = f"""
    WITH by_subject AS (
      SELECT subject,
        SUM(CASE WHEN event = :y AND at >= :start THEN value ELSE 0.0 END) AS y_sum,
        SUM(CASE WHEN event = :y AND at >= :start THEN 1 ELSE 0 END) AS y_n,
        SUM(CASE WHEN event = :y AND at < :start THEN value ELSE 0.0 END) AS pre_sum,
        SUM(CASE WHEN event = :y AND at < :start THEN 1 ELSE 0 END) AS pre_n,
        SUM(CASE WHEN event = :d AND at >= :start THEN value ELSE 0.0 END) AS d_sum
      FROM metric_events WHERE event IN (:y, :d) AND at < :until
      GROUP BY subject
    ), per_subject AS (
      SELECT x.variant AS variant, COALESCE(e.y_sum, 0.0) AS y_sum, COALESCE(e.y_n, 0) AS y_n,
        COALESCE(e.pre_sum, 0.0) AS pre_sum, COALESCE(e.pre_n, 0) AS pre_n, COALESCE(e.d_sum, 0.0) AS d_sum
      FROM experiment_exposures x LEFT JOIN by_subject e ON e.subject = x.subject
      WHERE x.experiment = :name AND x.at < :until
    ), valued AS (
      SELECT variant, {y} AS v, {c} AS c FROM per_subject {where_mean}
    )
    SELECT variant, COUNT(*), SUM(v), SUM(v * v), SUM(c), SUM(c * c), SUM(v * c) FROM valued GROUP BY variant
    """
    params = {"y": metric.event_name, "d": metric.denominator or metric.event_name, "start": start,
              "until": until if until is not None else 1e18, "name": experiment.name}
    return sql, params


def rollup_readout_query(experiment: Experiment, metric: Metric, until: float | None) -> tuple[str, dict[str, Any]]:
    """The same statistics as ``readout_query``, from the rollups: each exposure joins at most one rollup
    row per event, so the cost follows the exposed subjects, not the events."""
    y, c = _VALUE[metric.kind]
    if metric.kind != "ratio" and not metric.cuped:
        c = "0.0"
    where_mean = "WHERE y_n > 0" if metric.kind == "mean" else ""
    ratio = metric.kind == "ratio"
    d_join = ("LEFT JOIN experiment_rollups d ON d.experiment = x.experiment AND d.event = :d "
              "AND d.subject = x.subject") if ratio else ""
    sql = f"""
    WITH per_subject AS (
      SELECT x.variant AS variant, COALESCE(r.post_sum, 0.0) AS y_sum, COALESCE(r.post_n, 0) AS y_n,
        COALESCE(r.pre_sum, 0.0) AS pre_sum, COALESCE(r.pre_n, 0) AS pre_n,
        {"COALESCE(d.post_sum, 0.0)" if ratio else "0.0"} AS d_sum
      FROM experiment_exposures x
      LEFT JOIN experiment_rollups r ON r.experiment = x.experiment AND r.event = :y AND r.subject = x.subject
      {d_join}
      WHERE x.experiment = :name AND x.at < :until
    ), valued AS (
      SELECT variant, {y} AS v, {c} AS c FROM per_subject {where_mean}
    )
    SELECT variant, COUNT(*), SUM(v), SUM(v * v), SUM(c), SUM(c * c), SUM(v * c) FROM valued GROUP BY variant
    """
    params = {"y": metric.event_name, "d": metric.denominator or metric.event_name,
              "until": until if until is not None else 1e18, "name": experiment.name}
    return sql, params
