"""Simulated service-days with a change log, for measuring change attribution (bench/watch_attribution.py).

Pure and seeded: one ``ServiceDay`` is a minute-by-minute error-rate series of one service with diurnal
and weekly traffic (binomial noise, so quiet hours are noisier), the day's changes (releases of the
service, changes to its dependency, other services and other regions, flag changes to flags it reads
or not, config pushes), and the truth:

* ``injected``: one change brings a regression: a step (+0.5 to +2 pp), a time bomb (the step comes
  10-30 min after the change) or a drift (+2 pp over an hour, a leak);
* ``pre_change``: an anomaly that began before any change (a dependency's outage nobody recorded), with
  a release of the service landing 2-10 min *after* its onset, while people react, and others earlier;
* ``quiet``: changes that change nothing.

When a flag change injects the regression and the flag is a partial rollout, the bad events
concentrate on its ``on`` variant: ``split`` gives per-variant (bad, total) counts since a time.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from rollwise.watch.changes import ANY_SERVICE, Change

MINUTES = 1440
SERVICE = "web"
DEPENDENCY = "db"
FLAGS = ("checkout", "search")  # flags the service reads; "banner" it does not


@dataclass(frozen=True)
class ServiceDay:
    seed: int
    start: float
    kind: str  # injected | pre_change | quiet
    points: list[tuple[float, float]]
    requests: list[int]
    changes: list[Change]
    anomaly_at: float | None = None
    culprit_id: str | None = None
    shape: str = ""
    flag_share: float | None = None  # the culprit flag's share of traffic (a split to tell by), if partial
    split_base: dict[str, float] = field(default_factory=dict)  # per-variant error rate once anomalous

    def split(self, since: float, until: float) -> dict[str, tuple[float, float]] | None:
        """Per-variant (bad, total) between ``since`` and ``until`` when a partial flag splits traffic."""
        if self.flag_share is None:
            return None
        total = sum(n for (t, _), n in zip(self.points, self.requests, strict=True) if since <= t <= until)
        rng = random.Random(self.seed * 7 + 1)
        out = {}
        for variant, share in (("on", self.flag_share), ("off", 1 - self.flag_share)):
            n = int(total * share)
            p = self.split_base.get(variant, 0.005)
            out[variant] = (float(_binomial(rng, n, p)), float(n))
        return out


def _binomial(rng: random.Random, n: int, p: float) -> int:
    if n <= 0:
        return 0
    mean, sd = n * p, math.sqrt(n * p * (1 - p))
    return max(0, round(rng.gauss(mean, sd)))


def _traffic(minute: int, weekday: int) -> int:
    diurnal = 1.0 + 0.6 * math.sin(2 * math.pi * (minute - 360) / MINUTES)
    weekly = 0.7 if weekday >= 5 else 1.0
    return max(50, int(1500 * diurnal * weekly))


def _background_changes(rng: random.Random, start: float, avoid: tuple[float, float] | None) -> list[Change]:
    """Changes that change nothing: other services, other regions, flags not read, the dependency."""
    out = []
    for index in range(rng.randint(2, 5)):
        at = start + rng.uniform(30, MINUTES - 30) * 60
        if avoid is not None and avoid[0] - 3600 <= at <= avoid[1]:
            at = max(start + 60, avoid[0] - rng.uniform(3 * 3600, 6 * 3600))
        kind = rng.choice(["other-service", "other-region", "flag-unread", "dependency"])
        if kind == "other-service":
            out.append(Change(service="billing", at=at, kind="deploy", version=f"b{index}", id=f"bg{index}"))
        elif kind == "other-region":
            out.append(Change(service=SERVICE, at=at, kind="config", region="us", id=f"bg{index}"))
        elif kind == "flag-unread":
            out.append(Change(service=ANY_SERVICE, at=at, kind="flag", scope="flag:banner", id=f"bg{index}"))
        else:
            out.append(Change(service=DEPENDENCY, at=at, kind="config", id=f"bg{index}"))
    return out


def _culprit_change(rng: random.Random, at: float) -> tuple[Change, bool]:
    """The change that will regress: a release of the service, a flag it reads, its config, its dependency.
    Returns it and whether it is a partial flag rollout (a split to tell by)."""
    kind = rng.choice(["release", "release", "flag", "config", "dependency"])
    if kind == "release":
        return Change(service=SERVICE, at=at, kind="promotion", version="v9", previous_version="v8",
                      source="rollwise", id="culprit", scope="rollout:web", data={"rollout": "web"}), False
    if kind == "flag":
        return Change(service=ANY_SERVICE, at=at, kind="flag", scope=f"flag:{rng.choice(FLAGS)}", version="on",
                      source="rollwise", id="culprit"), rng.random() < 0.5
    if kind == "config":
        return Change(service=SERVICE, at=at, kind="config", region="eu", id="culprit"), False
    return Change(service=DEPENDENCY, at=at, kind="deploy", version="d4", id="culprit"), False


def service_day(seed: int, kind: str) -> ServiceDay:
    rng = random.Random(seed)
    start = 1_700_000_000.0 + 86400.0 * seed
    weekday = seed % 7
    requests = [_traffic(m, weekday) for m in range(MINUTES)]
    lift = [0.0] * MINUTES
    changes: list[Change] = []
    anomaly_at = culprit_id = None
    shape, share = "", None
    if kind in ("injected", "pre_change"):
        onset_min = rng.randint(400, MINUTES - 120)
        shape = rng.choice(["step", "step", "time-bomb", "drift"]) if kind == "injected" else rng.choice(
            ["step", "drift"])
        size = rng.uniform(0.005, 0.02) if shape != "drift" else 0.02
        change_min = onset_min - (rng.randint(10, 30) if shape == "time-bomb" else rng.randint(0, 4))
        for m in range(onset_min, MINUTES):
            lift[m] = size * (min(1.0, (m - onset_min + 1) / 60) if shape == "drift" else 1.0)
        anomaly_at = start + onset_min * 60
        if kind == "injected":
            culprit, partial = _culprit_change(rng, start + change_min * 60)
            changes.append(culprit)
            culprit_id, share = culprit.id, (rng.uniform(0.1, 0.5) if partial else None)
        else:
            late = start + (onset_min + rng.randint(2, 10)) * 60
            changes.append(Change(service=SERVICE, at=late, kind="promotion", version="v9", previous_version="v8",
                                  source="rollwise", id="late-release", scope="rollout:web",
                                  data={"rollout": "web"}))
        changes += _background_changes(rng, start, (anomaly_at - 1800, anomaly_at + 3600))
    else:
        changes.append(Change(service=SERVICE, at=start + rng.randint(300, 1200) * 60, kind="promotion",
                              version="v9", previous_version="v8", source="rollwise", id="benign",
                              scope="rollout:web", data={"rollout": "web"}))
        changes += _background_changes(rng, start, None)
    base = 0.005
    points = []
    for m in range(MINUTES):
        p = base + (lift[m] / share if share else lift[m]) * (share or 1.0)
        points.append((start + m * 60, _binomial(rng, requests[m], p) / requests[m]))
    split_base = {"on": base + lift[-1] / share, "off": base} if share else {}
    return ServiceDay(seed, start, kind, points, requests, sorted(changes, key=lambda c: c.at), anomaly_at,
                      culprit_id, shape, share, split_base)
