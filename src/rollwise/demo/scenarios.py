"""End-to-end demo rollouts on this machine: real processes, a real Envoy, real load, the real engine.

Each scenario writes a spec and asks the composition root (``wiring.Runtime``) for its engine, exactly
as the controller does: two versions of the demo service as local processes, routed through Envoy,
observed from Envoy's counters, a response comparator behind any mirror. With the ``otel`` extra, the
services export their spans and logs over OTLP to a receiver in this process (``demo/receiver.py``), which
the engine reads beside Envoy's counts, so a postmortem names the route that regressed, the log templates
the canary brought and exemplar traces. It drives open-loop load at the listener (``DEMO_PATHS``: items,
the cart and the checkout) and lets the engine decide. Timings are compressed (2 s windows, seconds-long
pauses) so a scenario ends within a minute or two; everything it starts it stops.
"""

from __future__ import annotations

import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rollwise.adapters.metrics.prometheus import LocalPrometheus
from rollwise.core.clock import SystemClock
from rollwise.core.engine import RolloutEngine
from rollwise.core.memory_store import MemoryStore
from rollwise.core.model import Event, Phase, RolloutRecord
from rollwise.core.protocols import Notifier, Store
from rollwise.demo.load import LoadGenerator, LoadSummary, Sample
from rollwise.demo.receiver import OtlpReceiver, otel_sdk_missing
from rollwise.local_processes import free_port
from rollwise.spec import load_spec_text
from rollwise.telemetry.aggregate import SpanAggregates
from rollwise.watch.incidents import RESOLVED, Incident
from rollwise.watch.runner import Watch
from rollwise.wiring import Runtime, build_notifier, build_watch, open_audit

ANALYSIS = """
      judge: sequential
      interval: 2s
      minSamples: 100
      minStageTime: 4s
      maxStageTime: 60s
      metrics:
        - {name: error-rate, type: errorRate, slo: "< 2%", maxIncrease: 1%, minEffect: 3%, critical: true}
        - {name: latency-p99, type: latency, quantile: 0.99, slo: "< 250ms"}
"""

STRATEGIES = {
    "canary": """
  canary:
    stickyHeader: x-user
    analysis:"""
    + ANALYSIS
    + """
    steps:
      - setWeight: 20
      - pause: {duration: 4s}
      - setWeight: 50
      - pause: {duration: 4s}
      - setWeight: 100
""",
    # The time bomb is an error bomb: its canary is judged on errors alone, so a loaded machine's latency
    # tail cannot end the story before the release reaches 100 %.
    "canary-errors": """
  canary:
    stickyHeader: x-user
    analysis:"""
    + ANALYSIS.split("        - {name: latency-p99")[0]
    + """
    steps:
      - setWeight: 20
      - pause: {duration: 4s}
      - setWeight: 50
      - pause: {duration: 4s}
      - setWeight: 100
""",
    "blueGreen": """
  blueGreen:
    previewMirrorPercent: 50
    previewDuration: 8s
    autoPromote: true
    rollbackWindow: 5m
    previewAnalysis:"""
    + ANALYSIS,
    "shadow": """
  shadow:
    percent: 100
    duration: 8s
    compare: [status, body]
    maxMismatchRate: 1%
    analysis:"""
    + ANALYSIS,
}


# After 100 % there is no traffic split, so attribution's confidence tops out at 0.7 (timing and scope only);
# three confirming points give the onset estimate enough of the step to tell it from a drift on a loaded
# machine, and 0.4 leaves room for the one-second points' noise.
WATCH = ("{actions: [notify, undo], minConfidence: 0.4, interval: 1s, metrics: [errorRate], confirm: 3, "
         "resolveAfter: 3, minRequests: 20}")


# What the load asks for: one request in five is the checkout, one the cart, the rest items (``/item/{id}``).
DEMO_PATHS = tuple("/checkout" if n % 5 == 0 else "/cart" if n % 5 == 1 else f"/item/{n}" for n in range(100))


