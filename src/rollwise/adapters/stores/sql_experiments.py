"""Experiments in the SQL store's database (tables from migrations ``experiments`` and ``experiment_sums``).

Why it is shaped like this:

* Metric events arrive in bulk, so writes are batched: PostgreSQL gets them through ``COPY`` (psycopg's
  copy protocol, one round trip per batch), SQLite through ``executemany`` in one transaction.
* A readout never pulls events into Python, and a live one does not even fold them: the statistics
  (``experiments/``) run on per-variant sufficient statistics (n, Σy, Σy², Σc, Σc², Σyc; c is CUPED's
  pre-period covariate or a ratio's denominator), and those are kept at ingestion.
* ``experiment_rollups`` holds, per experiment × metric × subject, the subject's variant (set by its first
  exposure) and the counts and sums of its events before the start, from the start to the stop, and of a
  ratio's denominator. Each event batch is COPY'd into a temporary table and, in the same transaction,
  appended to ``metric_events`` and folded into the rollups of every experiment whose metrics read it.
  Exposing a subject gives its rows their variant (creating them if it had no events yet).
* ``experiment_sums`` (PostgreSQL) holds the per-variant sufficient statistics themselves, kept by the same
  statements: each rollup row an ingestion changes adds (its new values) − (its old values) to its variant's
  sums, the old row being the new one less the batch's increments; an exposure adds the row's values. A
  live readout reads those few rows, whatever the number of events. SQLite (small stores) aggregates the
  rollups instead: one row per subject and metric, no join. Readouts at an earlier ``until`` (the chart over
  time) fold the raw events.
* Both are derived from ``metric_events`` and ``experiment_exposures`` (the truth), so on PostgreSQL they are
  UNLOGGED: ingestion writes no WAL for them (at a million subjects their full-page images alone were
  ~170 MB of WAL per 100,000 events). A crash empties them (as it would a cache; a physical standby does
  not have them either): each rebuild ends with a marker row (``_BUILT``), and the store rebuilds any
  experiment whose marker is missing before it next reads or writes (``_refresh_stale``).
* Creating an experiment builds its rollups from the events already stored; stopping it rebuilds them (and
  its sums) with only the events and exposures before the stop. Both take a SHARE lock on ``metric_events``
  and ``experiment_exposures`` on PostgreSQL, so no concurrent batch can commit between the rebuild and the
  moment it sees the experiment.
* A subject's first exposure wins (``ON CONFLICT DO NOTHING``): a subject is analysed in the variant
  it was first assigned, whatever it saw later.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Double,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
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
    Column("rollups_version", Integer, nullable=False, server_default="0"),
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
    Column("metric", _bytewise(128), primary_key=True),
    Column("subject", _bytewise(255), primary_key=True),
    Column("variant", String(128)),
    Column("exposed_at", Double),
    Column("pre_n", BigInteger, nullable=False),
    Column("pre_sum", Double, nullable=False),
    Column("post_n", BigInteger, nullable=False),
    Column("post_sum", Double, nullable=False),
    Column("den_sum", Double, nullable=False),
    postgresql_with={"fillfactor": 70},
)
sums_table = Table(
    "experiment_sums", metadata,
    Column("experiment", _bytewise(64), primary_key=True),
    Column("metric", _bytewise(128), primary_key=True),
    Column("variant", _bytewise(128), primary_key=True),
    Column("n", BigInteger, nullable=False),
    Column("y_sum", Double, nullable=False),
    Column("y_sum_sq", Double, nullable=False),
    Column("x_sum", Double, nullable=False),
    Column("x_sum_sq", Double, nullable=False),
    Column("xy_sum", Double, nullable=False),
)

ROLLUPS_VERSION = 2
"""What ``experiments.rollups_version`` must say for an experiment's rollups (and sums) to be read; an
experiment at another version (created before this layout) has them rebuilt from the raw tables first."""

_BUILT = ("", "")
"""(metric, variant) of the row in ``experiment_sums`` a rebuild writes last (n = 0, never read as a count):
its absence says the experiment's derived rows are gone (a crash empties UNLOGGED tables)."""

