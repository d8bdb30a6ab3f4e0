"""Leases: which controller acts on which rollout, and how the due rollouts are shared out.

Several controllers may run on one store. Each rollout has at most one lease; its holder alone
ticks the rollout and applies its route. A lease carries a fencing token that grows by one every
time the lease changes hands, and every write a holder makes (the record with its events, the
route confirmation) carries the token and is refused when a newer one exists (``LeaseLost``), so a
holder that stalled past its lease can never write over its successor. A holder renews its leases
on every pass; one killed with ``kill -9`` stops renewing and another controller takes its
rollouts once the lease expires (within one ``ttl`` plus one poll).

Pure values and rules only: the store keeps the leases (``Leases`` in ``core/protocols.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_LEASE_TTL_S = 10.0
"""A killed holder's rollouts are taken over within this (plus a poll): the issue asks for 15 s."""


class LeaseLost(Exception):
    """A newer fencing token exists for the rollout: this controller must stop acting on it."""


@dataclass(frozen=True)
class Lease:
    """One rollout's lease as stored: who holds it (None: released), until when, and its token."""

    rollout: str
    holder: str | None
    token: int
    expires_at: float
    acquired_at: float

    def held_at(self, now: float) -> bool:
        return self.holder is not None and self.expires_at > now


@dataclass(frozen=True)
class ControllerSeen:
    """A controller process as the store last heard of it (its heartbeat is its lease claim)."""

    id: str
    started_at: float
    seen_at: float
    ttl: float

    def alive_at(self, now: float) -> bool:
        return self.seen_at + self.ttl > now


def fair_share(due: int, live_controllers: int) -> int:
    """How many due rollouts one controller should hold: an even split, rounded up, at least one."""
    return max(1, math.ceil(due / max(1, live_controllers)))

