"""SqlStore semantics, on SQLite and PostgreSQL alike (see conftest.store_url)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, inspect, text
from sqlalchemy.exc import DBAPIError

import rollwise.adapters.stores.sql_flags
import rollwise.adapters.stores.sql_leases  # noqa: F401  (their tables join ``metadata`` on import)
from rollwise.adapters.stores.sql import VERSION_TABLE, SqlStore, default_store_url, metadata
from rollwise.core.carry import Carry
from rollwise.core.model import Phase, Window
from rollwise.core.protocols import ConflictError, NotFoundError
from support.store import make_event, make_record, make_window


@pytest.fixture
def store(store_url: str):
    with SqlStore(store_url) as opened:
        yield opened


def test_record_round_trips_unchanged(store: SqlStore) -> None:
    record = make_record().model_copy(
        update={
            "phase": Phase.PROGRESSING,
            "step_index": 2,
            "stage_started_at": 1_700_000_012.25,
            "cursor": {"envoy": {"v1": [1, 2.5]}},
            "carry": Carry(judges={"sprt": {"llr": -0.125, "n": 40}}),
            "last_verdict": "continue",
        }
    )
    created = store.create(record, [make_event("checkout", "started")])
    assert created.revision == 1

    loaded = store.get("checkout")
    assert loaded == created
    # The spec's durations survive exactly, not as their rounded human form ("1.5s" -> "2s").
    assert loaded.spec.versions.stable.readyTimeout == 1.5
    assert loaded.spec.analysis() is not None and loaded.spec.analysis().interval == 2.5  # type: ignore[union-attr]


def test_get_unknown_rollout_raises_not_found(store: SqlStore) -> None:
    with pytest.raises(NotFoundError):
        store.get("nope")


def test_save_bumps_revision_and_rejects_stale_writers(store: SqlStore) -> None:
    first = store.create(make_record(), [])
    moved = store.save(first.model_copy(update={"step_index": 1}))
    assert moved.revision == 2
    assert store.get("checkout").step_index == 1

    with pytest.raises(ConflictError):
        store.save(first.model_copy(update={"step_index": 7}), [make_event("checkout", "step")])
    # The losing save wrote nothing, not even its event.
    assert store.get("checkout").step_index == 1
    assert store.get("checkout").revision == 2
    assert store.events("checkout") == []


def test_save_of_unknown_rollout_raises_not_found(store: SqlStore) -> None:
    with pytest.raises(NotFoundError):
        store.save(make_record("ghost").model_copy(update={"revision": 1}))


def test_create_refuses_an_active_name_and_replaces_a_finished_one(store: SqlStore) -> None:
    first = store.create(make_record(), [make_event("checkout", "started")])
    first = store.save(first, [], [(0, make_window(0.0))])
    with pytest.raises(ConflictError):
        store.create(make_record(), [])

    finished = store.save(first.model_copy(update={"phase": Phase.SUCCEEDED}), [make_event("checkout", "phase")])
    again = store.create(make_record(at=1_700_000_500.0), [make_event("checkout", "started", run=2)])

    assert again.phase is Phase.PENDING
    # The revision counter continues, so a writer still holding the old run's record conflicts.
    assert again.revision == finished.revision + 1
    with pytest.raises(ConflictError):
        store.save(finished.model_copy(update={"phase": Phase.ABORTED}))
    # History is kept and numbered on; windows start afresh for the new run.
    assert [(e.seq, e.type) for e in store.events("checkout")] == [
        (1, "started"),
        (2, "phase"),
        (3, "started"),
    ]
    assert store.windows("checkout") == []


def test_events_get_consecutive_seqs_per_rollout(store: SqlStore) -> None:
    a = store.create(make_record("a"), [make_event("a", "started")])
    b = store.create(make_record("b"), [make_event("b", "started")])
    a = store.save(a, [make_event("a", "step", n=1), make_event("a", "decision", n=2)])
    store.save(b, [make_event("b", "step")])
    store.save(a, [make_event("a", "phase")])

    assert [(e.seq, e.type) for e in store.events("a")] == [
        (1, "started"),
        (2, "step"),
        (3, "decision"),
        (4, "phase"),
    ]
    assert store.events("a")[1].data == {"n": 1}
    assert [e.seq for e in store.events("a", since_seq=2)] == [3, 4]
    assert [(e.rollout, e.seq) for e in store.events()] == [
        ("a", 1),
        ("b", 1),
        ("a", 2),
        ("a", 3),
        ("b", 2),
        ("a", 4),
    ]


def test_events_must_belong_to_the_saved_rollout(store: SqlStore) -> None:
    record = store.create(make_record("a"), [])
    with pytest.raises(ValueError, match="belongs to rollout 'b'"):
        store.save(record, [make_event("b", "step")])


def test_windows_round_trip_by_stage(store: SqlStore) -> None:
    record = store.create(make_record(), [])
    record = store.save(record, [], [(0, make_window(0.0)), (0, make_window(10.0, errors=3))])
    store.save(record, [], [(1, make_window(20.0, requests=500)), (1, Window(30.0, 40.0, None, None))])

    everything = store.windows("checkout")
    assert [stage for stage, _ in everything] == [0, 0, 1, 1]
    assert everything[0][1] == make_window(0.0)
    assert everything[1][1].canary is not None and everything[1][1].canary.errors == 3
    assert [w for _, w in store.windows("checkout", stage=1)] == [
        make_window(20.0, requests=500),
        Window(30.0, 40.0, None, None),
    ]
    assert store.windows("other") == []


def test_non_finite_numbers_are_stored_as_null(store: SqlStore) -> None:
    record = store.create(make_record(), [])
    carry = Carry(judges={"llr": math.inf})
    store.save(record.model_copy(update={"carry": carry}), [make_event("checkout", "x", z=math.nan)])
    assert store.get("checkout").carry.judges == {"llr": None}
    assert store.events("checkout")[0].data == {"z": None}


def test_list_orders_by_creation_and_filters_active(store: SqlStore) -> None:
    done = store.create(make_record("old", at=1.0), [])
    store.save(done.model_copy(update={"phase": Phase.ROLLED_BACK}))
    store.create(make_record("new", at=2.0), [])
    assert [r.name for r in store.list()] == ["old", "new"]
    assert [r.name for r in store.list(active_only=True)] == ["new"]


def test_kpi_totals_sum_per_metric_over_half_open_interval(store: SqlStore) -> None:
    for at, metric, value in [
        (9.9, "visit", 100.0),
        (10.0, "visit", 1.0),
        (12.0, "visit", 2.0),
        (13.0, "checkout", 0.5),
        (19.99, "checkout", 1.0),
        (20.0, "checkout", 50.0),
    ]:
        store.push_kpi("checkout", "v2", metric, value, at)
    store.push_kpi("checkout", "v1", "visit", 7.0, 11.0)
    store.push_kpi("other", "v2", "visit", 7.0, 11.0)

    assert store.kpi_totals("checkout", "v2", 10.0, 20.0) == {"visit": 3.0, "checkout": 1.5}
    assert store.kpi_totals("checkout", "v1", 10.0, 20.0) == {"visit": 7.0}
    assert store.kpi_totals("checkout", "v2", 30.0, 40.0) == {}
    assert store.kpi_totals_by_version("checkout", ["v1", "v2", "v3"], 10.0, 20.0) == {
        "v1": {"visit": 7.0}, "v2": {"visit": 3.0, "checkout": 1.5}, "v3": {}}


def test_opening_twice_migrates_once_and_keeps_data(store_url: str) -> None:
    with SqlStore(store_url) as first:
        first.create(make_record(), [make_event("checkout", "started")])
    with SqlStore(store_url) as second:
        assert second.get("checkout").revision == 1
        with second.engine.connect() as conn:
            versions = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    assert sorted(versions) == _head_revisions()


def _head_revisions() -> list[str]:
    """Every migration head: the core's and each capability's branch (the store upgrades to all of them)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from rollwise.adapters.stores.sql import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    heads = sorted(ScriptDirectory.from_config(config).get_heads())
    assert heads
    return heads


