"""Two controllers on one store run the post-release watch: one incident per anomaly, not one per controller.

Each controller has its own store connection, control plane, audit log and watch, as two
``rollwise controller`` processes would; they take turns on a virtual clock. A watch lease per
service (``Leases.claim_watch``) lets only one of them score the service; when that one stops, the
other takes the service over and adopts the open incident instead of opening a second.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollwise.adapters.stores.sql import SqlStore
from rollwise.control.plane import ControlPlane
from rollwise.control.principal import Principal
from rollwise.controller import Controller
from rollwise.core.clock import VirtualClock
from rollwise.core.model import Event, Phase, RolloutRecord, VersionStats, Window, WindowQuery
from rollwise.spec import load_spec_text
from rollwise.watch.actions import PlaneActuator
from rollwise.watch.runner import Watch
from rollwise.wiring import open_audit, open_leases, open_watch
from support.pg import postgres_schema
from support.specs import SHOP

SPEC = SHOP + """
  canary:
    steps:
      - setWeight: 20
      - pause: {untilApproved: true}
watch: {actions: [notify, undo], minConfidence: 0.5, interval: 10s, metrics: [errorRate]}
"""


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'rollwise.db'}"
        return
    with postgres_schema(request.getfixturevalue("postgres_url")) as url:
        yield url


class World:
    """Requests split by the rollout's current route; v2 starts failing when told."""

    def __init__(self, store: SqlStore) -> None:
        self.store, self.rng = store, random.Random(7)
        self.bad_from: float | None = None

    def collect(self, query: WindowQuery) -> Window:
        weight = self.store.get(query.rollout).route.canary_weight / 100.0
        sides = []
        for version, share in ((query.baseline_version, 1 - weight), (query.canary_version, weight)):
            rate = 0.08 if version == "v2" and self.bad_from is not None and query.end >= self.bad_from else 0.01
            requests = int(2000 * share)
            errors = sum(self.rng.random() < rate for _ in range(requests))
            sides.append(VersionStats(requests=requests, errors=errors, latency_sum_ms=20.0 * requests)
                         if requests else None)
        return Window(query.start, query.end, sides[0], sides[1], cursor={"n": 1})


class Notes:
    def notify(self, record: RolloutRecord, event: Event) -> None:
        pass


def _controller(url: str, ident: str, world: World, clock: VirtualClock) -> Controller:
    """One controller as its own process would build it: its own connection, plane, audit and watch."""
    store = SqlStore(url)
    audit, _ = open_audit(store)
    watch_store = open_watch(store)
    actuator = PlaneActuator(ControlPlane(store, audit), watch_store, Notes())
    ctl = Controller(store, leases=open_leases(store), identity=ident, clock=clock, lease_ttl=30.0)
    ctl.watch = Watch(store, watch_store, lambda _record: world, actuator, clock, audit)
    return ctl


def test_two_controllers_open_one_incident_and_the_survivor_adopts_it(store_url: str) -> None:
    store = SqlStore(store_url)
    audit, _ = open_audit(store)
    plane = ControlPlane(store, audit)
    plane.start(load_spec_text(SPEC), Principal.local_user("ana"), "release", None)
    plane.command("shop", "promote", Principal.local_user("ana"), "looks good", full=True)
    clock, world = VirtualClock(time.time()), World(store)
    controllers = [_controller(store_url, ident, world, clock) for ident in ("a", "b")]

    def run(points: int, running: list[Controller]) -> None:
        for _ in range(points):
            clock.advance(10)
            for ctl in running:
                ctl.tick_all()
                ctl.watch_once()

    run(30, controllers)
    watching = [ctl for ctl in controllers if ctl.watch is not None and "shop" in ctl.watch.targets]
    assert len(watching) == 1  # one watcher for the service, not one per controller
    world.bad_from = clock.now() + 5  # the time bomb
    for _ in range(12):  # until the watcher opens an incident (two alarming points confirm it)
        run(1, controllers)
        if open_watch(store).incidents(service="shop"):
            break
    incidents = open_watch(store).incidents(service="shop")
    assert len(incidents) == 1 and incidents[0].status == "open"
    assert store.get("shop").phase == Phase.ROLLED_BACK  # undone once, by the one watcher

    holder = watching[0]
    holder.close()  # a clean stop hands the watch lease back; the other takes the service over
    survivor = next(ctl for ctl in controllers if ctl is not holder)
    run(1, [survivor])
    assert survivor.watch is not None and survivor.watch.targets["shop"].incident is not None  # adopted
    run(40, [survivor])  # v2 gets no traffic after the undo: the incident resolves
    incidents = open_watch(store).incidents(service="shop")
    assert [(i.id, i.status) for i in incidents] == [(incidents[0].id, "resolved")]
    survivor.close()
