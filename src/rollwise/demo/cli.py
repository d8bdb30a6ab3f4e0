"""``rollwise demo``: the four release stories on real processes — Envoy, services, load, the engine.

Unattended, it shows what the agent sees and does as it happens: weights, canary against baseline
(error rate and p99), every decision in plain words; then it writes a postmortem per rollout and
says where. With ``--scenario X --output json`` it prints the ``simulate`` JSON shape plus what the
load generator's users saw (``client_errors``) and, for a shadow, the mismatches it caught.
"""

from __future__ import annotations

import json
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from rollwise.core.units import format_percent

if TYPE_CHECKING:  # the CLI mounts this command for `rollwise --help`; the models load when it runs
    from rollwise.core.model import Event, RolloutRecord
    from rollwise.core.protocols import Store

console = Console()

DEMO_ORDER = ("bad-canary", "good-canary", "blue-green", "shadow", "time-bomb", "regions")
LATENCY_SLO_MS = 250.0  # the demo specs' latency-p99 gate


class DemoScenario(StrEnum):
    bad_canary = "bad-canary"
    good_canary = "good-canary"
    blue_green = "blue-green"
    shadow = "shadow"
    slow_canary = "slow-canary"
    time_bomb = "time-bomb"
    agent = "agent"
    regions = "regions"


class DemoOutput(StrEnum):
    text = "text"
    json = "json"


def scenario_json(result: Any, store: Store, latency_slo_ms: float = LATENCY_SLO_MS) -> dict[str, Any]:
    """The ``simulate`` JSON shape, measured on real traffic, plus what clients saw."""
    record = store.get(result.name)
    t0 = record.created_at
    events = store.events(result.name)
    canary = record.canary_version
    canary_samples = [s for s in result.samples if s.version == canary]
    bad = [s for s in canary_samples if s.failed or s.latency_ms > latency_slo_ms]
    client_errors: dict[str, int] = {record.stable_version: 0, canary: 0}
    for sample in result.samples:
        if sample.failed:
            version = sample.version or "unanswered"
            client_errors[version] = client_errors.get(version, 0) + 1
    data: dict[str, Any] = {
        "name": record.name,
        "scenario": result.scenario,
        "phase": str(record.phase),
        "duration_s": round((record.finished_at or time.time()) - t0, 3),
        "canary_requests": len(canary_samples),
        "canary_bad_requests": len(bad),
        "steps": [{"at_s": round(e.at - t0, 3), "weight": float(e.data["weight"])}
                  for e in events if e.type == "step" and "weight" in e.data],
        "decisions": [{"at_s": round(e.at - t0, 3), "action": e.data.get("action"), "reason": e.message,
                       "evidence": e.data.get("evidence", {})} for e in events if e.type == "decision"],
        "client_errors": client_errors,
        "requests": len(result.samples),
    }
    if result.incident is not None:
        data["incident"] = result.incident.to_json()
    if result.undo is not None:
        data["undo"] = result.undo
    if result.memory is not None:
        data["memory"] = result.memory
        data["evaluation"] = evaluation_summary(data["decisions"])
    if result.timings is not None:
        data["timings"] = result.timings
    if result.waves is not None:
        # "promoted": the wave's regions had reached 100 % (a later failure may have rolled it back since)
        data["waves"] = [{"name": w["name"], "regions": w["regions"], "status": w["status"],
                          "promoted": w["finished_at"] is not None, "canary_requests": w["canary_requests"],
                          "canary_errors": w["canary_errors"], "failure": w["failure"]} for w in result.waves]
    if result.regions is not None:
        data["served_after"] = result.regions  # region -> version -> answers its Envoys gave at the end
    if result.problems:
        data["problems"] = result.problems
    if result.shadow is not None:
        data["shadow_mismatches"] = int(result.shadow.get("mismatches", 0))
        data["shadow_compared"] = int(result.shadow.get("compared", 0))
        data["shadow_errors"] = int(result.shadow.get("shadow_errors", 0))
    return data


