"""The experiments store on SQLite and PostgreSQL: lifecycle, first exposure wins, batched events, and the
one-query sufficient statistics checked against the same numbers computed from the raw events in Python."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from rollwise.adapters.stores.sql import SqlStore
from rollwise.adapters.stores.sql_experiments import (
    ExperimentExists,
    ExperimentNotFound,
    SqlExperimentStore,
    readout_query,
)
from rollwise.experiments.model import Experiment, ExperimentSpec, Metric
from rollwise.experiments.stats import Moments
from support.pg import postgres_schema

START = 1_000.0
Event = tuple[str, str, float, float]
SPEC = {
    "name": "checkout", "hypothesis": "h", "owner": "growth", "flag": "new-checkout", "variants": ["off", "on"],
    "primary": {"name": "purchase", "kind": "conversion"},
    "secondary": [{"name": "revenue", "kind": "sum"}, {"name": "latency", "event": "latency_ms", "kind": "mean"},
                  {"name": "rps", "event": "revenue", "kind": "ratio", "denominator": "session"}],
}


@pytest.fixture(params=["sqlite", "postgres"])
def experiments(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlExperimentStore]:
    if request.param == "sqlite":
        store = SqlStore(f"sqlite:///{tmp_path / 'rollwise.db'}")
        yield SqlExperimentStore(store)
        store.close()
        return
    database = request.getfixturevalue("postgres_url")
    with postgres_schema(database) as url:
        store = SqlStore(url)
        yield SqlExperimentStore(store)
        store.close()


def test_lifecycle(experiments: SqlExperimentStore) -> None:
    spec = ExperimentSpec.model_validate(SPEC)
    experiments.create(spec, START)
    with pytest.raises(ExperimentExists):
        experiments.create(spec, START)
    assert [e.name for e in experiments.list()] == ["checkout"]
    stopped = experiments.stop("checkout", actor="ana", reason="done", now=START + 5, killed_flag=True)
    assert (stopped.status, stopped.stopped_by, stopped.stop_reason, stopped.killed_flag) == ("stopped", "ana",
                                                                                              "done", True)
    with pytest.raises(ExperimentExists):
        experiments.stop("checkout", actor="ana", reason="again", now=START + 6)
    with pytest.raises(ExperimentNotFound):
        experiments.get("nope")
    assert experiments.get("checkout").spec == spec


def test_first_exposure_wins(experiments: SqlExperimentStore) -> None:
    experiments.create(ExperimentSpec.model_validate(SPEC), START)
    assert experiments.record_exposures("checkout", [("u1", "on", START + 1), ("u2", "off", START + 1)]) == 2
    assert experiments.record_exposures("checkout", [("u1", "off", START + 2), ("u3", "off", START + 2)]) == 1
    assert experiments.variant_counts("checkout") == {"on": 1, "off": 2}
    assert experiments.variant_counts("checkout", until=START + 1.5) == {"on": 1, "off": 1}


def test_sufficient_statistics_match_the_raw_events(experiments: SqlExperimentStore) -> None:
    rng = np.random.default_rng(4)
    experiment = experiments.create(ExperimentSpec.model_validate(SPEC), START)
    subjects = [f"user-{i}" for i in range(300)]
    variant = {s: ("on" if rng.random() < 0.5 else "off") for s in subjects}
    experiments.record_exposures("checkout", [(s, variant[s], START + 1) for s in subjects])
    events = []
    for s in subjects:
        for _ in range(rng.integers(0, 4)):
            events.append((s, "revenue", float(rng.gamma(2.0, 10.0)), START + 10))  # in the experiment
        for _ in range(rng.integers(0, 3)):
            events.append((s, "revenue", float(rng.gamma(2.0, 10.0)), START - 10))  # before it: CUPED covariate
        events.append((s, "session", float(rng.integers(1, 5)), START + 10))
        if rng.random() < 0.3:
            events.append((s, "purchase", 1.0, START + 20))
        if rng.random() < 0.7:
            events += [(s, "latency_ms", float(rng.gamma(3.0, 30.0)), START + 5) for _ in range(2)]
    events.append(("stranger", "purchase", 1.0, START + 20))  # never exposed: not counted
    assert experiments.record_events(events) == len(events)

    def expected(v: str, name: str) -> Moments:
        mine = [s for s in subjects if variant[s] == v]

        def total(s: str, event: str, after: bool) -> list[float]:
            return [val for who, e, val, at in events if who == s and e == event and (at >= START) == after]
        if name == "purchase":
            y = [1.0 if total(s, "purchase", True) else 0.0 for s in mine]
            x = [1.0 if total(s, "purchase", False) else 0.0 for s in mine]
        elif name == "revenue":
            y = [sum(total(s, "revenue", True)) for s in mine]
            x = [sum(total(s, "revenue", False)) for s in mine]
        elif name == "latency":
            with_events = [s for s in mine if total(s, "latency_ms", True)]
            y = [float(np.mean(total(s, "latency_ms", True))) for s in with_events]
            x = [0.0 for _ in with_events]
        else:
            y = [sum(total(s, "revenue", True)) for s in mine]
            x = [sum(total(s, "session", True)) for s in mine]
        return Moments.of(np.array(y), np.array(x))

    for metric in experiment.spec.metrics:
        got = experiments.moments(experiment, metric)
        for v in ("off", "on"):
            want = expected(v, metric.name)
            for field in ("n", "y_sum", "y_sum_sq", "x_sum", "x_sum_sq", "xy_sum"):
                assert getattr(got[v], field) == pytest.approx(float(getattr(want, field)), rel=1e-9, abs=1e-9), \
                    (metric.name, v, field)


def _from_raw_events(experiments: SqlExperimentStore, experiment: Experiment, metric: Metric,
                     until: float) -> dict[str, Moments]:
    """The readout's statistics folded from ``metric_events`` directly (the path that does not use rollups)."""
    sql, params = readout_query(experiment, metric, until)
    with experiments.engine.connect() as conn:
        return {row[0]: Moments(*(float(v or 0) for v in row[1:])) for row in conn.execute(text(sql), params)}


