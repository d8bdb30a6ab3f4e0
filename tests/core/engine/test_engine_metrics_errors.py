"""A metrics backend that fails is reported as a failure, not as "no data" (issue 11, item 7)."""

from __future__ import annotations

from rollwise.adapters.stores.memory import MemoryStore
from rollwise.analysis.explain import explain_decision, explain_metrics
from rollwise.core.clock import VirtualClock
from rollwise.core.engine import RolloutEngine
from rollwise.core.model import Phase, VersionStats, Window, WindowQuery
from rollwise.core.protocols import MetricsError
from rollwise.spec import load_spec_text
from support.specs import SHOP

SPEC = SHOP + """
  canary:
    analysis:
      judge: threshold
      interval: 10s
      minSamples: 50
      minStageTime: 20s
      maxStageTime: 10m
      onNoData: abort
      noDataLimit: 60s
      metrics:
        - {name: error-rate, type: errorRate, slo: "< 1%"}
    steps:
      - setWeight: 10
      - pause: {duration: 30s}
"""

REFUSED = "Prometheus at http://127.0.0.1:9/ unreachable: [Errno 111] Connection refused"


class Switchable:
    """A backend that fails, answers with nothing, or answers with traffic, as the test says."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def collect(self, query: WindowQuery) -> Window:
        if self.mode == "error":
            raise MetricsError(REFUSED)
        if self.mode == "empty":
            return Window(query.start, query.end, None, None)
        stats = VersionStats(requests=1, errors=0)
        return Window(query.start, query.end, stats, stats)


def make(source: Switchable) -> tuple[RolloutEngine, VirtualClock, MemoryStore]:
    clock = VirtualClock(1000.0)
    store = MemoryStore()
    engine = RolloutEngine(store=store, clock=clock, metrics=source)
    engine.start(load_spec_text(SPEC))
    return engine, clock, store


def run(engine: RolloutEngine, clock: VirtualClock, seconds: float) -> Phase:
    phase = engine.tick("shop").phase
    for _ in range(int(seconds / 5)):
        clock.advance(5)
        phase = engine.tick("shop").phase
    return phase


def test_a_failing_backend_is_reported_once_and_is_the_abort_reason() -> None:
    engine, clock, store = make(Switchable("error"))
    assert run(engine, clock, 40) == Phase.PROGRESSING  # unknown is not bad
    record = store.get("shop")
    assert record.metrics_error == REFUSED
    assert all(w.error == REFUSED and not w.has_data for _, w in store.windows("shop"))
    errors = [e for e in store.events("shop") if e.type == "metrics-error"]
    assert len(errors) == 1 and errors[0].message == f"metrics backend error: {REFUSED} (holding: unknown, not bad)"
    decision = next(e for e in store.events("shop") if e.type == "decision")
    assert decision.message.startswith(f"metrics backend error: {REFUSED}") and "no data" not in decision.message
    assert "Metrics backend error: " + REFUSED in explain_decision(decision)
    assert REFUSED in (explain_metrics(store.events("shop")) or "")
    assert run(engine, clock, 60) == Phase.ABORTED
    final = store.events("shop")[-1]
    assert final.message == f"Aborted: no metrics for 1m: the backend failed: {REFUSED} (onNoData: abort)"
    assert len([e for e in store.events("shop") if e.type == "metrics-error"]) == 1  # once, not every tick


def test_a_backend_that_answers_with_nothing_stays_no_data() -> None:
    engine, clock, store = make(Switchable("empty"))
    assert run(engine, clock, 100) == Phase.ABORTED
    assert store.get("shop").metrics_error is None
    assert not [e for e in store.events("shop") if e.type.startswith("metrics-")]
    assert all(w.error is None for _, w in store.windows("shop"))
    assert store.events("shop")[-1].message == "Aborted: no metrics for 1m (onNoData: abort)"
    decision = next(e for e in store.events("shop") if e.type == "decision")
    assert decision.message == "no metrics in the latest window" and "metrics_error" not in decision.data
    assert explain_metrics(store.events("shop")) is None


def test_recovery_is_recorded_and_clears_the_status() -> None:
    source = Switchable("error")
    engine, clock, store = make(source)
    run(engine, clock, 30)
    source.mode = "traffic"
    run(engine, clock, 20)
    assert store.get("shop").metrics_error is None
    kinds = [e.type for e in store.events("shop") if e.type.startswith("metrics-")]
    assert kinds == ["metrics-error", "metrics-recovered"]
    assert explain_metrics(store.events("shop")) is None


class Leaky:
    """A source whose failure quotes a URL with credentials in it."""

    def collect(self, query: WindowQuery) -> Window:
        raise ConnectionError("cannot reach https://admin:s3cret@metrics.internal:9090/api/v1/query")


def test_a_failure_never_carries_credentials_into_status_or_events() -> None:
    engine, clock, store = make(Switchable("error"))
    engine.metrics = Leaky()
    run(engine, clock, 20)
    error = store.get("shop").metrics_error or ""
    assert error == ("metrics source failed: ConnectionError: cannot reach "
                     "https://metrics.internal:9090/api/v1/query")
    assert not any("s3cret" in e.message or "s3cret" in str(e.data) for e in store.events("shop"))


def test_prometheus_on_a_closed_port_raises_one_line_naming_it_without_credentials() -> None:
    import socket

    import pytest

    from rollwise.adapters.metrics.prometheus import PrometheusError, PrometheusMetricSource

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    source = PrometheusMetricSource(f"http://bot:s3cret@127.0.0.1:{port}", settle_s=0)
    with pytest.raises(MetricsError) as caught:
        source.collect(WindowQuery("shop", "shop", "v1", "v2", 0.0, 10.0))
    source.close()
    assert isinstance(caught.value, PrometheusError)
    assert str(caught.value) == f"Prometheus at http://127.0.0.1:{port} unreachable: [Errno 111] Connection refused"
