"""Delivery outcomes land in the store's ``notifications`` table, numbered by the event they report."""

from __future__ import annotations

import time
from pathlib import Path

from rollwise.adapters.stores.sql import SqlStore
from rollwise.core.clock import VirtualClock
from rollwise.core.engine import RolloutEngine
from rollwise.simulate import Behaviour
from rollwise.simulate.world import SimulatedWorld
from rollwise.spec import load_spec
from rollwise.wiring import build_notifier
from support.reports import REPO, Receiver


def test_deliveries_are_recorded_with_event_numbers(tmp_path: Path, receiver: Receiver) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'n.db'}")
    env = {"ROLLWISE_SLACK_WEBHOOK_URL": receiver.url}
    notifier = build_notifier(env=env, log_path=tmp_path / "log.jsonl", store=store)
    world = SimulatedWorld(Behaviour(), Behaviour(error_rate=0.08), seed=4)
    clock = VirtualClock(1_700_000_000.0)
    engine = RolloutEngine(store=store, clock=clock, router=world, metrics=world, notifier=notifier)
    spec = load_spec(REPO / "examples" / "canary.yaml")
    engine.start(spec)
    record = engine.tick(spec.name)
    while not record.phase.terminal:
        clock.advance(10)
        record = engine.tick(spec.name)
    try:
        receiver.wait_for(2)  # the stage change and the rollback
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(store.notifications(spec.name)) < len(receiver.requests):
            time.sleep(0.1)
    finally:
        close = getattr(notifier, "close", None)
        if close is not None:
            close()
    rows = store.notifications(spec.name)
    assert rows and all(r["status"] == "delivered" and r["channel"] == "slack" for r in rows)
    seqs = {e.seq: e for e in store.events(spec.name)}
    for row in rows:
        assert row["event_seq"] in seqs  # points at a real event, not 0
    assert any(seqs[r["event_seq"]].type in ("phase", "decision") for r in rows)
