"""The store keeps what the data plane confirmed beside the desired route, and says who is due.

``due`` is what every runner polls: a rollout is due while it has not ended, while its confirmed
route is behind the desired one (an abort, undo or ``promote --full`` that ended it), and when an
ended rollout's unrouted versions are to be stopped. Memory, SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from rollwise.adapters.stores.sql import SqlStore
from rollwise.core.carry import Carry
from rollwise.core.memory_store import MemoryStore
from rollwise.core.model import Phase, RolloutRecord
from rollwise.core.protocols import Store
from support.migrations import migrate
from support.pg import postgres_schema
from support.store import make_event, make_record

T0 = 1_700_000_000.0


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    if request.param == "sqlite":
        with SqlStore(f"sqlite:///{tmp_path / 'rollwise.db'}") as opened:
            yield opened
        return
    with postgres_schema(request.getfixturevalue("postgres_url")) as url, SqlStore(url) as opened:
        yield opened


def _route_change(store: Store, name: str, **update: object) -> RolloutRecord:
    record = store.get(name)
    route = record.route.model_copy(update={"revision": record.route.revision + 1, "canary_weight": 30.0})
    return store.save(record.model_copy(update={"route": route, **update}))


def test_a_confirmation_never_moves_back_nor_bumps_the_record_revision(store: Store) -> None:
    store.create(make_record(), [make_event("checkout", "started")])
    saved = _route_change(store, "checkout", phase=Phase.PROGRESSING)
    saved = _route_change(store, "checkout")
    assert store.applied_route("checkout") is None

    store.confirm_route("checkout", 2, T0 + 5)
    store.confirm_route("checkout", 1, T0 + 6)  # a late, older confirmation
    store.confirm_route("checkout", 9, T0 + 7)  # a revision the store never desired
    applied = store.applied_route("checkout")
    assert applied is not None and (applied.revision, applied.at) == (2, T0 + 5)
    assert store.get("checkout").revision == saved.revision


def test_an_ended_rollout_is_due_until_its_final_route_is_confirmed(store: Store) -> None:
    store.create(make_record("ended"), [make_event("ended", "started")])
    store.create(make_record("running", at=T0 + 1), [make_event("running", "started")])
    _route_change(store, "running", phase=Phase.PROGRESSING)
    _route_change(store, "ended", phase=Phase.PROGRESSING)
    store.confirm_route("ended", 1, T0)
    assert store.due(T0) == ["ended", "running"]

    final = _route_change(store, "ended", phase=Phase.ABORTED, finished_at=T0 + 2, carry=Carry(retired=True))
    assert store.due(T0 + 3) == ["ended", "running"]  # aborted, but the data plane still has revision 1
    store.confirm_route("ended", final.route.revision, T0 + 3)
    assert store.due(T0 + 3) == ["running"]


def test_an_ended_rollout_with_processes_is_due_again_when_its_rollback_window_closes(store: Store) -> None:
    store.create(make_record(), [make_event("checkout", "started")])
    final = _route_change(store, "checkout", phase=Phase.SUCCEEDED, finished_at=T0, rollback_until=T0 + 600)
    store.confirm_route("checkout", final.route.revision, T0)
    assert store.due(T0 + 599) == []
    assert store.due(T0 + 600) == ["checkout"]
    record = store.get("checkout")
    store.save(record.model_copy(update={"carry": Carry(retired=True)}))
    assert store.due(T0 + 601) == []


def test_a_new_run_under_the_same_name_starts_unconfirmed(store: Store) -> None:
    store.create(make_record(), [make_event("checkout", "started")])
    final = _route_change(store, "checkout", phase=Phase.ABORTED, finished_at=T0)
    store.confirm_route("checkout", final.route.revision, T0)
    store.create(make_record(at=T0 + 10), [make_event("checkout", "started")])
    assert store.applied_route("checkout") is None
    store.confirm_route("checkout", final.route.revision, T0 + 11)  # the old run's runner, late
    assert store.applied_route("checkout") is None


def test_the_migration_counts_ended_rollouts_as_applied(store_url: str) -> None:
    """Upgrading re-applies nothing: ended rollouts were applied (or never will be) by older runners."""
    with SqlStore(store_url, migrate=False) as old:
        migrate(old, "0001")
        state = make_record().model_copy(update={"phase": Phase.ABORTED, "revision": 3})
        state = state.model_copy(update={"route": state.route.model_copy(update={"revision": 4})})
        with old.write() as conn:
            conn.execute(text("INSERT INTO rollouts (name, revision, generation, phase, spec, state, created_at, "
                              "updated_at) VALUES ('checkout', 3, 1, 'Aborted', '{}', :state, 1, 2)"),
                         {"state": state.model_dump_json()})
    with SqlStore(store_url) as upgraded:
        applied = upgraded.applied_route("checkout")
        assert applied is not None and applied.revision == 4
        assert upgraded.due(T0) == []
