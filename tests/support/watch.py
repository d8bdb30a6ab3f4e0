"""A watch over one started rollout with a real store and audit log, a fake actuator and a virtual clock."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rollwise.adapters.stores.sql import SqlStore
from rollwise.control.plane import ControlPlane
from rollwise.control.principal import Principal
from rollwise.core.clock import VirtualClock
from rollwise.core.model import RolloutRecord
from rollwise.spec import load_spec_text
from rollwise.watch.incidents import Incident
from rollwise.watch.runner import Watch
from rollwise.wiring import open_audit, open_watch
from support.specs import SHOP

SPEC = SHOP + """
  canary:
    steps:
      - setWeight: 20
    analysis:
      metrics:
        - {name: conversion, type: kpi, numerator: checkout, denominator: visit}
"""


class Actuator:
    def __init__(self) -> None:
        self.notes: list[str] = []

    def undo(self, rollout: str, reason: str) -> str:
        return "undone"

    def kill_flag(self, flag: str, reason: str) -> str:
        return "killed"

    def notify(self, record: RolloutRecord, incident: Incident, message: str) -> None:
        self.notes.append(message)


def watch_of(tmp_path: Path, watch_block: str, source: Any = None, **extra: Any) -> tuple[Watch, VirtualClock]:
    store = SqlStore(f"sqlite:///{tmp_path / 'r.db'}")
    audit, _ = open_audit(store)
    ControlPlane(store, audit).start(load_spec_text(SPEC + watch_block), Principal.local_user("ana"), "release", None)
    clock = VirtualClock(time.time())
    return Watch(store, open_watch(store), lambda record: source, Actuator(), clock, audit, **extra), clock


def run(watch: Watch, clock: VirtualClock, points: int) -> list[Incident]:
    seen = []
    for _ in range(points):
        clock.advance(10)
        seen.extend(watch.tick())
    return seen


