"""Records, events and windows for store tests; also imported by the writer subprocess."""

from __future__ import annotations

from rollwise.core.model import Event, Phase, RolloutRecord, RouteState, VersionStats, Window
from rollwise.spec.loader import load_spec_text

CANARY_SPEC = """\
name: {name}
service: checkout
versions:
  stable: {{name: v1, address: "127.0.0.1:9001", readyTimeout: 1.5s}}
  canary: {{name: v2, command: "python -m app --port {{port}}"}}
strategy:
  canary:
    stickyHeader: x-user
    steps:
      - setWeight: 5
      - pause: {{duration: 30s}}
      - setWeight: 50
      - pause: {{untilApproved: true}}
    analysis:
      interval: 2.5s
      metrics:
        - {{name: errors, type: errorRate, slo: "< 0.1%", maxIncrease: 0.05%}}
        - {{name: p99, type: latency, quantile: 0.99, slo: "< 200ms"}}
traffic: {{router: simulated}}
labels: {{team: payments}}
"""


def make_record(name: str = "checkout", at: float = 1_700_000_000.0) -> RolloutRecord:
    spec = load_spec_text(CANARY_SPEC.format(name=name))
    return RolloutRecord(
        name=name,
        spec=spec,
        phase=Phase.PENDING,
        created_at=at,
        updated_at=at,
        route=RouteState(stable="v1", canary="v2"),
    )


def make_event(name: str, kind: str, at: float = 1_700_000_000.0, **data: object) -> Event:
    return Event(rollout=name, at=at, type=kind, message=f"{kind} happened", data=dict(data))


def make_window(start: float, requests: int = 100, errors: int = 1) -> Window:
    return Window(
        start=start,
        end=start + 10.0,
        baseline=VersionStats(
            requests=requests,
            errors=0,
            latency_buckets=((50.0, requests - 5), (100.0, requests)),
            latency_sum_ms=40.0 * requests,
            kpis={"checkout": 3.0},
        ),
        canary=VersionStats(requests=requests // 10, errors=errors, kpis={"checkout": 1.0}),
    )