def _every_table() -> MetaData:
    """The core tables and those of each capability's own store module (``adapters/stores/sql_*.py``
    with its own ``metadata``, each on its own migration branch)."""
    import importlib
    import pkgutil

    import rollwise.adapters.stores as stores

    sources = [metadata]
    for module in pkgutil.iter_modules(stores.__path__):
        if module.name.startswith("sql_"):
            own = getattr(importlib.import_module(f"rollwise.adapters.stores.{module.name}"), "metadata", None)
            if isinstance(own, MetaData) and own is not metadata:
                sources.append(own)
    combined = MetaData()
    for source in sources:
        for table in source.tables.values():
            table.to_metadata(combined)
    return combined


def test_migrated_schema_matches_the_tables_the_code_queries(store: SqlStore) -> None:
    with store.engine.connect() as conn:
        differences = compare_metadata(
            MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}), _every_table()
        )
        tables = set(inspect(conn).get_table_names())
    assert differences == []
    assert {
        "rollouts",
        "events",
        "windows",
        "kpi_samples",
        "audit_log",
        "api_tokens",
        "notifications",
    } <= tables


def test_history_tables_refuse_rewrites(store: SqlStore) -> None:
    store.create(make_record(), [make_event("checkout", "started")])
    for statement in ("UPDATE events SET message = 'forged'", "DELETE FROM events"):
        with pytest.raises(DBAPIError, match="append-only"), store.write() as conn:
            conn.execute(text(statement))
    assert store.events("checkout")[0].message == "started happened"