@dataclass(frozen=True)
class Scenario:
    name: str
    strategy: str
    canary_flags: str
    expected: Phase
    about: str
    canary_version: str = "v2"
    watch: str = ""  # the spec's ``watch:`` block: the post-release watch runs beside the rollout
    bomb_after_s: float | None = None  # a time bomb in the canary goes off this long after 100 %


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "bad-canary",
            "canary",
            "--error-rate 0.4 --fail-route /checkout --latency-ms 20 --latency-p99-ms 400",
            Phase.ROLLED_BACK,
            "v2 fails 40% of checkouts (8% of requests) and has a slow tail: rolled back by itself",
        ),
        Scenario("good-canary", "canary", "", Phase.SUCCEEDED, "v2 is as good as v1: 20% -> 50% -> 100%"),
        Scenario(
            "slow-canary",
            "canary",
            "--latency-ms 150 --latency-p99-ms 400",
            Phase.ROLLED_BACK,
            "v2's p99 is 400 ms against a 250 ms SLO: rolled back",
        ),
        Scenario("blue-green", "blueGreen", "", Phase.SUCCEEDED,
                 "v2 previewed on mirrored traffic, then cut over; v1 kept warm for an instant undo"),
        Scenario("time-bomb", "canary-errors", "--bomb-error-rate 0.3", Phase.ROLLED_BACK,
                 "v2 passes its canary, then fails 30% of requests 5 s after reaching 100%: the watch names "
                 "the release and undoes it", watch=WATCH, bomb_after_s=5.0),
        Scenario("shadow", "shadow", "--error-rate 0.05 --mismatch-rate 0.2", Phase.ROLLED_BACK,
                 "v3 gets a mirrored copy of live traffic; its errors and mismatches are caught, users see v1 only",
                 canary_version="v3"),
        # A real model (SmolLM2-135M on the CPU) behind two agent versions; needs `make agents` (demo/agent/).
        Scenario("agent", "agent", "", Phase.ROLLED_BACK,
                 "agent v2's new prompt breaks its answers: the paired evaluation rolls it back and its memory "
                 "writes are undone"),
        # Run by ``demo/regions.py`` (six Envoys on ADS): v2 fails 30% of the requests region b's Envoys forward.
        Scenario("regions", "regionWaves", "--error-rate 0.3 --fail-header x-rollwise-region=b", Phase.ROLLED_BACK,
                 "three regions of two Envoys each: wave a promotes v2, v2 fails in region b, every region is "
                 "rolled back to v1"),
    )
}


@dataclass
class ScenarioResult:
    scenario: str
    phase: Phase
    reason: str
    seconds: float
    load: LoadSummary
    events: list[Event] = field(default_factory=list)
    shadow: dict[str, int] | None = None
    samples: list[Sample] = field(default_factory=list)
    name: str = ""
    undo: dict[str, float] | None = None
    incident: Incident | None = None  # what the post-release watch opened (time-bomb)
    telemetry: SpanAggregates | None = None  # what the services exported over OTLP (its exemplar traces)
    memory: dict[str, Any] | None = None  # the agent's memory after the rollout (agent)
    timings: dict[str, float] | None = None  # seconds from the start to each milestone (agent)
    waves: list[dict[str, Any]] | None = None  # region waves: each wave's status and evidence (regions)
    regions: dict[str, dict[str, int]] | None = None  # region -> version -> answers its Envoys gave after the end
    problems: list[str] = field(default_factory=list)  # what the scenario's own checks found wrong

    @property
    def as_expected(self) -> bool:
        return self.phase == SCENARIOS[self.scenario].expected and not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "phase": str(self.phase),
            "expected": str(SCENARIOS[self.scenario].expected),
            "reason": self.reason,
            "seconds": round(self.seconds, 1),
            "requests": self.load.sent,
            "by_version": self.load.by_version,
            "failed_requests": self.load.failures,
            "shadow": self.shadow,
            **({"memory": self.memory} if self.memory is not None else {}),
            "waves": self.waves,
            "regions": self.regions,
            "problems": self.problems,
        }


