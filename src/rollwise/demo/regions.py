"""The ``regions`` demo: region waves over a real Envoy fleet on ADS, and a regional failure rolled back.

Six Envoys (regions a, b and c, two each; the second of each region on incremental xDS, as in a fleet
moving to Delta) connect to an ADS server in this process; each forwards the
rollout with its region's weight and names its region to the upstreams (``x-rollwise-region``). v2 has
a regional config bug: it fails 30% of the requests that come in through region b (``--fail-header``).
The waves are ``[a]``, ``[b]``, ``[c]``: wave a runs the canary's steps on region a alone, judged on
region a's Envoys, bakes and is promoted; wave b is judged on region b's Envoys only, fails, and
``onFailure: rollback`` sends every region back to v1. The scenario then checks what it claims, from
outside the engine: the wave events, which clients saw v2's errors (region b's only), every Envoy's
confirmed route, and the versions each Envoy serves afterwards (v1 only). Anything off is a problem,
and a problem fails the scenario (``ScenarioResult.as_expected``), as a wrong phase does.

Load is open-loop and bounded (``LoadGenerator``), spread evenly over the six listeners.
"""

from __future__ import annotations

import shlex
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from rollwise.core.clock import SystemClock
from rollwise.core.model import Event, Phase, RolloutRecord
from rollwise.core.protocols import Notifier, Store
from rollwise.core.waves import wave_rows
from rollwise.demo.load import LoadGenerator, Sample
from rollwise.demo.receiver import OtlpReceiver, otel_sdk_missing
from rollwise.demo.scenarios import ANALYSIS, DEMO_PATHS, SCENARIOS, ScenarioResult, _drive
from rollwise.fleet.local_envoys import LocalEnvoy, start_envoy
from rollwise.local_processes import free_port
from rollwise.spec import load_spec_text
from rollwise.telemetry.aggregate import SpanAggregates
from rollwise.wiring import Runtime, build_notifier, open_fleet, open_store, start_ads

NAME = "regions"
REGIONS = ("a", "b", "c")
ENVOYS_PER_REGION = 2
FAILING_REGION = "b"
HOST = "demo-regions"  # the rollout's virtual host (it is the fleet's "*" too when it is the oldest)
# Judged on errors alone (as the time bomb is): the story is a regional error, and a loaded machine's latency
# tail must not fail wave a before wave b shows it.
ERRORS_ONLY = ANALYSIS.split("        - {name: latency-p99")[0]


def node_ids() -> dict[str, str]:
    """Envoy node id -> region: ``demo-a1``, ``demo-a2``, ``demo-b1``…"""
    return {f"demo-{region}{i}": region for region in REGIONS for i in range(1, ENVOYS_PER_REGION + 1)}


def spec_text(otlp_endpoint: str | None = None) -> str:
    """Waves [a], [b], [c] of the canary's steps (50 %, a 4 s pause), each wave baking 4 s."""
    scenario = SCENARIOS[NAME]
    service = f"{shlex.quote(sys.executable)} -m rollwise.demo.service --port {{port}}"
    if otlp_endpoint is not None:
        service += f" --otlp-endpoint {otlp_endpoint} --otlp-service demo"
    base = "--latency-ms 5 --latency-p99-ms 20"
    stable = f"{service} --version v1 {base}"
    canary = f"{service} --version {scenario.canary_version} {base} {scenario.canary_flags}"
    waves = "".join(f"      - {{name: {r}, regions: [{r}], bake: 4s}}\n" for r in REGIONS)
    return (
        f"name: {HOST}\n"
        "service: demo\n"
        "versions:\n"
        f"  stable: {{name: v1, command: {stable!r}}}\n"
        f"  canary: {{name: {scenario.canary_version}, command: {canary!r}}}\n"
        "traffic: {router: envoy-ads}\n"
        "metrics: {source: envoy}\n"
        "strategy:\n"
        "  canary:\n"
        "    stickyHeader: x-user\n"
        "    analysis:" + ERRORS_ONLY
        + "    steps:\n"
        "      - setWeight: 50\n"
        "      - pause: {duration: 4s}\n"
        "    waves:\n" + waves
        + "    onFailure: rollback\n"
    )