def test_default_url_comes_from_the_environment_or_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("ROLLWISE_STORE", raising=False)
    assert default_store_url() == f"sqlite:///{tmp_path}/.rollwise/rollwise.db"
    assert not (tmp_path / ".rollwise").exists()  # naming the store creates nothing; opening it to write does

    monkeypatch.setenv("ROLLWISE_STORE", "postgresql://rw@127.0.0.1/rollwise")
    assert default_store_url() == "postgresql+psycopg://rw@127.0.0.1/rollwise"


def test_heads_name_each_rollouts_service_and_watch_without_loading_it(store: SqlStore) -> None:
    from rollwise.spec.models import WatchSpec

    plain = make_record("b-plain", at=1_700_000_001.0)
    watched = make_record("a-watched", at=1_700_000_002.0)
    watched = watched.model_copy(update={"spec": watched.spec.model_copy(update={"watch": WatchSpec()})})
    store.create(plain, [])
    store.create(watched, [])
    store.save(store.get("b-plain"))
    heads = store.heads()
    assert [(h.name, h.service, h.revision, h.watched) for h in heads] == [
        ("b-plain", plain.spec.service, 2, False), ("a-watched", watched.spec.service, 1, True)]
    assert [h.name for h in heads] == [r.name for r in store.list()]


def test_a_save_that_need_not_be_durable_commits_without_waiting_for_the_disk_on_postgresql(store: SqlStore) -> None:
    from sqlalchemy import event

    seen: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda _c, _cur, statement, *_a: seen.append(statement))
    store.create(make_record(), [])
    saved = store.save(store.get("checkout"), windows=[(0, make_window(0.0))], durable=False)
    store.save(saved, [make_event("checkout", "step")])
    asynchronous = [s for s in seen if "synchronous_commit" in s]
    assert asynchronous == (["SET LOCAL synchronous_commit = off"] if store.engine.dialect.name == "postgresql" else [])
    assert store.get("checkout").revision == 3 and len(store.windows("checkout")) == 1
