"""Rollout leases in the SQL store: fair shares, expiry and takeover, and fenced writes refused."""

from __future__ import annotations

import pytest

from rollwise.core.engine import RolloutEngine
from rollwise.core.leases import LeaseLost
from rollwise.core.protocols import ConflictError
from rollwise.spec.loader import load_spec_text
from rollwise.wiring import open_leases, open_store
from support.specs import SHOP

STEPS = "  canary:\n    steps:\n      - setWeight: 10\n      - pause: {duration: 1h}\n"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> float:
        return self.t


def _start(store_url: str, count: int, clock: Clock) -> None:
    store = open_store(store_url)
    engine = RolloutEngine(store, clock)
    for index in range(count):
        engine.start(load_spec_text((SHOP + STEPS).replace("name: shop", f"name: r{index}", 1)))


def test_controllers_share_due_rollouts_and_take_over_an_expired_holder(store_url: str) -> None:
    clock = Clock()
    _start(store_url, 7, clock)
    leases = open_leases(open_store(store_url))
    assert leases is not None
    a = leases.claim("a", clock.t, 10)
    assert len(a) == 7  # alone, it takes everything due
    b = leases.claim("b", clock.t, 10)
    assert b == {}  # a holds all of them, unexpired
    a = leases.claim("a", clock.t + 1, 10)  # two live now: a hands back beyond its share of 4
    assert len(a) == 4
    b = leases.claim("b", clock.t + 1, 10)
    assert len(b) == 3 and not set(a) & set(b)
    # a stops renewing (killed): once its lease expires, b takes everything, with newer tokens
    b2 = leases.claim("b", clock.t + 11.5, 10)
    assert set(b2) == {f"r{i}" for i in range(7)}
    assert all(b2[name] > token for name, token in a.items())
    assert {lease.holder for lease in leases.leases()} == {"b"}


def test_a_write_under_a_superseded_token_is_refused(store_url: str) -> None:
    clock = Clock()
    _start(store_url, 1, clock)
    store = open_store(store_url)
    leases = open_leases(store)
    assert leases is not None
    old = leases.claim("a", clock.t, 5)["r0"]
    fenced_old = leases.fenced("r0", old)
    record = fenced_old.get("r0")
    new = leases.claim("b", clock.t + 6, 5)["r0"]  # a's lease expired; b took it
    assert new == old + 1
    with pytest.raises(LeaseLost, match="superseded"):
        fenced_old.save(record)
    with pytest.raises(LeaseLost):
        fenced_old.confirm_route("r0", 1, clock.t + 6)
    with pytest.raises(LeaseLost):
        fenced_old.get("r0")
    assert store.get("r0").revision == record.revision  # nothing written by the stale holder
    saved = leases.fenced("r0", new).save(record)  # the new holder writes
    assert saved.revision == record.revision + 1
    with pytest.raises(ConflictError):  # and revisions still guard against a stale record
        leases.fenced("r0", new).save(record)


def test_released_leases_are_taken_at_once_and_tokens_only_grow(store_url: str) -> None:
    clock = Clock()
    _start(store_url, 2, clock)
    leases = open_leases(open_store(store_url))
    assert leases is not None
    first = leases.claim("a", clock.t, 60)
    leases.release("a")
    assert [c.id for c in leases.controllers()] == []
    second = leases.claim("b", clock.t + 0.1, 60)
    assert set(second) == set(first) and all(second[n] == first[n] + 1 for n in first)


def test_watched_services_are_shared_out_handed_back_and_taken_over(store_url: str) -> None:
    clock = Clock()
    _start(store_url, 1, clock)  # a heartbeat needs the schema only; the rollout keeps claim honest
    leases = open_leases(open_store(store_url))
    assert leases is not None
    leases.claim("a", clock.t, 10)
    leases.claim("b", clock.t, 10)  # two live controllers
    services = ["cart", "pay", "shop"]
    a = leases.claim_watch("a", services, clock.t, 10)
    b = leases.claim_watch("b", services, clock.t, 10)
    assert len(a) == 2 and b == {"shop"}  # a's fair share of 3 between 2 is 2; b gets the rest
    assert leases.claim_watch("b", services, clock.t + 1, 10) == {"shop"}  # renewed, nothing more to take
    assert leases.claim_watch("a", ["pay", "shop"], clock.t + 1, 10) == {"pay"}  # cart no longer watched
    # b stops renewing (killed): once its lease expires, a takes shop over
    assert leases.claim_watch("a", ["pay", "shop"], clock.t + 11.5, 10) == {"pay", "shop"}
    leases.release("a")  # a clean stop hands every watch lease back at once
    assert leases.claim_watch("b", ["pay", "shop"], clock.t + 12, 10) == {"pay", "shop"}


def test_a_fenced_read_parses_the_record_again_only_when_its_revision_moved(store_url: str) -> None:
    clock = Clock()
    _start(store_url, 1, clock)
    store = open_store(store_url)
    leases = open_leases(store)
    assert leases is not None
    fenced = leases.fenced("r0", leases.claim("a", clock.t, 10)["r0"])
    first = fenced.get("r0")
    assert fenced.get("r0") is first  # unchanged: the record read before
    store.save(first.model_copy(update={"updated_at": 5.0}))  # someone else saves (a command)
    second = fenced.get("r0")
    assert (second.revision, second.updated_at) == (first.revision + 1, 5.0)
    assert fenced.get("r0") is second
