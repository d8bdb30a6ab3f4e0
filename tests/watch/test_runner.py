"""The watch runner end to end in one process: a real store, control plane and audit log, a metric source
whose versions fail on cue, and a virtual clock for the watch's points."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from rollwise.adapters.stores.sql import SqlStore
from rollwise.control.plane import ControlPlane
from rollwise.control.principal import Principal
from rollwise.core.clock import VirtualClock
from rollwise.core.model import Event, Phase, RolloutRecord, VersionStats, Window, WindowQuery
from rollwise.report.metrics import delivery_metrics
from rollwise.report.postmortem import load_postmortem, to_markdown
from rollwise.spec import load_spec_text
from rollwise.watch.actions import PlaneActuator
from rollwise.watch.incidents import Incident
from rollwise.watch.runner import Watch
from rollwise.wiring import open_audit, open_watch
from support.specs import SHOP

SPEC = SHOP + """
  canary:
    steps:
      - setWeight: 20
      - pause: {untilApproved: true}
watch: {actions: [notify, undo], minConfidence: 0.5, interval: 10s, metrics: [errorRate]}
"""


class World:
    """Requests split by the rollout's current route; each version fails at its own rate from a given time."""

    def __init__(self, store: Any, clock: VirtualClock) -> None:
        self.store, self.clock = store, clock
        self.rates: dict[str, list[tuple[float, float]]] = {"v1": [(0.0, 0.01)], "v2": [(0.0, 0.01)]}
        self.rng = random.Random(7)

    def rate(self, version: str, at: float) -> float:
        return [r for since, r in self.rates[version] if since <= at][-1]

    def collect(self, query: WindowQuery) -> Window:
        weight = self.store.get(query.rollout).route.canary_weight / 100.0
        sides = []
        for version, share in ((query.baseline_version, 1 - weight), (query.canary_version, weight)):
            requests = int(2000 * share)
            errors = sum(self.rng.random() < self.rate(version, query.end) for _ in range(requests))
            sides.append(VersionStats(requests=requests, errors=errors, latency_sum_ms=20.0 * requests)
                         if requests else None)
        return Window(query.start, query.end, sides[0], sides[1], cursor={"n": 1})


class Notes:
    def __init__(self) -> None:
        self.sent: list[Event] = []

    def notify(self, record: RolloutRecord, event: Event) -> None:
        self.sent.append(event)


def setup(tmp_path: Path) -> tuple[ControlPlane, Watch, World, VirtualClock, Notes]:
    store = SqlStore(f"sqlite:///{tmp_path / 'r.db'}")
    audit, _ = open_audit(store)
    plane = ControlPlane(store, audit)
    plane.start(load_spec_text(SPEC), Principal.local_user("ana"), "release", None)
    clock = VirtualClock(time.time())
    world, notes = World(store, clock), Notes()
    watch_store = open_watch(store)
    watch = Watch(store, watch_store, lambda record: world, PlaneActuator(plane, watch_store, notes), clock, audit)
    return plane, watch, world, clock, notes


def run(watch: Watch, clock: VirtualClock, points: int) -> list[Incident]:
    seen = []
    for _ in range(points):
        clock.advance(10)
        seen.extend(watch.tick())
    return seen


class Kept:
    """An ``IncidentRecorder`` that keeps what it is told."""

    def __init__(self) -> None:
        self.resolved: list[Incident] = []

    def rollout_ended(self, record: RolloutRecord, events: object) -> None:
        pass

    def incident_resolved(self, incident: Incident) -> None:
        self.resolved.append(incident)