def _random_events(rng: np.random.Generator, subjects: list[str], times: list[float], size: int) -> list[Event]:
    names = ["purchase", "revenue", "session", "latency_ms", "unrelated"]
    return [(subjects[int(rng.integers(len(subjects)))], names[int(rng.integers(len(names)))],
             float(rng.gamma(2.0, 10.0)), times[int(rng.integers(len(times)))]) for _ in range(size)]


def _assert_same(got: dict[str, Moments], want: dict[str, Moments], what: str) -> None:
    assert got.keys() == want.keys(), what
    for v in want:
        for field in ("n", "y_sum", "y_sum_sq", "x_sum", "x_sum_sq", "xy_sum"):
            assert getattr(got[v], field) == pytest.approx(getattr(want[v], field), rel=1e-9, abs=1e-9), \
                (what, v, field)


def test_rollups_give_the_raw_events_statistics_across_backfill_batches_and_stop(
        experiments: SqlExperimentStore) -> None:
    """Events stored before the experiment existed (backfilled at create), in several batches after, some
    after the stop time (left out of the frozen readout) and some arriving late (after the stop, stamped
    before it): the rollups always give what folding the raw events gives."""
    rng = np.random.default_rng(11)
    subjects = [f"s{i}" for i in range(120)]
    times = [START - 50, START - 1, START, START + 3, START + 40, START + 99]
    experiments.record_events(_random_events(rng, subjects, times, 400))
    spec = ExperimentSpec.model_validate({**SPEC, "primary": {"name": "purchase", "kind": "conversion",
                                                              "cuped": True}})
    experiment = experiments.create(spec, START)
    experiments.record_exposures("checkout", [(s, "on" if i % 3 else "off", START + 1) for i, s in enumerate(subjects)])
    for _ in range(3):
        experiments.record_events(_random_events(rng, subjects, times, 300))
    for metric in spec.metrics:
        _assert_same(experiments.moments(experiment, metric), _from_raw_events(experiments, experiment, metric, 1e18),
                     f"running {metric.name}")
    stopped = experiments.stop("checkout", actor="ana", reason="done", now=START + 50)
    experiments.record_events(_random_events(rng, subjects, times, 300))  # late: some stamped before the stop
    assert stopped.stopped_at is not None
    for metric in spec.metrics:
        got = experiments.moments(stopped, metric, until=stopped.stopped_at)
        _assert_same(got, _from_raw_events(experiments, stopped, metric, stopped.stopped_at), f"stopped {metric.name}")