def spec_text(scenario: Scenario, listen: str, metrics: str = "envoy", *, admin_port: int | None = None,
              prometheus_url: str | None = None, bomb_file: Path | None = None, otlp_endpoint: str | None = None
              ) -> str:
    """The scenario's rollout spec; Prometheus (when it decides) scrapes Envoy's admin on ``admin_port``; the
    services export OTLP to ``otlp_endpoint`` when given."""
    service = f"{shlex.quote(sys.executable)} -m rollwise.demo.service --port {{port}}"
    if otlp_endpoint is not None:
        service += f" --otlp-endpoint {otlp_endpoint} --otlp-service demo"  # the spec's service
    # Both versions answer in ~5 ms (p99 20 ms) without errors; a scenario's canary flags override that.
    base = "--latency-ms 5 --latency-p99-ms 20"
    stable = f"{service} --version v1 {base}"
    canary = f"{service} --version {scenario.canary_version} {base} {scenario.canary_flags}".strip()
    if bomb_file is not None:
        canary += f" --bomb-file {shlex.quote(str(bomb_file))}"
    admin = f", adminPort: {admin_port}" if admin_port else ""
    prometheus = f", prometheusUrl: '{prometheus_url}'" if prometheus_url else ""
    return (
        f"name: demo-{scenario.name}\n"
        "service: demo\n"
        "versions:\n"
        f"  stable: {{name: v1, command: {stable!r}}}\n"
        f"  canary: {{name: {scenario.canary_version}, command: {canary!r}}}\n"
        f"traffic: {{router: envoy, listen: '{listen}'{admin}}}\n"
        f"metrics: {{source: {metrics}{prometheus}}}\n"
        "strategy:" + STRATEGIES[scenario.strategy]
        + (f"watch: {scenario.watch}\n" if scenario.watch else "")
    )