_ROLLUP_VALUES = ("pre_n", "pre_sum", "post_n", "post_sum", "den_sum")

_NEVER = 1e300
"""A stop time for running experiments: every event is before it."""


class ExperimentExists(ValueError):
    pass


class ExperimentNotFound(LookupError):
    pass


#: Subjects per variant, and each metric's ``Moments`` per variant: everything a readout needs.
Statistics = tuple[dict[str, int], dict[str, dict[str, Moments]]]


def _copy_text(rows: Iterable[tuple[str, str, float, float]]) -> bytes:
    """Rows in COPY's text format. Subjects and event names were checked by the caller to hold no tab,
    newline or backslash, so no escaping is needed; floats go out with repr (round-trips exactly)."""
    return "".join([f"{s}\t{e}\t{v!r}\t{a!r}\n" for s, e, v, a in rows]).encode("utf-8")


class SqlExperimentStore:
    """Experiments, exposures and metric events beside the rollouts, in the same database."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store
        self.engine = store.engine
        self.is_postgres = self.engine.dialect.name == "postgresql"
        self._sql = _Sql(self.is_postgres)

    # ------------------------------------------------------------ experiments

    def create(self, spec: ExperimentSpec, now: float) -> Experiment:
        experiment = Experiment(spec=spec, started_at=now)
        try:
            with self._store.write() as conn:
                self._lock_sources(conn)
                conn.execute(experiments_table.insert().values(
                    name=spec.name, spec=spec.model_dump(mode="json", exclude_none=True), status="running",
                    started_at=now, killed_flag=False, rollups_version=ROLLUPS_VERSION))
                self._rebuild(conn, experiment)  # the events stored before it existed: its pre-period
        except IntegrityError:
            raise ExperimentExists(f"an experiment named {spec.name!r} exists already") from None
        return experiment

    def _lock_sources(self, conn: Connection) -> None:
        """Wait for in-flight event and exposure batches and hold new ones until this transaction commits
        (PostgreSQL; SQLite's write transaction is exclusive already): a rebuild sees every batch once."""
        if self.is_postgres:
            conn.exec_driver_sql("LOCK TABLE metric_events, experiment_exposures IN SHARE MODE")

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
        """Mark it stopped (once: a stopped experiment stays as it was stopped) and rebuild its rollups and sums
        from the events and exposures before the stop, so its frozen readout is the raw tables' at the stop."""
        with self._store.write() as conn:
            self._lock_sources(conn)
            done = conn.execute(update(experiments_table)
                                .where(experiments_table.c.name == name, experiments_table.c.status == "running")
                                .values(status="stopped", stopped_at=now, stopped_by=actor, stop_reason=reason,
                                        killed_flag=killed_flag))
            if done.rowcount:
                row = conn.execute(select(experiments_table).where(experiments_table.c.name == name)).one()
                self._rebuild(conn, _experiment(row))
        experiment = self.get(name)
        if done.rowcount == 0:
            raise ExperimentExists(f"experiment {name!r} was already stopped")
        return experiment

    def _rebuild(self, conn: Connection, experiment: Experiment) -> None:
        """The experiment's rollups (one row per exposed subject and metric, plus subjects with events not
        exposed yet) and, on PostgreSQL, its per-variant sums, from the raw tables."""
        name, sql = experiment.name, self._sql
        conn.execute(rollups_table.delete().where(rollups_table.c.experiment == name))
        conn.execute(sums_table.delete().where(sums_table.c.experiment == name))
        params = _params(experiment)
        conn.execute(text(sql.seed_rollups(experiment.spec)), params)
        conn.execute(text(sql.fold(experiment.spec, "metric_events", sums=False)), params)
        if self.is_postgres:
            conn.execute(text(sql.rebuild_sums(experiment.spec)), params)
        conn.execute(sums_table.insert().values(experiment=name, metric=_BUILT[0], variant=_BUILT[1], n=0,
                                                y_sum=0.0, y_sum_sq=0.0, x_sum=0.0, x_sum_sq=0.0, xy_sum=0.0))

    def _refresh_stale(self) -> None:
        """Rebuild the rollups and sums of experiments whose layout is older than ``ROLLUPS_VERSION`` (created
        before a migration changed it) or that lost them (both tables are UNLOGGED on PostgreSQL: a crash
        empties them, and with them the marker row ``_BUILT``): one small read per call when none did."""
        built = select(sums_table.c.experiment).where(
            sums_table.c.experiment == experiments_table.c.name, sums_table.c.metric == _BUILT[0],
            sums_table.c.variant == _BUILT[1])
        stale = (experiments_table.c.rollups_version != ROLLUPS_VERSION) | ~built.exists()
        with self.engine.connect() as conn:
            if conn.execute(select(experiments_table.c.name).where(stale).limit(1)).first() is None:
                return
        with self._store.write() as conn:
            self._lock_sources(conn)
            for row in conn.execute(select(experiments_table).where(stale)).all():
                self._rebuild(conn, _experiment(row))
                conn.execute(update(experiments_table).where(experiments_table.c.name == row.name)
                             .values(rollups_version=ROLLUPS_VERSION))

    # ------------------------------------------------------------ exposures and events

    def record_exposures(self, name: str, rows: Sequence[tuple[str, str, float]]) -> int:
        """(subject, variant, at) rows; a subject's first exposure wins. Returns how many were new.

        A new exposure gives the subject's rollup row of every metric its variant (creating the row if the
        subject had no events yet), and on PostgreSQL adds that row's values to the variant's sums.
        """
        if not rows:
            return 0
        self._refresh_stale()
        experiment = self.get(name)
        if self.is_postgres:
            return self._copy_exposures(experiment, rows)
        values = [{"experiment": name, "subject": s, "variant": v, "at": a} for s, v, a in rows]
        with self._store.write() as conn:
            new = conn.execute(sqlite_insert(exposures_table).on_conflict_do_nothing()
                               .returning(exposures_table.c.subject, exposures_table.c.variant,
                                          exposures_table.c.at), values).all()
            if new:
                upsert = sqlite_insert(rollups_table)
                conn.execute(upsert.on_conflict_do_update(
                    index_elements=[rollups_table.c.experiment, rollups_table.c.metric, rollups_table.c.subject],
                    set_={"variant": upsert.excluded.variant, "exposed_at": upsert.excluded.exposed_at},
                    where=rollups_table.c.variant.is_(None)),
                    [{"experiment": name, "metric": m.name, "subject": s, "variant": v, "exposed_at": a, "pre_n": 0,
                      "pre_sum": 0.0, "post_n": 0, "post_sum": 0.0, "den_sum": 0.0}
                     for s, v, a in new for m in experiment.spec.metrics])
            return len(new)

    def _copy_exposures(self, experiment: Experiment, rows: Sequence[tuple[str, str, float]]) -> int:
        with self._store.write() as conn:
            raw = conn.connection.driver_connection
            with raw.cursor() as cursor:  # type: ignore[union-attr]
                cursor.execute('CREATE TEMPORARY TABLE incoming_exposures (subject text COLLATE "C", variant text, '
                               "at double precision) ON COMMIT DROP")
                with cursor.copy("COPY incoming_exposures (subject, variant, at) FROM STDIN") as copy:
                    copy.write("".join([f"{s}\t{v}\t{a!r}\n" for s, v, a in rows]).encode("utf-8"))
            return int(conn.execute(text(self._sql.expose(experiment.spec)), _params(experiment)).scalar_one())

    def record_events(self, rows: Sequence[tuple[str, str, float, float]]) -> int:
        """(subject, event, value, at) rows in one batch and one transaction: into a temporary table (COPY on
        PostgreSQL, executemany on SQLite), from there appended to ``metric_events`` and folded into the
        rollups (and, on PostgreSQL, the sums) of the experiments that read those events."""
        if not rows:
            return 0
        self._refresh_stale()
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
            events = {row[1] for row in rows}
            for row in conn.execute(select(experiments_table)).all():
                experiment = _experiment(row)
                if events & _events(experiment.spec):
                    conn.execute(text(self._sql.fold(experiment.spec, "incoming_events", sums=self.is_postgres)),
                                 _params(experiment))
        return len(rows)

    def variant_counts(self, name: str, until: float | None = None) -> dict[str, int]:
        query = (select(exposures_table.c.variant, text("count(*)")).where(exposures_table.c.experiment == name)
                 .group_by(exposures_table.c.variant))
        if until is not None:
            query = query.where(exposures_table.c.at < until)
        with self.engine.connect() as conn:
            return {row[0]: int(row[1]) for row in conn.execute(query)}

    def statistics(self, experiment: Experiment, until: float | None = None) -> Statistics:
        """Subjects per variant and every metric's per-variant sufficient statistics, exposed before ``until``.

        Now (or at the stop of a stopped experiment) they are kept at ingestion: PostgreSQL reads them from
        ``experiment_sums`` (a handful of rows), SQLite aggregates the rollups (one row per subject and
        metric, no join). At an earlier ``until`` (the chart over time) they are folded from the raw events."""
        self._refresh_stale()
        if until is None or (experiment.stopped_at is not None and until == experiment.stopped_at):
            return self._kept_statistics(experiment)
        moments = {}
        with self.engine.connect() as conn:
            for metric in experiment.spec.metrics:
                sql, params = readout_query(experiment, metric, until)
                moments[metric.name] = {row[0]: _moments(row[1:]) for row in conn.execute(text(sql), params)}
        return self.variant_counts(experiment.name, until), moments

    def _kept_statistics(self, experiment: Experiment) -> Statistics:
        params = _params(experiment)
        moments: dict[str, dict[str, Moments]] = {m.name: {} for m in experiment.spec.metrics}
        if self.is_postgres:
            counts: dict[str, int] = {}
            with self.engine.connect() as conn:
                for row in conn.execute(select(sums_table).where(sums_table.c.experiment == experiment.name,
                                                                 sums_table.c.n > 0)):
                    if row.metric == "":
                        counts[row.variant] = int(row.n)
                    elif row.metric in moments:
                        moments[row.metric][row.variant] = _moments(row[3:])
            return counts, moments
        with self.engine.connect() as conn:
            for row in conn.execute(text(self._sql.aggregate_rollups(experiment.spec)), params):
                if row[2] and row[0] in moments:
                    moments[row[0]][row[1]] = _moments(row[2:])
        return self.variant_counts(experiment.name, experiment.stopped_at), moments

    def moments(self, experiment: Experiment, metric: Metric, until: float | None = None) -> dict[str, Moments]:
        """Per variant, the sufficient statistics of ``metric`` over subjects exposed before ``until``."""
        return self.statistics(experiment, until)[1].get(metric.name, {})


def _moments(values: Sequence[Any]) -> Moments:
    return Moments(*(float(v or 0) for v in values))


def _events(spec: ExperimentSpec) -> set[str]:
    return {m.event_name for m in spec.metrics} | {m.denominator for m in spec.metrics if m.denominator}


def _params(experiment: Experiment) -> dict[str, Any]:
    """The bind parameters every statement of ``_Sql`` takes: the experiment, its window, its metrics and
    the events they read (``mn<i>``: metric i's name; ``ev<i>``/``dn<i>``: its event / denominator)."""
    params: dict[str, Any] = {"name": experiment.name, "start": experiment.started_at,
                              "stop": experiment.stopped_at if experiment.stopped_at is not None else _NEVER}
    for i, metric in enumerate(experiment.spec.metrics):
        params[f"mn{i}"], params[f"ev{i}"] = metric.name, metric.event_name
        if metric.denominator:
            params[f"dn{i}"] = metric.denominator
    return params


def _per_subject(metric: Metric, col: Callable[[str], str]) -> tuple[str, str, str]:
    """SQL for one metric's per-subject (counted, value, covariate) from a rollup row's columns: whether the
    subject counts (a ``mean`` needs an event), its value y, and its covariate (pre-period value for CUPED,
    the denominator of a ratio, else 0). A subject that does not count has value and covariate 0."""
    pre_n, pre_sum, post_n, post_sum, den_sum = (col(c) for c in ("pre_n", "pre_sum", "post_n", "post_sum",
                                                                  "den_sum"))
    if metric.kind == "conversion":
        return ("1", f"CASE WHEN {post_n} > 0 THEN 1.0 ELSE 0.0 END",
                f"CASE WHEN {pre_n} > 0 THEN 1.0 ELSE 0.0 END" if metric.cuped else "0.0")
    if metric.kind == "sum":
        return "1", post_sum, pre_sum if metric.cuped else "0.0"
    if metric.kind == "mean":
        return (f"CASE WHEN {post_n} > 0 THEN 1 ELSE 0 END", f"CASE WHEN {post_n} > 0 THEN {post_sum} / {post_n} "
                "ELSE 0.0 END", f"CASE WHEN {post_n} > 0 AND {pre_n} > 0 THEN {pre_sum} / {pre_n} ELSE 0.0 END"
                if metric.cuped else "0.0")
    return "1", post_sum, den_sum  # ratio


class _Sql:
    """The statements behind the rollups and sums, for one dialect (``COLLATE "C"`` keys on PostgreSQL).

    Every statement names the experiment's metrics through ``_params``' bind parameters; ``m(event, metric,
    den)`` maps each event to the metrics that read it (den = 1: as a ratio's denominator)."""

    def __init__(self, postgres: bool) -> None:
        self.c = ' COLLATE "C"' if postgres else ""

    def _map(self, spec: ExperimentSpec) -> str:
        rows = [f"(CAST(:ev{i} AS TEXT){self.c}, CAST(:mn{i} AS TEXT){self.c}, 0)" for i in range(len(spec.metrics))]
        rows += [f"(CAST(:dn{i} AS TEXT){self.c}, CAST(:mn{i} AS TEXT){self.c}, 1)"
                 for i, m in enumerate(spec.metrics) if m.denominator]
        names = ", ".join(f"(CAST(:mn{i} AS TEXT){self.c})" for i in range(len(spec.metrics)))
        return f"m(event, metric, den) AS (VALUES {', '.join(rows)}), mm(metric) AS (VALUES {names})"

    @staticmethod
    def _by_metric(spec: ExperimentSpec, col: Callable[[str], str], alias: str) -> tuple[str, str, str]:
        """(counted, value, covariate) as one CASE on the row's metric each."""
        parts = [_per_subject(m, col) for m in spec.metrics]
        return tuple(  # type: ignore[return-value]
            "CASE " + " ".join(f"WHEN {alias}.metric = :mn{i} THEN {p[k]}" for i, p in enumerate(parts)) + " END"
            for k in range(3))

    def _fold_select(self, source: str) -> str:
        """The batch (or every stored event) folded per metric and subject: counts and sums before the start
        (CUPED's covariate), from the start to the stop, and a ratio's denominator. Ordered by key, so
        concurrent batches lock rollup rows in one order and cannot deadlock."""
        return f"""
        SELECT m.metric AS metric, e.subject{self.c} AS subject,
          SUM(CASE WHEN m.den = 0 AND e.at < :start THEN 1 ELSE 0 END) AS pre_n,
          SUM(CASE WHEN m.den = 0 AND e.at < :start THEN e.value ELSE 0.0 END) AS pre_sum,
          SUM(CASE WHEN m.den = 0 AND e.at >= :start THEN 1 ELSE 0 END) AS post_n,
          SUM(CASE WHEN m.den = 0 AND e.at >= :start THEN e.value ELSE 0.0 END) AS post_sum,
          SUM(CASE WHEN m.den = 1 AND e.at >= :start THEN e.value ELSE 0.0 END) AS den_sum
        FROM {source} e JOIN m ON e.event = m.event
        WHERE e.at < :stop
        GROUP BY m.metric, e.subject{self.c}
        ORDER BY m.metric, e.subject{self.c}"""

    _ROLLUP_UPSERT = """
        ON CONFLICT (experiment, metric, subject) DO UPDATE SET pre_n = r.pre_n + excluded.pre_n,
          pre_sum = r.pre_sum + excluded.pre_sum, post_n = r.post_n + excluded.post_n,
          post_sum = r.post_sum + excluded.post_sum, den_sum = r.den_sum + excluded.den_sum"""
    _SUMS_UPSERT = """
        ON CONFLICT (experiment, metric, variant) DO UPDATE SET n = s.n + excluded.n, y_sum = s.y_sum + excluded.y_sum,
          y_sum_sq = s.y_sum_sq + excluded.y_sum_sq, x_sum = s.x_sum + excluded.x_sum,
          x_sum_sq = s.x_sum_sq + excluded.x_sum_sq, xy_sum = s.xy_sum + excluded.xy_sum"""
    _ROLLUP_COLUMNS = "experiment, metric, subject, pre_n, pre_sum, post_n, post_sum, den_sum"
    _SUMS_COLUMNS = "experiment, metric, variant, n, y_sum, y_sum_sq, x_sum, x_sum_sq, xy_sum"

    def fold(self, spec: ExperimentSpec, source: str, *, sums: bool) -> str:
        """Add ``source``'s events to the rollups. With ``sums`` (PostgreSQL), in the same statement, add to
        the variant sums the change each updated row of an exposed subject made: its new (counted, y, c)
        minus its old one, the old row being the new one less this batch's increments."""
        upsert = (f"INSERT INTO experiment_rollups AS r ({self._ROLLUP_COLUMNS}) SELECT CAST(:name AS TEXT), "
                  f"metric, subject, pre_n, pre_sum, post_n, post_sum, den_sum FROM agg a WHERE true "
                  f"{{where}} {self._ROLLUP_UPSERT}")
        if not sums:
            return f"WITH {self._map(spec)}, agg AS ({self._fold_select(source)}) {upsert.format(where='')}"
        # rows that exist (every exposed subject's) are UPDATEd, not upserted: no speculative-insertion lock
        # record per row, and RETURNING carries the increments beside the new values (~15 % faster than
        # INSERT … ON CONFLICT with a join back to the batch); the rest (subjects not exposed yet) are inserted
        changed = ", ".join(f"r.{c}, a.{c} AS i_{c}" for c in _ROLLUP_VALUES)
        k1, v1, c1 = self._by_metric(spec, lambda c: f"u.{c}", "u")
        k0, v0, c0 = self._by_metric(spec, lambda c: f"(u.{c} - u.i_{c})", "u")
        k2, v2, c2 = self._by_metric(spec, lambda c: f"(u.{c} - a.{c})", "u")
        inserted = upsert.format(where="AND NOT EXISTS (SELECT 1 FROM upd WHERE upd.metric = a.metric AND "
                                       "upd.subject = a.subject)")
        return f"""
        WITH {self._map(spec)}, agg AS ({self._fold_select(source)}),
        upd AS (
          UPDATE experiment_rollups r SET {", ".join(f"{c} = r.{c} + a.{c}" for c in _ROLLUP_VALUES)}
          FROM agg a WHERE r.experiment = CAST(:name AS TEXT) AND r.metric = a.metric AND r.subject = a.subject
          RETURNING r.metric, r.subject, r.variant, r.exposed_at, {changed}),
        ins AS ({inserted} RETURNING metric, subject, variant, exposed_at, {", ".join(_ROLLUP_VALUES)}),
        d AS (
          SELECT u.metric, u.variant, ({k1}) - ({k0}) AS dk, {v1} AS v1, {c1} AS c1, {v0} AS v0, {c0} AS c0
          FROM upd u WHERE u.variant IS NOT NULL AND u.exposed_at < :stop
          UNION ALL
          SELECT u.metric, u.variant, ({k1}) - ({k2}), {v1}, {c1}, {v2}, {c2}
          FROM ins u JOIN agg a ON a.metric = u.metric AND a.subject = u.subject
          WHERE u.variant IS NOT NULL AND u.exposed_at < :stop)
        {self._sums_from_d()}"""

    def _sums_from_d(self) -> str:
        return f"""
        INSERT INTO experiment_sums AS s ({self._SUMS_COLUMNS})
        SELECT CAST(:name AS TEXT), metric, variant, SUM(dk), SUM(v1 - v0), SUM(v1 * v1 - v0 * v0), SUM(c1 - c0),
          SUM(c1 * c1 - c0 * c0), SUM(v1 * c1 - v0 * c0)
        FROM d GROUP BY metric, variant ORDER BY metric, variant {self._SUMS_UPSERT}"""

    def expose(self, spec: ExperimentSpec) -> str:
        """PostgreSQL, one statement: new exposures from ``incoming_exposures`` (first wins), their subjects'
        rollup rows given the variant (created when the subject had no events yet), those rows' values added
        to the variant sums, and the exposure counts (metric '') too. Returns how many exposures were new."""
        k, v, c = self._by_metric(spec, lambda col: f"u.{col}", "u")
        return f"""
        WITH {self._map(spec)},
        new AS (
          INSERT INTO experiment_exposures (experiment, subject, variant, at)
          SELECT DISTINCT ON (subject) CAST(:name AS TEXT), subject, variant, at FROM incoming_exposures
          ORDER BY subject, at
          ON CONFLICT DO NOTHING RETURNING subject, variant, at),
        up AS (
          INSERT INTO experiment_rollups AS r (experiment, metric, subject, variant, exposed_at, pre_n, pre_sum,
            post_n, post_sum, den_sum)
          SELECT CAST(:name AS TEXT), mm.metric, new.subject{self.c}, new.variant, new.at, 0, 0.0, 0, 0.0, 0.0
          FROM new CROSS JOIN mm ORDER BY mm.metric, new.subject{self.c}
          ON CONFLICT (experiment, metric, subject) DO UPDATE SET variant = excluded.variant,
            exposed_at = excluded.exposed_at WHERE r.variant IS NULL
          RETURNING metric, variant, exposed_at, pre_n, pre_sum, post_n, post_sum, den_sum),
        d AS (
          SELECT u.metric, u.variant, {k} AS k, {v} AS v, {c} AS c FROM up u WHERE u.exposed_at < :stop
          UNION ALL SELECT CAST('' AS TEXT), variant, 1, 0.0, 0.0 FROM new WHERE at < :stop),
        added AS (
          INSERT INTO experiment_sums AS s ({self._SUMS_COLUMNS})
          SELECT CAST(:name AS TEXT), metric, variant, SUM(k), SUM(v), SUM(v * v), SUM(c), SUM(c * c), SUM(v * c)
          FROM d GROUP BY metric, variant ORDER BY metric, variant {self._SUMS_UPSERT})
        SELECT COUNT(*) FROM new"""

    def seed_rollups(self, spec: ExperimentSpec) -> str:
        """A zero rollup row per exposed subject and metric, carrying its variant (a rebuild, after a delete)."""
        return f"""
        WITH {self._map(spec)}
        INSERT INTO experiment_rollups (experiment, metric, subject, variant, exposed_at, pre_n, pre_sum, post_n,
          post_sum, den_sum)
        SELECT CAST(:name AS TEXT), mm.metric, x.subject, x.variant, x.at, 0, 0.0, 0, 0.0, 0.0
        FROM experiment_exposures x CROSS JOIN mm WHERE x.experiment = CAST(:name AS TEXT)"""

    def aggregate_rollups(self, spec: ExperimentSpec) -> str:
        """Per metric and variant: (n, Σy, Σy², Σc, Σc², Σyc) over the exposed subjects' rollup rows."""
        k, v, c = self._by_metric(spec, lambda col: f"u.{col}", "u")
        return f"""
        SELECT metric, variant, SUM(k), SUM(v), SUM(v * v), SUM(c), SUM(c * c), SUM(v * c) FROM (
          SELECT u.metric AS metric, u.variant AS variant, {k} AS k, {v} AS v, {c} AS c FROM experiment_rollups u
          WHERE u.experiment = CAST(:name AS TEXT) AND u.variant IS NOT NULL AND u.exposed_at < :stop) t
        GROUP BY metric, variant"""

    def rebuild_sums(self, spec: ExperimentSpec) -> str:
        return f"""
        INSERT INTO experiment_sums ({self._SUMS_COLUMNS})
        SELECT CAST(:name AS TEXT), kept.* FROM ({self.aggregate_rollups(spec)}) AS kept
        UNION ALL
        SELECT CAST(:name AS TEXT), '', variant, COUNT(*), 0.0, 0.0, 0.0, 0.0, 0.0 FROM experiment_exposures
        WHERE experiment = CAST(:name AS TEXT) AND at < :stop GROUP BY variant"""


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