def test_a_release_that_fails_after_promotion_is_undone_and_the_incident_resolves(tmp_path: Path) -> None:
    from rollwise.learning.incident_memory import UNDONE
    from rollwise.report.similar import incident_signature

    plane, watch, world, clock, notes = setup(tmp_path)
    watch.incidents = kept = Kept()
    plane.command("shop", "promote", Principal.local_user("ana"), "looks good", full=True)
    assert plane.store.get("shop").phase == Phase.SUCCEEDED
    run(watch, clock, 30)
    world.rates["v2"].append((clock.now() + 5, 0.08))  # the time bomb
    seen = run(watch, clock, 12)
    opened, resolved = seen[0], seen[-1]
    assert opened.culprit is not None and opened.culprit["version"] == "v2"
    assert opened.culprit["kind"] in ("promotion", "rollout-step", "rollout-start")
    assert opened.attribution["confidence"] >= 0.5 and opened.attribution["onset"]["effect_low"] > 0
    assert abs(opened.onset - (clock.now() - 120)) < 90
    kinds = {a["kind"]: a["outcome"] for a in opened.actions}
    assert kinds == {"notify": "done", "undo": "done"}
    assert plane.store.get("shop").phase == Phase.ROLLED_BACK
    assert notes.sent and notes.sent[0].type == "incident"
    assert resolved.status == "resolved" and resolved.id == opened.id and resolved.recovery_s is not None
    rows = plane.audit.entries()
    undo = [r for r in rows if r.action == "rollout.undo"]
    assert undo and undo[0].actor == "rollwise-watch" and f"incident #{opened.id}" in (undo[0].reason or "")
    assert {"watch.incident", "watch.undo", "watch.resolve"} <= {r.action for r in rows}
    metrics = delivery_metrics(plane.store, watch=watch.watch, now=clock.now() + 1)
    assert metrics["overall"]["rolled_back"] == 1  # the undone release is a failed change
    incidents = metrics["incidents"]
    assert incidents["opened"] == 1 and incidents["undone_or_killed_by_the_watch"] == 1
    assert incidents["time_to_restore_s"]["median"] > 0 and incidents["open_now"] == 0
    report = to_markdown(load_postmortem(plane.store, "shop"))
    assert "## Incidents after the release" in report and f"incident #{opened.id} on shop (resolved)" in report
    assert "action:" in report and "undo rollout:shop -> done" in report
    (remembered,) = kept.resolved  # kept for similar-incident search when it resolved
    assert remembered.id == opened.id and incident_signature(remembered).resolution == UNDONE


def test_an_anomaly_on_every_version_is_not_blamed_on_the_canary(tmp_path: Path) -> None:
    plane, watch, world, clock, _notes = setup(tmp_path)
    plane.engine().tick("shop")  # the canary takes 20 % of the traffic
    run(watch, clock, 30)
    for version in ("v1", "v2"):
        world.rates[version].append((clock.now() + 5, 0.08))  # a dependency fails: both versions suffer
    seen = run(watch, clock, 4)
    (opened,) = seen
    assert opened.culprit is None
    assert [a["outcome"] for a in opened.actions if a["kind"] != "notify"] == ["skipped"]
    assert watch.store.get("shop").phase != Phase.ROLLED_BACK


class Stalled(World):
    """What a stalled watcher read before it stalled: the route as it was (v2 at 100 %), not as it is now."""

    def collect(self, query: WindowQuery) -> Window:
        sides = []
        for version, share in ((query.baseline_version, 0.0), (query.canary_version, 1.0)):
            requests = int(2000 * share)
            errors = sum(self.rng.random() < self.rate(version, query.end) for _ in range(requests))
            sides.append(VersionStats(requests=requests, errors=errors, latency_sum_ms=20.0 * requests)
                         if requests else None)
        return Window(query.start, query.end, sides[0], sides[1], cursor={"n": 1})


def test_two_watchers_of_one_service_open_one_incident_and_undo_once(tmp_path: Path) -> None:
    """A watcher that stalled past its watch lease still writes when it wakes, on what it read before the
    other watcher acted; the store keeps one open incident per service, so the stalled one adopts the
    first's incident and acts no second time."""
    plane, first, world, clock, _notes = setup(tmp_path)
    stalled = Stalled(plane.store, clock)
    second = Watch(plane.store, first.watch, lambda record: stalled,
                   PlaneActuator(plane, first.watch, Notes()), clock, plane.audit)
    plane.command("shop", "promote", Principal.local_user("ana"), "looks good", full=True)
    both = [first, second]
    for _ in range(30):
        clock.advance(10)
        for watch in both:
            watch.tick()
    for w in (world, stalled):
        w.rates["v2"].append((clock.now() + 5, 0.08))
    opened = []
    for _ in range(8):
        clock.advance(10)
        for watch in both:
            opened.extend(i for i in watch.tick() if i.status == "open")
    assert len(opened) == 1
    assert [i.id for i in first.watch.incidents(service="shop")] == [opened[0].id]
    actions = [r.action for r in plane.audit.entries()]
    assert actions.count("watch.undo") == 1
    for _ in range(30):  # the anomaly passes for both (the undo worked; the stalled one wakes to the same)
        clock.advance(10)
        stalled.rates["v2"].append((clock.now(), 0.01))
        for watch in both:
            watch.tick()
    assert first.watch.incident(opened[0].id).status == "resolved"  # type: ignore[union-attr]
    assert [r.action for r in plane.audit.entries()].count("watch.resolve") == 1  # resolved once, kept once
