"""Clocks. The engine only asks a clock for the time, so the simulator can run an hour in a blink."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch (or since the simulation began)."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class VirtualClock:
    """A clock that only moves when told to: the simulator and tests drive it."""

    def __init__(self, start: float = 0.0):
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("time does not run backwards")
        self._now += seconds
        return self._now

    def set(self, when: float) -> None:
        if when < self._now:
            raise ValueError("time does not run backwards")
        self._now = when
