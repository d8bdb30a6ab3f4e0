"""Exposure events for A/B experiments: who saw which variant of an experiment flag, and when.

A flag is an experiment when its metadata has `experiment: true`. The flag service records one exposure
per evaluation of such a flag; analysis later joins exposures with outcomes per variant. Bounded in
memory (oldest dropped first), optionally mirrored to a JSON-lines file for later analysis.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


def is_experiment(metadata: Mapping[str, Any]) -> bool:
    flag = metadata.get("experiment")
    return flag is True or (isinstance(flag, str) and flag.lower() == "true")


@dataclass(frozen=True)
class Exposure:
    flag: str
    variant: str
    subject: str | None
    """The targeting key of whoever saw the variant (None if the caller sent none)."""
    at: float


@dataclass(frozen=True)
class VariantExposure:
    exposures: int
    subjects: int


class ExposureLog:
    def __init__(self, maxlen: int = 200_000, path: str | Path | None = None):
        self._events: deque[Exposure] = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self.path = Path(path) if path is not None else None

    def record(self, flag: str, variant: str, subject: str | None, at: float) -> Exposure:
        event = Exposure(flag, variant, subject, at)
        with self._lock:
            self._events.append(event)
            if self.path is not None:
                with self.path.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(asdict(event)) + "\n")
        return event

    def query(
        self,
        flag: str | None = None,
        variant: str | None = None,
        subject: str | None = None,
        since: float | None = None,
        limit: int | None = None,
    ) -> list[Exposure]:
        with self._lock:
            events = list(self._events)
        out = [
            e
            for e in events
            if (flag is None or e.flag == flag)
            and (variant is None or e.variant == variant)
            and (subject is None or e.subject == subject)
            and (since is None or e.at >= since)
        ]
        return out[-limit:] if limit else out

    def summary(self, flag: str) -> dict[str, VariantExposure]:
        """Per variant: exposure count and distinct subjects."""
        counts: dict[str, int] = {}
        subjects: dict[str, set[str | None]] = {}
        for e in self.query(flag):
            counts[e.variant] = counts.get(e.variant, 0) + 1
            subjects.setdefault(e.variant, set()).add(e.subject)
        return {v: VariantExposure(counts[v], len(subjects[v])) for v in sorted(counts)}
