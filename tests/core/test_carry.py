"""A rollout's typed carry: records stored with the old dict still read, and the migration rewrites them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from rollwise.adapters.stores.migrations.versions.v0003_typed_carry import typed, untyped
from rollwise.adapters.stores.sql import SqlStore
from rollwise.core.carry import Approval, BaselineRead, Carry, Hold, MetricsFailure, Promotion
from rollwise.core.model import Phase, RolloutRecord, RouteState
from rollwise.spec.loader import load_spec_text
from support.migrations import migrate
from support.pg import postgres_schema

SPEC = """\
name: checkout
service: checkout
versions:
  stable: {name: v1, address: "127.0.0.1:9001"}
  canary: {name: v2, address: "127.0.0.1:9002"}
strategy:
  blueGreen: {autoPromote: false}
traffic: {router: simulated}
"""

HISTORY = {"start": 0.0, "end": 600.0, "baseline": {"requests": 10, "errors": 0}}
LEGACY_CARRY: dict[str, Any] = {
    "forced_step": -1,
    "forced_by": {"actor": "alice", "reason": "looks fine"},
    "approval": {"actor": "bob", "reason": "", "gate": "cutover", "step": 0, "stage": 0},
    "hold": "cutover",
    "cap_base": 12.5,
    "history": HISTORY,
    "metrics_error": {"message": "prometheus down", "since": 1.0, "last": 2.0},
    "stopped": ["v1"],
    "retired": True,
    "sequential": {"errors": {"n": 40}},
}


def _legacy_state() -> dict[str, Any]:
    record = RolloutRecord(name="checkout", spec=load_spec_text(SPEC), phase=Phase.PROGRESSING, created_at=1.0,
                           updated_at=2.0, route=RouteState(stable="v1", canary="v2"), revision=3)
    state: dict[str, Any] = json.loads(record.model_dump_json())
    state.pop("cutover_approved")
    return {**state, "carry": LEGACY_CARRY, "approved_step": -1}


EXPECTED = Carry(
    promotion=Promotion(actor="alice", reason="looks fine", step=None),
    approval=Approval(actor="bob", gate=Hold.CUTOVER, step=0, stage=0),
    hold=Hold.CUTOVER,
    cap_base=12.5,
    history=BaselineRead(**HISTORY),
    metrics_error=MetricsFailure(message="prometheus down", since=1.0, last=2.0),
    stopped=["v1"],
    retired=True,
    judges={"sequential": {"errors": {"n": 40}}},
)


def test_a_record_stored_with_the_old_carry_dict_reads_as_the_typed_carry() -> None:
    record = RolloutRecord.model_validate(_legacy_state())
    assert record.carry == EXPECTED
    assert record.cutover_approved and record.approved_step is None
    assert record.carry.promoted_at(None) and not record.carry.promoted_at(0)
    assert record.metrics_error == "prometheus down"
    assert record.carry.for_judges() == {"sequential": {"errors": {"n": 40}}, "history": HISTORY}


def test_a_canary_promote_keeps_its_step_and_a_missing_actor_reads_as_unknown() -> None:
    carry = Carry.model_validate({"forced_step": 2, "forced_by": {}})
    assert carry.promotion == Promotion(actor="unknown", reason="", step=2)
    assert carry.promoted_at(2) and not carry.promoted_at(None)


#: Carry fields added after migration ``typed_carry``: rows it rewrites never hold them.
AFTER_TYPED_CARRY = {"priors", "waves", "route_error"}


def test_the_typed_shape_reads_back_unchanged() -> None:
    dumped = json.loads(EXPECTED.model_dump_json())
    assert Carry.model_validate(dumped) == EXPECTED
    at_migration = {k: v for k, v in dumped.items() if k not in AFTER_TYPED_CARRY}
    assert typed({"carry": at_migration}) == {"carry": at_migration}


def test_the_migration_functions_invert_each_other() -> None:
    state = _legacy_state()
    assert untyped(typed(state)) == state
    assert RolloutRecord.model_validate(typed(state)) == RolloutRecord.model_validate(state)


def test_downgrading_leaves_unset_fields_out_of_the_old_dict() -> None:
    """The old engine read ``"history" in carry`` as "already read" and ``float(carry["cap_base"])``."""
    state = json.loads(RolloutRecord.model_validate(_legacy_state()).model_dump_json())
    state["carry"] = json.loads(Carry(judges={"sequential": {}}).model_dump_json())
    assert untyped(state)["carry"] == {"sequential": {}, "stopped": [], "retired": False}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'rollwise.db'}"
        return
    with postgres_schema(request.getfixturevalue("postgres_url")) as url:
        yield url


def _stored_state(store: SqlStore) -> dict[str, Any]:
    with store.engine.connect() as conn:
        state = conn.execute(text("SELECT state FROM rollouts WHERE name = 'checkout'")).scalar_one()
    return state if isinstance(state, dict) else json.loads(state)  # type: ignore[no-any-return]


def test_the_migration_rewrites_stored_carries_to_the_typed_shape_and_back(store_url: str) -> None:
    legacy = _legacy_state()
    with SqlStore(store_url, migrate=False) as old:
        migrate(old, "route_applied")
        with old.write() as conn:
            conn.execute(text("INSERT INTO rollouts (name, revision, generation, phase, spec, state, created_at, "
                              "updated_at) VALUES ('checkout', 3, 1, 'Progressing', '{}', :state, 1, 2)"),
                         {"state": json.dumps(legacy)})
    with SqlStore(store_url) as upgraded:
        stored = _stored_state(upgraded)
        assert stored["carry"]["promotion"] == {"actor": "alice", "reason": "looks fine", "step": None}
        assert stored["carry"]["judges"] == {"sequential": {"errors": {"n": 40}}}
        assert "forced_step" not in stored["carry"] and "sequential" not in stored["carry"]
        assert stored["cutover_approved"] is True and stored["approved_step"] is None
        record = upgraded.get("checkout")
        assert record.carry == EXPECTED and record.cutover_approved
        migrate(upgraded, "route_applied", "downgrade")
        assert _stored_state(upgraded) == legacy