def run_regions(
    *,
    rate: float = 150.0,
    max_seconds: float = 120.0,
    store: Store | None = None,
    workdir: str | Path | None = None,
    on_event: Callable[[Event], None] | None = None,
    on_tick: Callable[[RolloutRecord], None] | None = None,
    notifier: Notifier | None = None,
    otlp: bool = True,
) -> ScenarioResult:
    """Run the scenario to its end (or ``max_seconds``); every process started is stopped.

    ``store`` must keep a fleet (SQL); without one, a SQLite store in ``workdir`` is used.
    """
    folder = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="rollwise-demo-"))
    own_store = store is None
    store = store if store is not None else open_store(f"sqlite:///{folder / 'regions.db'}")
    if open_fleet(store) is None:
        raise ValueError("the regions scenario needs a SQL store (sqlite:///… or postgresql+psycopg://…) "
                         "for the fleet's ACKs")
    receiver = OtlpReceiver(SpanAggregates(clock=time.time)).start() if otlp and otel_sdk_missing() is None \
        else None
    runtime = Runtime(workdir=folder, store=store, notifier=notifier or build_notifier(env={}),
                      telemetry=receiver.telemetry if receiver is not None else None)
    began = time.monotonic()
    envoys: list[LocalEnvoy] = []
    load: LoadGenerator | None = None
    ads = None
    try:
        ads = start_ads(store, f"127.0.0.1:{free_port()}", runtime)
        envoys = [start_envoy(folder / "envoys", node, f"127.0.0.1:{ads.port}", region=region, wait=False,
                              delta=node.endswith("2")) for node, region in node_ids().items()]
        for envoy in envoys:
            envoy.wait_live()
        _wait_connected(store, set(node_ids()))
        spec = load_spec_text(spec_text(receiver.url if receiver is not None else None), f"<scenario {NAME}>")
        engine = runtime.engine_for(spec, store, SystemClock())
        record = engine.start(spec, actor="demo")
        record = engine.tick(record.name)  # deploys both versions; every Envoy routes all traffic to v1
        load = LoadGenerator([e.url for e in envoys], rate=rate, duration_s=min(max_seconds, 600.0),
                             sticky_header="x-user", users=500, paths=DEMO_PATHS, headers={"host": HOST}).start()
        record, _ = _drive(engine, store, record, began + max_seconds, on_event, on_tick)
        load.stop()
        summary = load.wait()
        served = {envoy.node_id: _served(envoy) for envoy in envoys}
        samples = load.samples
        events = [e for e in store.events(record.name) if e.at >= record.created_at]  # not an earlier run's
        problems = check(record, events, samples, {e.url: e.region or "" for e in envoys}, served,
                         _confirmed(store, record))
        phase_events = [e for e in events if e.type == "phase"]
        rows = wave_rows(record) or []
        return ScenarioResult(
            scenario=NAME, phase=record.phase, reason=phase_events[-1].message if phase_events else "",
            seconds=time.monotonic() - began, load=summary, events=events, samples=samples, name=record.name,
            telemetry=receiver.telemetry if receiver is not None else None,
            waves=[row.model_dump() for row in rows], regions=_by_region(served), problems=problems,
        )
    finally:
        if load is not None and load.running:
            load.stop()
            load.wait()
        for envoy in envoys:
            envoy.stop()
        if ads is not None:
            ads.close()
        runtime.close()
        if receiver is not None:
            receiver.stop()
        if own_store:
            store.close()  # type: ignore[attr-defined]


def _wait_connected(store: Store, nodes: set[str], timeout: float = 20.0) -> None:
    """Every Envoy of the demo has introduced itself to the ADS server (so every route waits for its ACK)."""
    fleet = open_fleet(store)
    assert fleet is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = time.time()
        if nodes <= {n.node_id for n in fleet.nodes() if n.live_at(now)}:
            return
        time.sleep(0.05)
    raise RuntimeError(f"Envoys {', '.join(sorted(nodes))} did not all connect to the ADS server in {timeout:g}s")