def run_scenario(
    name: str,
    *,
    rate: float = 150.0,
    max_seconds: float = 150.0,
    store: Store | None = None,
    workdir: str | Path | None = None,
    on_event: Callable[[Event], None] | None = None,
    metrics: Literal["envoy", "prometheus"] = "envoy",
    prometheus_binary: str | None = None,
    notifier: Notifier | None = None,
    on_tick: Callable[[RolloutRecord], None] | None = None,
    demonstrate_undo: bool = False,
    otlp: bool = True,
) -> ScenarioResult:
    """Run one scenario to its end (or ``max_seconds``); every process started is stopped.

    ``metrics="prometheus"`` starts a local Prometheus scraping Envoy every second and lets the
    engine decide from PromQL instead of Envoy's admin API (needs ``apt-get install prometheus``).
    ``otlp``: the services export OTLP to a receiver here (skipped without the ``otel`` extra).
    """
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}")
    if SCENARIOS[name].strategy == "regionWaves":
        raise ValueError(f"scenario {name!r} runs a fleet: use rollwise.demo.regions.run_regions")
    scenario = SCENARIOS[name]
    if scenario.strategy == "agent":  # its own processes (a model server, agents, memory): demo/agent/
        from rollwise.demo.agent.scenario import run_agent

        result: ScenarioResult = run_agent(store=store or MemoryStore(), notifier=notifier, max_seconds=max_seconds,
                                           workdir=workdir, on_event=on_event, on_tick=on_tick)
        return result
    folder = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="rollwise-demo-"))
    store = store or MemoryStore()
    receiver = OtlpReceiver(SpanAggregates(clock=time.time)).start() if otlp and otel_sdk_missing() is None \
        else None
    # The caller's notifier is the caller's to close; without one, a notifier with no channel.
    runtime = Runtime(workdir=folder, store=store, notifier=notifier or build_notifier(env={}),
                      compare_mirrors=True, telemetry=receiver.telemetry if receiver is not None else None)
    prometheus: LocalPrometheus | None = None
    load: LoadGenerator | None = None
    began = time.monotonic()
    bomb = folder / "time-bomb" if scenario.bomb_after_s is not None else None
    watch = build_watch(store, runtime, open_audit(store)[0]) if scenario.watch else None
    if watch is not None:  # the watch runs beside the rollout, as in `rollwise serve` and `controller`
        on_tick = _watching(watch, on_tick)
    try:
        listen = f"127.0.0.1:{free_port()}"
        if metrics == "prometheus":
            admin_port = free_port()
            prometheus = LocalPrometheus(targets=[f"127.0.0.1:{admin_port}"], binary=prometheus_binary)
            prometheus.start()
            text = spec_text(scenario, listen, metrics, admin_port=admin_port, prometheus_url=prometheus.url,
                             otlp_endpoint=receiver.url if receiver is not None else None)
        else:
            text = spec_text(scenario, listen, metrics, bomb_file=bomb,
                             otlp_endpoint=receiver.url if receiver is not None else None)
        spec = load_spec_text(text, f"<scenario {name}>")
        engine = runtime.engine_for(spec, store, SystemClock())
        record = engine.start(spec, actor="demo")
        record = engine.tick(record.name)  # deploys both versions and routes all traffic to v1
        if prometheus is not None:
            prometheus.wait_for_scrape()
        load = LoadGenerator(
            f"http://{listen}", rate=rate, duration_s=min(max_seconds, 600.0), sticky_header="x-user", users=500,
            paths=DEMO_PATHS,
        ).start()
        record, seen = _drive(engine, store, record, began + max_seconds, on_event, on_tick)
        incident = None
        if bomb is not None and watch is not None and record.phase == Phase.SUCCEEDED:
            record, incident = _after_release(engine, store, record, watch, bomb, scenario.bomb_after_s or 0.0,
                                              began + max_seconds, on_event, on_tick or _nothing, seen)
        undo = None
        if demonstrate_undo and record.phase == Phase.SUCCEEDED and scenario.strategy == "blueGreen":
            undo = _instant_undo(engine, record, load)
            if on_event is not None:
                for event in store.events(record.name, seen):
                    on_event(event)
        load.stop()
        summary = load.wait()
        phase_events = [e for e in store.events(record.name) if e.type == "phase"]
        return ScenarioResult(
            scenario=name,
            phase=record.phase,
            reason=phase_events[-1].message if phase_events else "",
            seconds=time.monotonic() - began,
            load=summary,
            events=store.events(record.name),
            shadow=_shadow_stats(store, record.name),
            samples=load.samples,
            name=record.name,
            undo=undo,
            incident=incident,
            telemetry=receiver.telemetry if receiver is not None else None,
        )
    finally:
        if load is not None and load.running:
            load.stop()
            load.wait()
        if prometheus is not None:
            prometheus.stop()
        runtime.close()
        if receiver is not None:  # after the services, whose SDKs send their last batch as they stop
            receiver.stop()


def _drive(
    engine: RolloutEngine,
    store: Store,
    record: RolloutRecord,
    deadline: float,
    on_event: Callable[[Event], None] | None,
    on_tick: Callable[[RolloutRecord], None] | None,
) -> tuple[RolloutRecord, int]:
    """Tick like a controller until the rollout settles (or ``deadline``); the record and the last event seq."""
    seen = 0
    while time.monotonic() < deadline:
        record = engine.tick(record.name)
        for event in store.events(record.name, seen):
            seen = event.seq
            if on_event is not None:
                on_event(event)
        if on_tick is not None:
            on_tick(record)
        if _settled(record):
            break
        time.sleep(0.25)
    return record, seen


def _nothing(_record: RolloutRecord) -> None:
    pass


def _watching(watch: Watch, on_tick: Callable[[RolloutRecord], None] | None) -> Callable[[RolloutRecord], None]:
    def tick(record: RolloutRecord) -> None:
        watch.tick()
        if on_tick is not None:
            on_tick(record)

    return tick


