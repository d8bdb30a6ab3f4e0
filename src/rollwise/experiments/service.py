"""What the CLI and the API do with experiments: create, stop, read out, ingest, and act on guardrails.

The store, the audit log, the clock and the kill switch are handed in (``wiring.open_experiments``
builds the store), so this module does no I/O of its own. Every write is audited with who did it; an
automated stop carries its evidence (the readout's numbers and the rule that fired), and a guardrail
breach on a flag experiment turns the flag off through the kill switch.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from rollwise.control.principal import Principal
from rollwise.core.clock import Clock
from rollwise.core.protocols import AuditLog
from rollwise.experiments.model import EVENT, Experiment, ExperimentSpec
from rollwise.experiments.readout import Readout, readout
from rollwise.experiments.stats import Moments

MAX_BATCH = 100_000
#: What a subject id may hold: printable, no tab, newline or backslash (COPY's text format).
SUBJECT = re.compile(r"^[^\t\n\r\\\x00]{1,255}$")

#: Turns a flag off for everyone (the kill switch): (flag, actor, reason) → a description of the change.
KillSwitch = Callable[[str, str, str], Any]


class ExperimentRepository(Protocol):
    def create(self, spec: ExperimentSpec, now: float) -> Experiment: ...
    def get(self, name: str) -> Experiment: ...
    def list(self) -> list[Experiment]: ...
    def stop(self, name: str, *, actor: str, reason: str, now: float, killed_flag: bool = False) -> Experiment: ...
    def record_exposures(self, name: str, rows: Sequence[tuple[str, str, float]]) -> int: ...
    def record_events(self, rows: Sequence[tuple[str, str, float, float]]) -> int: ...
    def variant_counts(self, name: str, until: float | None = None) -> dict[str, int]: ...
    def statistics(self, experiment: Experiment, until: float | None = None
                   ) -> tuple[dict[str, int], dict[str, dict[str, Moments]]]: ...


class BadInput(ValueError):
    """Input that names its field: ``events[3].subject: ...``."""


def parse_events(items: Sequence[Any], default_at: float) -> list[tuple[str, str, float, float]]:
    """``[{subject, event, value?, at?}]`` → rows, or ``BadInput`` naming the first bad item and field."""
    if len(items) > MAX_BATCH:
        raise BadInput(f"events: at most {MAX_BATCH:,} per batch, got {len(items):,}")
    rows = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadInput(f"events[{i}]: expected an object")
        subject, event = item.get("subject"), item.get("event")
        value, at = item.get("value", 1.0), item.get("at", default_at)
        if not isinstance(subject, str) or not SUBJECT.match(subject):
            raise BadInput(f"events[{i}].subject: 1-255 characters, no tab, newline or backslash")
        if not isinstance(event, str) or not EVENT.match(event):
            raise BadInput(f"events[{i}].event: 1-128 of A-Z a-z 0-9 _ . : -")
        for field, number in (("value", value), ("at", at)):
            if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
                raise BadInput(f"events[{i}].{field}: a finite number")
        rows.append((subject, event, float(value), float(at)))
    return rows


def parse_exposures(experiment: Experiment, items: Sequence[Any], default_at: float) -> list[tuple[str, str, float]]:
    """``[{subject, variant, at?}]`` → rows; the variant must be one of the experiment's."""
    if len(items) > MAX_BATCH:
        raise BadInput(f"exposures: at most {MAX_BATCH:,} per batch, got {len(items):,}")
    variants = set(experiment.spec.variants)
    rows = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadInput(f"exposures[{i}]: expected an object")
        subject, variant, at = item.get("subject"), item.get("variant"), item.get("at", default_at)
        if not isinstance(subject, str) or not SUBJECT.match(subject):
            raise BadInput(f"exposures[{i}].subject: 1-255 characters, no tab, newline or backslash")
        if variant not in variants:
            raise BadInput(f"exposures[{i}].variant: one of {sorted(variants)}")
        if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
            raise BadInput(f"exposures[{i}].at: a finite number")
        rows.append((subject, str(variant), float(at)))
    return rows


def view(experiment: Experiment) -> dict[str, Any]:
    """An experiment as JSON: its lifecycle and its spec (what the API and ``--output json`` show)."""
    return {"name": experiment.name, "status": experiment.status, "started_at": experiment.started_at,
            "stopped_at": experiment.stopped_at, "stopped_by": experiment.stopped_by,
            "stop_reason": experiment.stop_reason, "killed_flag": experiment.killed_flag,
            "spec": experiment.spec.model_dump(mode="json", exclude_none=True)}


@dataclass
class ExperimentService:
    store: ExperimentRepository
    audit: AuditLog
    clock: Clock
    kill_switch: KillSwitch | None = None

    def create(self, spec: ExperimentSpec, who: Principal) -> Experiment:
        experiment = self.store.create(spec, self.clock.now())
        self.audit.append(actor=who.actor, role=who.audit_role, action="experiment.create",
                          target=f"experiment:{spec.name}", after=spec.model_dump(mode="json", exclude_none=True),
                          reason=spec.hypothesis)
        return experiment

    def stop(self, name: str, who: Principal, reason: str) -> Experiment:
        experiment = self.store.stop(name, actor=who.actor, reason=reason, now=self.clock.now())
        self.audit.append(actor=who.actor, role=who.audit_role, action="experiment.stop",
                          target=f"experiment:{name}", before={"status": "running"}, after={"status": "stopped"},
                          reason=reason)
        return experiment

    def readout(self, name: str, until: float | None = None) -> Readout:
        """The readout at ``until`` (default: now, or when it stopped: a stopped experiment's readout is frozen)."""
        experiment = self.store.get(name)
        until = until if until is not None else experiment.stopped_at
        counts, moments = self.store.statistics(experiment, until)
        return readout(experiment, counts, moments)

    def history(self, name: str, points: int = 20) -> list[dict[str, Any]]:
        """The primary metric's lift and confidence sequence at ``points`` times from start to now (or stop)."""
        experiment = self.store.get(name)
        end = experiment.stopped_at or self.clock.now()
        out = []
        for k in range(1, points + 1):
            until = experiment.started_at + (end - experiment.started_at) * k / points
            result = self.readout(name, until)
            out += [{"at": until, "variant": r.variant, "subjects": sum(result.counts.values()),
                     "relative": r.relative, "cs_low": r.cs_low, "cs_high": r.cs_high}
                    for r in result.metrics[0].comparisons]
        return out

    def check(self, name: str, who: Principal) -> Readout:
        """Read out; on a guardrail breach of a running experiment, stop it, kill its flag, audit evidence."""
        result = self.readout(name)
        experiment = self.store.get(name)
        if result.decision != "stop" or experiment.status != "running":
            return result
        flag = experiment.spec.flag
        killed = None
        if flag and self.kill_switch is not None:
            killed = self.kill_switch(flag, who.actor, f"experiment {name}: {result.reason}")
        self.store.stop(name, actor=who.actor, reason=result.reason, now=self.clock.now(),
                        killed_flag=killed is not None)
        evidence = {"rule": result.rule, "breaches": result.breaches, "counts": result.counts,
                    "srm": {"status": result.srm.status, "e_value": result.srm.e_value},
                    "alpha": result.alpha, "comparison_alpha": result.comparison_alpha,
                    "flag_killed": flag if killed is not None else None}
        self.audit.append(actor=who.actor, role=who.audit_role, action="experiment.guardrail",
                          target=f"experiment:{name}", before={"status": "running"},
                          after={"status": "stopped", "evidence": evidence}, reason=result.reason)
        return self.readout(name)