def test_kept_statistics_follow_exposures_and_events_in_any_order(experiments: SqlExperimentStore) -> None:
    """Exposures and events interleaved (a subject's events before and after its exposure, a subject exposed
    twice, CUPED on a mean): after every batch, the statistics kept at ingestion are the raw tables'."""
    rng = np.random.default_rng(23)
    spec = ExperimentSpec.model_validate({**SPEC, "secondary": [
        *SPEC["secondary"], {"name": "latency_cuped", "event": "latency_ms", "kind": "mean", "cuped": True}]})
    experiment = experiments.create(spec, START)
    subjects = [f"s{i}" for i in range(90)]
    times = [START - 20, START + 1, START + 30]
    for step in range(4):
        experiments.record_events(_random_events(rng, subjects, times, 250))
        chosen = [subjects[int(i)] for i in rng.choice(len(subjects), 30, replace=False)]
        experiments.record_exposures("checkout", [(s, "on" if rng.random() < 0.5 else "off", START + step)
                                                  for s in chosen])
        counts, moments = experiments.statistics(experiment)
        assert counts == experiments.variant_counts("checkout"), step
        for metric in spec.metrics:
            _assert_same(moments[metric.name], _from_raw_events(experiments, experiment, metric, 1e18),
                         f"step {step} {metric.name}")


def test_stale_rollups_are_rebuilt_before_they_are_read(experiments: SqlExperimentStore) -> None:
    """An experiment from before the rollups' current layout (``rollups_version`` 0, what the migration
    leaves) has its rollups and sums rebuilt from the raw tables on the next read."""
    rng = np.random.default_rng(5)
    experiment = experiments.create(ExperimentSpec.model_validate(SPEC), START)
    subjects = [f"s{i}" for i in range(60)]
    experiments.record_exposures("checkout", [(s, "on" if i % 2 else "off", START + 1) for i, s in enumerate(subjects)])
    experiments.record_events(_random_events(rng, subjects, [START - 5, START + 5], 300))
    want = experiments.statistics(experiment)
    with experiments.engine.begin() as conn:
        conn.execute(text("DELETE FROM experiment_rollups"))
        conn.execute(text("DELETE FROM experiment_sums"))
        conn.execute(text("UPDATE experiments SET rollups_version = 0"))
    counts, moments = experiments.statistics(experiment)
    assert counts == want[0]
    for metric in experiment.spec.metrics:
        _assert_same(moments[metric.name], want[1][metric.name], metric.name)


def test_rollups_lost_in_a_crash_are_rebuilt(experiments: SqlExperimentStore) -> None:
    """The rollups and sums are derived (UNLOGGED on PostgreSQL, emptied by a crash): once they are gone,
    with the marker row, the next write or read rebuilds them from the events and exposures."""
    rng = np.random.default_rng(8)
    experiment = experiments.create(ExperimentSpec.model_validate(SPEC), START)
    subjects = [f"s{i}" for i in range(60)]
    experiments.record_exposures("checkout", [(s, "on" if i % 2 else "off", START + 1) for i, s in enumerate(subjects)])
    experiments.record_events(_random_events(rng, subjects, [START - 5, START + 5], 300))
    want = experiments.statistics(experiment)
    with experiments.engine.begin() as conn:
        conn.execute(text("DELETE FROM experiment_rollups"))  # what crash recovery does to UNLOGGED tables
        conn.execute(text("DELETE FROM experiment_sums"))
    experiments.record_events(_random_events(rng, subjects, [START + 6], 50))  # a write first: rebuilt, then added
    for metric in experiment.spec.metrics:
        _assert_same(experiments.moments(experiment, metric), _from_raw_events(experiments, experiment, metric, 1e18),
                     metric.name)
    assert experiments.statistics(experiment)[0] == want[0]
    if experiments.is_postgres:
        with experiments.engine.connect() as conn:
            kinds = dict(conn.execute(text("SELECT relname, relpersistence FROM pg_class WHERE relname IN "
                                           "('experiment_rollups', 'experiment_sums')")).all())
        assert kinds == {"experiment_rollups": "u", "experiment_sums": "u"}