def write_traces(folder: Path, examples: Any, telemetry: Any) -> dict[str, str]:
    """The postmortem's exemplar traces as JSON files beside it (``traces/<id>.json``, the shape of ``GET
    /api/v1/traces/<id>``): the demo's receiver stops with it, the report's links must not. Trace id -> link
    relative to ``folder``."""
    links: dict[str, str] = {}
    for example in examples:
        exemplar = telemetry.trace(example.trace_id) if telemetry is not None else None
        if exemplar is None:
            continue
        link = f"traces/{example.trace_id}.json"
        (folder / "traces").mkdir(exist_ok=True)
        (folder / link).write_text(json.dumps(exemplar.to_dict(), indent=2) + "\n", encoding="utf-8")
        links[example.trace_id] = link
    return links


def _debugged(rca: Any, traces: dict[str, str]) -> list[str]:
    """What the OTLP telemetry adds to a failed rollout's story: the route, the new log line, a trace."""
    if not rca.failed:
        return []
    lines = [f"where: {split.text()}" for split in rca.routes if split.regressed == "errors"][:1]
    lines += [f"logs: {change.text()}" for change in rca.logs][:1]
    failed = [t for t in rca.traces if t.kind == "failed" and t.trace_id in traces][:1]
    lines += [f"trace: {t.kind} {t.trace_id}, error originated in span {t.origin!r} ({traces[t.trace_id]})"
              for t in failed]
    return lines


def evaluation_summary(decisions: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The last decision's evaluation evidence (the paired test's counts and e-value), if it had one."""
    for decision in reversed(decisions):
        for metric in (decision.get("evidence") or {}).get("metrics", []):
            if metric.get("kind") == "evaluation" or "paired" in str(metric.get("test", "")):
                return dict(metric)
    return None


def memory_lines(memory: dict[str, Any], evaluation: dict[str, Any] | None) -> list[str]:
    """What the agent scenario's reader needs to see: the evidence and what became of the memory."""
    lines = []
    if evaluation is not None:
        lines.append(f"evaluation: {evaluation.get('summary') or evaluation.get('reason') or evaluation}")
    if "stableEqualsTag" in memory:
        same = "equals" if memory["stableEqualsTag"] else "DIFFERS FROM"
        lines.append(f"memory: the live table ({memory['stableRows']} rows) {same} the tag {memory['stableTag']} "
                     f"({memory['taggedRows']} rows), row for row")
    if "canaryWrites" in memory:
        base = str(memory["stableTag"]).rsplit(".", 1)[0] + ".base"
        lines.append(f"memory: v2 wrote {memory['canaryWrites']} rows to its copy, kept readable as "
                     f"{memory.get('canaryTag')} for the postmortem: rollwise memory diff canary:{base} "
                     f"canary:{memory.get('canaryTag')} --uri {memory['uri']}")
    return lines


class LiveView:
    """Narrates a scenario: every event, and every two seconds the weights and both versions' numbers."""

    def __init__(self, store: Store):
        self.store = store
        self._last_status = 0.0

    def on_event(self, event: Event) -> None:
        style = {"decision": "yellow", "phase": "bold", "step": "cyan"}.get(event.type, "dim")
        action = escape(f" [{event.data['action']}]") if event.type == "decision" else ""
        console.print(f"  [{style}]{event.type:>9}{action}[/] {escape(event.message)}", highlight=False)

    def on_tick(self, record: RolloutRecord) -> None:
        now = time.monotonic()
        if now - self._last_status < 2.0:
            return
        self._last_status = now
        windows = [w for _, w in self.store.windows(record.name, record.stage_index)]
        if record.route.region_weights:  # region waves: each region has its own weight
            regions = sorted(record.route.region_weights.items())
            weights = ", ".join(f"{region} {weight:g}%" for region, weight in regions)
            text = f"{record.canary_version} by region: {weights}"
        else:
            text = f"weight {record.route.canary_weight:g}% → {record.canary_version}"
        if record.route.mirror_percent:
            text += f", mirror {record.route.mirror_percent:g}%"
        recent = [w for w in windows[-3:] if w.has_data]
        if recent:
            from rollwise.core.model import VersionStats

            canary = VersionStats.merge([w.canary for w in recent if w.canary is not None])
            baseline = VersionStats.merge([w.baseline for w in recent if w.baseline is not None])

            def p99(stats: VersionStats) -> str:
                value = stats.quantile(0.99)
                return f"{value:.0f}ms" if value is not None else "n/a"

            text += (f" | canary err {format_percent(canary.error_rate)} p99 {p99(canary)} ({canary.requests} req)"
                     f" vs baseline err {format_percent(baseline.error_rate)} p99 {p99(baseline)}"
                     f" ({baseline.requests} req)")
        console.print(f"  [dim]{'status':>9}[/] {text}", highlight=False)


