"""The change log: every change to a service, made by rollwise or from outside, as one value.

Outside changes (a deploy by another tool, a config push, an infrastructure change) are recorded by a
person or a pipeline (``rollwise changes record``, ``POST /api/v1/changes``) and kept in the store.
Rollwise's own rollout changes are *derived* from the rollouts' append-only event log when the log is
read (``changes_from_rollout``): the events are already the durable, ordered record of every step,
promotion, undo and rollback, so copying them into a second table could only make the two disagree.
Flag changes made through rollwise (kill, restore, share, schedule) are recorded when they are made.

Pure: no I/O, no clock; times are epoch seconds given by the caller.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

OUTSIDE_KINDS = ("deploy", "config", "flag", "infra")
"""What ``changes record`` accepts: changes made outside rollwise."""
ROLLWISE_KINDS = ("rollout-start", "rollout-step", "promotion", "undo", "rollback", "flag")
"""What rollwise records of its own changes."""
ANY_SERVICE = "*"
"""The service of a change not tied to one service (a flag read by every service, shared infrastructure)."""

MAX_TEXT = 2000
MAX_NAME = 255
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_CREATED = re.compile(r"^rollout of .+ (?P<stable>\S+) -> (?P<canary>\S+) created")


class ChangeError(ValueError):
    """A change that cannot be recorded; the message names the field."""


@dataclass(frozen=True)
class Change:
    """One change to a service: what, when, where (version, region, scope), who and through what."""

    service: str
    at: float
    kind: str
    version: str | None = None
    region: str | None = None
    scope: str | None = None  # what the change touched beyond service/version: "flag:checkout", "rollout:web"
    description: str = ""
    actor: str = "unknown"
    source: str = "outside"  # "outside" (recorded), "rollwise" (its own), or a pipeline's name
    id: str = ""  # "c<N>" for a stored change, "r:<rollout>:<seq>" for one derived from rollout events
    previous_version: str | None = None  # what the change replaced, when known (an undo goes back to it)
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Change:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def parse_duration(text: str, field_name: str = "since") -> float:
    """``24h`` / ``90m`` / ``3600`` (seconds) / ``2d`` / ``1w`` in seconds; ``ChangeError`` naming the field."""
    match = _DURATION.match(text or "")
    if not match or float(match.group(1)) <= 0:
        raise ChangeError(f"{field_name}: {text[:40]!r} is not a duration such as 30m, 24h or 7d")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def _text(value: str | None, name: str, limit: int, required: bool = False) -> str | None:
    if value is None or value == "":
        if required:
            raise ChangeError(f"{name}: required")
        return None
    if "\x00" in value or len(value) > limit:
        raise ChangeError(f"{name}: at most {limit} characters, no NUL")
    return value


def outside_change(*, service: str, kind: str, at: float, version: str | None = None, region: str | None = None,
                   description: str = "", actor: str = "unknown", source: str = "outside",
                   scope: str | None = None) -> Change:
    """A change recorded from outside rollwise, checked field by field (``ChangeError`` names the field)."""
    if kind not in OUTSIDE_KINDS:
        raise ChangeError(f"kind: {kind[:40]!r} is not one of {', '.join(OUTSIDE_KINDS)}")
    service = _text(service, "service", MAX_NAME, required=True) or ""
    if kind == "deploy" and not version:
        raise ChangeError("version: required for a deploy")
    return Change(service=service, at=at, kind=kind, version=_text(version, "version", MAX_NAME),
                  region=_text(region, "region", MAX_NAME), scope=_text(scope, "scope", MAX_NAME),
                  description=_text(description, "description", MAX_TEXT) or "",
                  actor=_text(actor, "actor", MAX_NAME) or "unknown",
                  source=_text(source, "source", MAX_NAME) or "outside")


def changes_from_rollout(service: str, region: str | None, events: Iterable[Any]) -> list[Change]:
    """A rollout's own changes from its events (``Event`` or JSON dicts): starts, weight steps, promotions,
    undos and rollbacks, each naming the version it moved traffic to and the one it came from."""
    found: list[Change] = []
    stable = canary = None
    for event in events:
        item = event if isinstance(event, dict) else event.model_dump()
        kind, message, data = item["type"], item.get("message", ""), item.get("data") or {}
        if kind == "created":
            match = _CREATED.match(message)
            stable, canary = (match.group("stable"), match.group("canary")) if match else (None, None)
        change = _rollout_change(kind, data, stable, canary)
        if change is None:
            continue
        what, version, previous = change
        found.append(Change(service=service, at=float(item["at"]), kind=what, version=version, region=region,
                            scope=f"rollout:{item['rollout']}", description=message, actor=item.get("actor", "engine"),
                            source="rollwise", id=f"r:{item['rollout']}:{item.get('seq', 0)}",
                            previous_version=previous, data={"rollout": item["rollout"]}))
    return found


def _rollout_change(kind: str, data: dict[str, Any], stable: str | None,
                    canary: str | None) -> tuple[str, str | None, str | None] | None:
    if kind == "created":
        return "rollout-start", canary, stable
    if kind == "step" and (data.get("weight") is not None or data.get("kind") == "cutover"):
        return "rollout-step", canary, stable
    if kind == "command" and data.get("command") == "undo":
        return "undo", stable, canary
    if kind == "phase" and data.get("phase") == "Succeeded":
        return "promotion", canary, stable
    if kind == "phase" and data.get("phase") in ("RolledBack", "Aborted"):
        return "rollback", stable, canary
    return None


def select(changes: Iterable[Change], *, service: str | None = None, since: float | None = None,
           until: float | None = None) -> list[Change]:
    """``changes`` of ``service`` (changes to any service included) in [since, until], oldest first."""
    kept = [c for c in changes
            if (service is None or c.service in (service, ANY_SERVICE))
            and (since is None or c.at >= since) and (until is None or c.at <= until)]
    return sorted(kept, key=lambda c: (c.at, c.id))


def merge(*groups: Sequence[Change]) -> list[Change]:
    """Several sources' changes as one log, oldest first."""
    return sorted((c for group in groups for c in group), key=lambda c: (c.at, c.id))