def _served(envoy: LocalEnvoy, requests: int = 40) -> dict[str, int]:
    """Version -> answers this Envoy gives now, over ``requests`` users (sticky hashing spreads them)."""
    seen: Counter[str] = Counter()
    with httpx.Client(base_url=envoy.url, timeout=5) as client:
        for i in range(requests):
            try:
                response = client.get(f"/item/{i}", headers={"host": HOST, "x-user": f"check-{i}"})
                seen[response.headers.get("x-version", f"HTTP {response.status_code}")] += 1
            except httpx.HTTPError as exc:
                seen[type(exc).__name__] += 1
    return dict(seen)


def _confirmed(store: Store, record: RolloutRecord) -> dict[str, int]:
    """Node id -> the route revision of this rollout the Envoy acknowledged last."""
    fleet = open_fleet(store)
    assert fleet is not None
    return {n.node_id: n.confirmed.get(record.name, -1) for n in fleet.nodes() if n.node_id in node_ids()}


def _by_region(served: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    regions: dict[str, Counter[str]] = {}
    for node, versions in served.items():
        regions.setdefault(node_ids()[node], Counter()).update(versions)
    return {region: dict(counts) for region, counts in sorted(regions.items())}


def check(record: RolloutRecord, events: list[Event], samples: list[Sample], region_of: dict[str, str],
          served: dict[str, dict[str, int]], confirmed: dict[str, int]) -> list[str]:
    """What the story claims, checked from the outside; each line is one thing that did not happen."""
    problems: list[str] = []
    if record.phase != Phase.ROLLED_BACK:
        problems.append(f"the rollout ended {record.phase}, not RolledBack")
    waves = [(e.data.get("wave"), e.data.get("action")) for e in events if e.type == "wave"]
    if ("a", "promoted") not in waves:
        problems.append("wave a was not promoted")
    failed = [e for e in events if e.type == "wave" and e.data.get("action") == "rolled-back"]
    if not failed or failed[-1].data.get("wave") != FAILING_REGION:
        problems.append(f"wave {FAILING_REGION} did not fail and roll back")
    else:
        evidence: dict[str, Any] = (failed[-1].data.get("evidence") or {}).get("wave") or {}
        if evidence.get("regions") != [FAILING_REGION]:
            problems.append(f"wave {FAILING_REGION} was judged on {evidence.get('regions')}, not on its own region")
        if sorted(evidence.get("rolledBack") or []) != ["a", "b"]:
            problems.append(f"the rollback sent {evidence.get('rolledBack')} back to v1, not regions a and b")
    if any(action == "start" and wave == "c" for wave, action in waves):
        problems.append("wave c started after wave b failed")
    errors = Counter(region_of.get(s.target or "", "?") for s in samples if s.version == "v2" and s.status >= 500)
    if errors[FAILING_REGION] == 0:
        problems.append(f"no client saw v2 fail in region {FAILING_REGION}")
    if set(errors) - {FAILING_REGION}:
        problems.append(f"v2 failed outside region {FAILING_REGION}: {dict(errors)}")
    a_v2 = sum(1 for s in samples if s.version == "v2" and region_of.get(s.target or "") == "a")
    if a_v2 == 0:
        problems.append("no client in region a was served by v2")
    behind = sorted(node for node, revision in confirmed.items() if revision < record.route.revision)
    if len(confirmed) != len(node_ids()) or behind:
        problems.append(f"Envoys without the final route (revision {record.route.revision}): "
                        f"{', '.join(behind) or 'some never connected'}")
    for node, versions in sorted(served.items()):
        if set(versions) != {"v1"}:
            problems.append(f"Envoy {node} ({node_ids()[node]}) serves {versions} after the rollback, not v1 only")
    return problems


def main(argv: list[str] | None = None) -> None:
    """``python -m rollwise.demo.regions``: run and narrate the scenario, then its result as JSON."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m rollwise.demo.regions", description=main.__doc__)
    parser.add_argument("--rate", type=float, default=150.0)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    args = parser.parse_args(argv)
    print(f"{NAME}: {SCENARIOS[NAME].about}", flush=True)
    result = run_regions(rate=args.rate, max_seconds=args.max_seconds,
                         on_event=lambda e: print(f"  {e.type:>9}  {e.message}", flush=True))
    print(json.dumps(result.to_dict(), indent=2))
    raise SystemExit(0 if result.as_expected else 1)


if __name__ == "__main__":
    main()