def demo(
    scenario: Annotated[DemoScenario | None, typer.Option(help="Run one scenario (default: all six).")] = None,
    output: Annotated[DemoOutput, typer.Option("--output", "-o", help="text or json")] = DemoOutput.text,
    store: Annotated[str | None, typer.Option("--store", envvar="ROLLWISE_STORE", help="Store URL.")] = None,
    rate: Annotated[float, typer.Option(help="Load, requests per second (loopback only).")] = 150.0,
    max_seconds: Annotated[float | None, typer.Option(
        help="Time cap per scenario (default 120 s; 420 s for agent, which ends in 2-3 min).")] = None,
    reports: Annotated[Path | None, typer.Option(help="Folder for the HTML postmortems.")] = None,
) -> None:
    """Run the release stories on real processes: a bad canary rolled back by itself, a good one
    promoted to 100%, a blue/green cutover with instant undo, a shadow users never see, a time bomb
    the watch undoes, and region waves over six Envoys where a failure in one region rolls back all.

    `--scenario agent` releases an AI agent with a real model (SmolLM2-135M on the CPU): a worse prompt is
    rolled back on its paired evaluation and its memory writes are undone (needs `make agents`).

    Example: rollwise demo --scenario bad-canary --output json
    """
    from rollwise.core.protocols import Closeable
    from rollwise.demo.receiver import otel_sdk_missing
    from rollwise.demo.scenarios import SCENARIOS, run_scenario
    from rollwise.report.postmortem import load_postmortem, to_html
    from rollwise.wiring import build_notifier, open_fleet, open_store

    if scenario == DemoScenario.agent:
        from rollwise.demo.agent.model_server import MISSING, missing_packages

        if missing_packages():
            typer.echo(f"error: {MISSING}", err=True)
            raise typer.Exit(2)
    the_store = open_store(store)
    notifier = build_notifier(store=the_store)
    names = [scenario.value] if scenario is not None else list(DEMO_ORDER)
    if "regions" in names and open_fleet(the_store) is None:  # the fleet's ACKs live in a SQL store
        if scenario is not None:
            sys.stderr.write("error: --scenario regions needs a SQL --store (sqlite:///… or postgresql+psycopg://…)\n")
            raise typer.Exit(2)
        names.remove("regions")
        Console(stderr=output == DemoOutput.json).print("[dim]note: skipping regions: its Envoy fleet needs a SQL "
                                                        "store[/]", highlight=False)
    folder = reports or Path("~/.rollwise/reports").expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    results = []
    failed = False
    missing = otel_sdk_missing()
    if missing is not None:  # one line; the rollouts run and are judged all the same
        Console(stderr=output == DemoOutput.json).print(f"[dim]note: {escape(missing)}[/]", highlight=False)
    try:
        for name in names:
            view = LiveView(the_store)
            if output == DemoOutput.text:
                console.rule(f"[bold]{name}[/]: {SCENARIOS[name].about}")
            cap = max_seconds if max_seconds is not None else 420.0 if name == "agent" else 120.0
            on_event = view.on_event if output == DemoOutput.text else None
            on_tick = view.on_tick if output == DemoOutput.text else None
            if name == "regions":
                from rollwise.demo.regions import run_regions

                result = run_regions(rate=rate, max_seconds=cap, store=the_store, notifier=notifier,
                                     on_event=on_event, on_tick=on_tick)
            else:
                result = run_scenario(name, rate=rate, max_seconds=cap, store=the_store, notifier=notifier,
                                      on_event=on_event, on_tick=on_tick, demonstrate_undo=scenario is None)
            data = scenario_json(result, the_store)
            report = folder / f"{result.name}.html"
            postmortem = load_postmortem(the_store, result.name)
            traces = write_traces(folder, postmortem.rca.traces, result.telemetry)
            report.write_text(to_html(postmortem, trace_links=traces), encoding="utf-8")
            data["report"] = str(report)
            data["traces"] = [str(folder / link) for link in traces.values()]
            results.append(data)
            failed = failed or not result.as_expected
            if output == DemoOutput.text:
                errors = ", ".join(f"{v}: {n}" for v, n in data["client_errors"].items())
                phase = f"{result.phase}, then undone on purpose" if result.undo is not None else data["phase"]
                if result.memory is not None:  # the agent's users chat; a 250 ms latency bar means nothing there
                    served = ", ".join(f"{v}: {n}" for v, n in result.load.by_version.items()) or "none"
                    console.print(f"  [bold]{phase}[/] after {data['duration_s']:.0f}s; users' questions by "
                                  f"version: {served}; failed: {result.load.failures}", highlight=False)
                else:
                    console.print(f"  [bold]{phase}[/] after {data['duration_s']:.0f}s; "
                                  f"client errors by version: {errors}; canary requests {data['canary_requests']}, "
                                  f"bad {data['canary_bad_requests']}", highlight=False)
                if "shadow_mismatches" in data:
                    console.print(f"  shadow: {data['shadow_compared']} compared, {data['shadow_mismatches']} "
                                  f"mismatches, {data['shadow_errors']} shadow errors — none served to users")
                if result.undo is not None:
                    console.print(f"  instant rollback: `undo` put every user back on v1 in "
                                  f"{result.undo['seconds_to_stable'] * 1000:.0f} ms, "
                                  f"{result.undo['failed_requests']:.0f} failed requests", highlight=False)
                if result.memory is not None:
                    for line in memory_lines(result.memory, data.get("evaluation")):
                        console.print(f"  {line}", highlight=False, markup=False)
                if result.timings is not None:
                    console.print("  timings: " + ", ".join(f"{k} {v:.0f}s" for k, v in result.timings.items()),
                                  highlight=False)
                for wave in data.get("waves", []):
                    note = f": {wave['failure']}" if wave["failure"] else ""
                    status = wave["status"]
                    if wave["promoted"] and status != "promoted":
                        status = f"promoted, then {status}"
                    console.print(f"  wave {wave['name']} ({', '.join(wave['regions'])}): {status}, "
                                  f"{wave['canary_requests']} canary requests ({wave['canary_errors']} errors)"
                                  f"{note}", highlight=False, markup=False)
                if "served_after" in data:
                    served = "; ".join(f"{region}: " + ", ".join(f"{v} {n}" for v, n in versions.items())
                                       for region, versions in data["served_after"].items())
                    console.print(f"  every Envoy afterwards, by region: {served}", highlight=False, markup=False)
                for problem in result.problems:
                    console.print(f"  [red]not as expected:[/] {escape(problem)}", highlight=False)
                if result.incident is not None:
                    from rollwise.watch.render import incident_text

                    console.print("  " + incident_text(result.incident).replace("\n", "\n  "), highlight=False,
                                  markup=False)
                for line in _debugged(postmortem.rca, traces):
                    console.print(f"  {line}", highlight=False, markup=False)
                console.print(f"  report: {report}")
    finally:
        if isinstance(notifier, Closeable):
            notifier.close()
    if output == DemoOutput.json:
        sys.stdout.write(json.dumps(results[0] if len(results) == 1 else results, indent=2) + "\n")
    else:
        console.rule("done")
        console.print(f"reports: {folder}  (open the .html files in a browser; `rollwise report NAME` for more)")
    if failed:
        raise typer.Exit(1)