def _after_release(engine: RolloutEngine, store: Store, record: RolloutRecord, watch: Watch, bomb: Path,
                   after_s: float, deadline: float, on_event: Callable[[Event], None] | None,
                   on_tick: Callable[[RolloutRecord], None], seen: int) -> tuple[RolloutRecord, Incident | None]:
    """At 100 %, the bomb goes off ``after_s`` later; tick like a controller (the watch with it) until the
    watch has undone the release and its incident is resolved, or ``deadline``."""
    armed_at = time.monotonic() + after_s
    incident: Incident | None = None
    while time.monotonic() < deadline:
        if not bomb.exists() and time.monotonic() >= armed_at:
            bomb.write_text("boom\n")
        on_tick(record)
        record = engine.tick(record.name)  # applies the route the watch's undo wrote
        for event in store.events(record.name, seen):
            seen = event.seq
            if on_event is not None:
                on_event(event)
        incidents = watch.watch.incidents(service=record.spec.service)
        incident = incidents[-1] if incidents else None
        if incident is not None and incident.status == RESOLVED and engine.route_applied(record):
            break
        time.sleep(0.25)
    return record, incident


def _instant_undo(engine: RolloutEngine, record: RolloutRecord, load: LoadGenerator) -> dict[str, float]:
    """Undo a blue/green cutover under load and time how long until users are all back on stable."""
    time.sleep(2.0)  # let users settle on the new version first
    began = time.time()
    engine.command(record.name, "undo", actor="demo", reason="showing the instant rollback")
    engine.tick(record.name)  # the controller applies the route
    back_at = None
    while time.time() - began < 10.0:
        recent = [s for s in load.samples if s.sent_at >= began and s.version]
        tail = recent[-20:]
        if len(tail) == 20 and all(s.version == record.stable_version for s in tail):
            back_at = next(s.sent_at for s in recent if s.version == record.stable_version and all(
                t.version == record.stable_version for t in recent if t.sent_at >= s.sent_at))
            break
        time.sleep(0.05)
    during = [s for s in load.samples if s.sent_at >= began]
    return {
        "seconds_to_stable": round((back_at - began) if back_at else float("nan"), 3),
        "failed_requests": float(sum(1 for s in during if s.failed)),
        "requests": float(len(during)),
    }


SHADOW_COUNTERS = ("mirrored", "compared", "mismatches", "shadow_errors", "primary_errors")


def _shadow_stats(store: Store, name: str) -> dict[str, int] | None:
    """The comparator's counters over the run, as its windows recorded them (None: nothing compared).

    The comparator stops with the mirror, so its totals are the sum of what each window diffed.
    """
    totals: dict[str, int] = {}
    for _, window in store.windows(name):
        for key, value in (window.canary.extra if window.canary is not None else {}).items():
            if key in SHADOW_COUNTERS:  # not the OTLP detail beside them
                totals[key] = totals.get(key, 0) + int(value)
    return totals if "compared" in totals else None


def _settled(record: RolloutRecord) -> bool:
    return record.phase.terminal or record.phase == Phase.PAUSED


def main(argv: list[str] | None = None) -> None:
    """``python -m rollwise.demo.scenarios bad-canary [--metrics prometheus]``: run and narrate one."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m rollwise.demo.scenarios", description=main.__doc__)
    parser.add_argument("scenario", choices=sorted(n for n, s in SCENARIOS.items() if s.strategy in STRATEGIES))
    parser.add_argument("--rate", type=float, default=150.0)
    parser.add_argument("--max-seconds", type=float, default=150.0)
    parser.add_argument("--metrics", choices=["envoy", "prometheus"], default="envoy")
    args = parser.parse_args(argv)
    print(f"{args.scenario}: {SCENARIOS[args.scenario].about}", flush=True)
    result = run_scenario(
        args.scenario,
        rate=args.rate,
        max_seconds=args.max_seconds,
        metrics=args.metrics,
        on_event=lambda e: print(f"  {e.type:>9}  {e.message}", flush=True),
    )
    print(json.dumps(result.to_dict(), indent=2))
    raise SystemExit(0 if result.as_expected else 1)


if __name__ == "__main__":
    main()
