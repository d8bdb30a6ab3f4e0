"""``rollwise``: validate specs, simulate them, run and steer rollouts, serve the API.

Every command that prints data takes ``--output json``. Commands act on the local store
(``--store URL`` or ``ROLLWISE_STORE``; SQLite under ~/.rollwise by default).
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
import typing
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

if TYPE_CHECKING:  # imported where used, so `rollwise --help` stays fast (see bench/cli_startup.py)
    from rich.table import Table

    from rollwise.control.protocol import RolloutControl
    from rollwise.core.model import RolloutRecord
    from rollwise.spec.models import RolloutSpec

app = typer.Typer(
    help="rollwise: progressive delivery (canary, blue/green, shadow, flags) decided on live evidence.\n\n"
    "Example: rollwise validate examples/*.yaml && rollwise simulate examples/canary.yaml "
    "--canary-error-rate 0.05",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
rollout_app = typer.Typer(help="Start and steer rollouts. Example: rollwise rollout start examples/canary.yaml",
                          no_args_is_help=True)
app.add_typer(rollout_app, name="rollout")
console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # an error stays one line, however long


class Output(StrEnum):
    text = "text"
    json = "json"


OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="text or json")]
StoreOpt = Annotated[
    str | None,
    typer.Option("--store", envvar="ROLLWISE_STORE", help="Store URL: sqlite:///path.db or postgresql+psycopg://…"),
]
ReasonOpt = Annotated[str, typer.Option("--reason", "-r", help="Why; recorded in the history.")]
ActorOpt = Annotated[str, typer.Option("--actor", envvar="ROLLWISE_ACTOR", help="Who is acting.")]
ServerOpt = Annotated[
    str | None,
    typer.Option("--server", envvar="ROLLWISE_SERVER",
                 help="Talk to a `rollwise serve` at this URL instead of the local store."),
]
TokenOpt = Annotated[str | None, typer.Option("--token", envvar="ROLLWISE_TOKEN", help="API token for --server.")]


def _actor(actor: str | None) -> str:
    return actor or os.environ.get("USER") or "cli"


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _store(url: str | None, *, read_only: bool = False) -> Any:
    """The store, or exit 1 with one line saying why it cannot be opened (never a traceback).

    ``read_only`` commands get an empty store instead of creating one that does not exist.
    """
    from rollwise.core.protocols import StoreUnavailable
    from rollwise.wiring import open_store, open_store_for_reading

    try:
        return open_store_for_reading(url) if read_only else open_store(url)
    except StoreUnavailable as exc:
        err_console.print(f"error: --store: {exc}", markup=False, highlight=False)
        raise typer.Exit(1) from None


def _existing_store(url: str | None) -> Any:
    return _store(url, read_only=True)


def _parse_commit_time(value: str | None) -> float | None:
    from datetime import datetime

    if not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        err_console.print(f"error: --commit-time: {value[:80]!r} is not an ISO 8601 time "
                          "(e.g. 2025-01-31T12:00:00Z)", markup=False, highlight=False)
        raise typer.Exit(2) from None
    return when.timestamp()


def _load_or_exit(path: Path) -> RolloutSpec:
    from rollwise.control.protocol import load_spec_file

    with _exits():
        return load_spec_file(path)


# --------------------------------------------------------------------------- spec commands


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Rollout spec files (YAML).")],
    output: OutputOpt = Output.text,
) -> None:
    """Check specs. Exit 0 when all are valid; else exit 2 and print every problem as FILE:LINE: path: message.

    Example: rollwise validate examples/*.yaml
    """
    from rollwise.spec import SpecError, load_spec

    problems: list[str] = []
    results = []
    for file in files:
        try:
            load_spec(file)
            results.append({"file": str(file), "valid": True, "problems": []})
        except SpecError as exc:
            lines = [str(p) for p in exc.problems]
            problems.extend(lines)
            results.append({"file": str(file), "valid": False, "problems": lines})
    if output == Output.json:
        _print_json(results)
    else:
        for line in problems:
            err_console.print(line, markup=False, highlight=False, soft_wrap=True)
        if not problems:
            console.print(f"{len(files)} spec(s) valid")
    if problems:
        raise typer.Exit(2)


class SchemaKind(StrEnum):
    rollout = "rollout"
    evidence = "evidence"


@app.command()
def schema(kind: Annotated[SchemaKind, typer.Argument(help="Which schema.")] = SchemaKind.rollout) -> None:
    """Print a JSON Schema: a rollout spec, or a decision's evidence. Example: rollwise schema rollout"""
    if kind == SchemaKind.evidence:
        from rollwise.core.evidence import evidence_schema

        _print_json(evidence_schema())
        return
    from rollwise.spec.models import RolloutSpec

    _print_json(RolloutSpec.model_json_schema())


@app.command()
def simulate(
    file: Annotated[Path, typer.Argument(help="Rollout spec.")],
    rps: Annotated[float, typer.Option(help="Total requests per second.")] = 200.0,
    baseline_error_rate: Annotated[float, typer.Option(help="Stable version's error rate (0.001 = 0.1%).")] = 0.001,
    canary_error_rate: Annotated[float | None, typer.Option(help="Canary's error rate.")] = None,
    baseline_latency_ms_p99: Annotated[float, typer.Option(help="Stable p99 latency, ms.")] = 100.0,
    canary_latency_ms_p99: Annotated[float | None, typer.Option(help="Canary p99 latency, ms.")] = None,
    canary_conversion_drop: Annotated[float, typer.Option(help="Relative KPI drop of the canary.")] = 0.0,
    regression_at: Annotated[float | None, typer.Option(help="Seconds in when the canary turns bad.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    max_duration: Annotated[str, typer.Option(help="Simulated time limit.")] = "24h",
    region_fault: Annotated[list[str] | None, typer.Option(
        help="REGION=ERROR_RATE: the canary fails only in that region (region waves); repeatable.")] = None,
    output: OutputOpt = Output.text,
) -> None:
    """Run the whole engine on simulated traffic and a virtual clock (an hour in well under a second).

    Example: rollwise simulate examples/canary.yaml --canary-error-rate 0.05 --output json
    Region waves: rollwise simulate examples/waves.yaml --region-fault b=0.05
    """
    from rollwise.core.units import parse_duration
    from rollwise.simulate import Behaviour, TrafficProfile
    from rollwise.simulate import simulate as run_simulation

    spec = _load_or_exit(file)
    try:
        max_duration_s = parse_duration(max_duration)
    except ValueError as exc:
        err_console.print(f"error: --max-duration: {exc}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    baseline = Behaviour(error_rate=baseline_error_rate, latency_p99_ms=baseline_latency_ms_p99,
                         latency_p50_ms=min(20.0, baseline_latency_ms_p99 / 2))
    canary_error = canary_error_rate if canary_error_rate is not None else baseline_error_rate
    canary_p99 = canary_latency_ms_p99 if canary_latency_ms_p99 is not None else baseline_latency_ms_p99
    conversion = baseline.conversion * (1 - canary_conversion_drop)
    if regression_at is None:
        canary = Behaviour(error_rate=canary_error, latency_p99_ms=canary_p99,
                           latency_p50_ms=baseline.latency_p50_ms, conversion=conversion)
    else:
        canary = Behaviour(error_rate=baseline_error_rate, latency_p99_ms=baseline_latency_ms_p99,
                           latency_p50_ms=baseline.latency_p50_ms, change_at=regression_at,
                           error_rate_after=canary_error, latency_p99_after_ms=canary_p99,
                           conversion_after=conversion)
    faults = _region_faults(region_fault or [], spec, canary)
    result = run_simulation(spec, baseline, canary, TrafficProfile(rps=rps), seed=seed,
                            max_duration_s=max_duration_s, canary_in=faults)
    if output == Output.json:
        _print_json(result.to_dict())
        return
    console.print(f"[bold]{result.name}[/]: {result.phase} after {result.duration_s:.0f}s simulated")
    console.print("weights: " + " -> ".join(f"{s['weight']:g}%" for s in result.steps))
    console.print(f"canary requests {result.canary_requests}, bad {result.canary_bad_requests}")
    lines = [(d["at_s"], f"{d['action']:<12} {d['reason']}") for d in result.decisions]
    lines += [(e["at"] - result.started_at, f"{'wave':<12} {e['message']}") for e in result.events
              if e["type"] == "wave"]
    for at, text in sorted(lines, key=lambda line: line[0]):
        console.print(f"  t={at:>7.0f}s {text}", markup=False, highlight=False)
    if result.waves is not None:
        from rollwise.core.waves import WaveRow, wave_lines

        console.print("\n".join(wave_lines([WaveRow.model_validate(w) for w in result.waves])), markup=False,
                      highlight=False)


def _region_faults(given: list[str], spec: Any, canary: Any) -> dict[str, Any]:
    """``--region-fault b=0.05`` as the canary's behaviour per region; a bad value exits naming the option."""
    from dataclasses import replace

    from rollwise.simulate.runner import regions_of

    known = regions_of(spec) or {}
    faults = {}
    for item in given:
        region, _, rate = item.partition("=")
        try:
            error_rate = float(rate)
            if not 0 <= error_rate <= 1:
                raise ValueError
        except ValueError:
            err_console.print(f"error: --region-fault: {item!r}: write REGION=ERROR_RATE, e.g. b=0.05",
                              markup=False, highlight=False)
            raise typer.Exit(2) from None
        if region not in known:
            err_console.print(f"error: --region-fault: region {region!r} is in no wave of the spec",
                              markup=False, highlight=False)
            raise typer.Exit(2)
        faults[region] = replace(canary, error_rate=error_rate, change_at=None)
    return faults


# --------------------------------------------------------------------------- rollouts


def _rollout_table(rows: list[dict[str, Any]], title: str, latest: dict[str, str] | None) -> Table:
    """Rollout summaries as a table; ``latest`` (each rollout's newest event) adds a column when given."""
    from rich.table import Table

    table = Table(title=title, expand=False)
    columns = ("rollout", "phase", "stable", "canary", "weight", "step", "verdict")
    for column in (*columns, "latest") if latest is not None else columns:
        table.add_column(column)
    for r in rows:
        cells = [r["name"], r["phase"], r["stable"], r["canary"], f"{r['canary_weight']:g}%", str(r["step"]),
                 r["last_verdict"] or "-"]
        table.add_row(*cells, *((latest.get(r["name"], ""),) if latest is not None else ()))
    return table


def _sigterm_stops_like_ctrl_c() -> None:
    """``kill`` (SIGTERM) unwinds like Ctrl-C, so the runner stops the Envoy and processes it started."""
    import signal

    def stop(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)


def run_controller_foreground(store: Any, names: list[str], output: str, max_seconds: float | None,
                              until_paused: bool = False) -> list[RolloutRecord]:
    """Drive ``names`` here until they end (or ``max_seconds``; with ``until_paused``, until all of them
    wait for a person, as a CI gate asks), with a live view unless the output is JSON."""
    import threading

    from rich.live import Live

    from rollwise.control.local import record_summary
    from rollwise.controller import Controller
    from rollwise.core.model import Phase

    controller = Controller(store)
    _sigterm_stops_like_ctrl_c()
    seen: dict[str, int] = {}
    last: dict[str, str] = {}
    stop = threading.Event()

    def stop_when_paused(records: list[RolloutRecord]) -> None:
        if until_paused and records and all(r.phase == Phase.PAUSED for r in records):
            stop.set()

    try:
        if output == Output.json:
            return controller.run(names, max_seconds=max_seconds, on_tick=stop_when_paused, stop=stop)
        with Live(console=console, refresh_per_second=4) as live:
            def show(records: list[RolloutRecord]) -> None:
                stop_when_paused(records)
                for record in records:
                    for event in store.events(record.name, seen.get(record.name, 0)):
                        seen[record.name] = event.seq
                        last[record.name] = event.message[:90]
                        live.console.print(f"[dim]{record.name}[/] {event.type}: {event.message}",
                                           highlight=False)
                live.update(_rollout_table([record_summary(r) for r in records], "rollwise", last))

            return controller.run(names, on_tick=show, max_seconds=max_seconds, stop=stop)
    finally:
        controller.runtime.close()


def _show_event(name: str, event: dict[str, Any]) -> None:
    console.print(f"[dim]{name}[/] {event['type']}: {event['message']}", highlight=False)


@contextmanager
def _exits() -> Iterator[None]:
    """A ``ControlFailure`` ends the command: its lines on stderr (one line each), its exit code."""
    from rollwise.control.protocol import ControlFailure

    try:
        yield
    except ControlFailure as failure:
        for line in failure.lines:
            err_console.print(line, markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(failure.exit_code) from None


def _with_control(command: Callable[..., None]) -> Callable[..., None]:
    """Give a rollout command ``--store``, ``--server`` and ``--token`` and, as ``control``, the
    ``RolloutControl`` they name: a server's (``--server``) or this machine's store. One place decides."""

    @functools.wraps(command)
    def run(*args: Any, store: str | None = None, server: str | None = None, token: str | None = None,
            **kwargs: Any) -> None:
        with _exits():
            if server:
                from rollwise.control.remote import RemoteControl

                control: Any = RemoteControl(server, token, on_event=_show_event)
            else:
                from rollwise.control.local import LocalControl

                control = LocalControl(store, foreground=run_controller_foreground)
            with closing(control):
                command(*args, control=control, **kwargs)

    # typer reads the options from the signature: the command's own (annotations evaluated, ``control``
    # left out: typer does not fill it) and then the three that say where the rollouts are.
    hints = typing.get_type_hints(command, localns={"RolloutControl": Any}, include_extras=True)
    own = {n: a for n, a in hints.items() if n not in ("control", "return")}
    where = {"store": StoreOpt, "server": ServerOpt, "token": TokenOpt}
    added = {n: inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=kind)
             for n, kind in where.items()}
    params = [p.replace(annotation=own[p.name]) for p in inspect.signature(command).parameters.values()
              if p.name in own]
    at = next(i for i, p in enumerate(params) if p.name in ("actor", "output"))  # --help lists --store here
    params = [*params[:at], added["store"], *params[at:], added["server"], added["token"]]
    run.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    run.__annotations__ = own | where
    return run


def _print_summary(summary: dict[str, Any], output: Output, text: str) -> None:
    if output == Output.json:
        _print_json(summary)
    else:
        console.print(text, highlight=False)


@rollout_app.command("start")
@_with_control
def rollout_start(
    file: Annotated[Path, typer.Argument(help="Rollout spec.")],
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Run the controller here until it ends.")] = True,
    commit_time: Annotated[str | None, typer.Option(help="ISO time of the change, for lead time.")] = None,
    timeout: Annotated[str | None, typer.Option(
        "--timeout", help="With --wait: stop watching after this long (30s, 10m, 1h) and exit 5 if still running.")
    ] = None,
    max_seconds: Annotated[float | None, typer.Option(help="Same as --timeout, in seconds.", hidden=True)] = None,
    exit_on_pause: Annotated[bool, typer.Option(
        "--exit-on-pause", help="With --wait: exit 4 as soon as the rollout waits for a person.")] = False,
    junit: Annotated[Path | None, typer.Option(
        "--junit", help="With --wait: write a JUnit XML report here (a case per stage and metric).")] = None,
    summary_file: Annotated[Path | None, typer.Option(
        "--summary", help="With --wait: write a Markdown summary here (e.g. $GITHUB_STEP_SUMMARY).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Start even while the service has an open incident "
                                                          "(audited).")] = False,
    actor: ActorOpt = "",
    output: OutputOpt = Output.text,
    repo: Annotated[str | None, typer.Option(help="Git repository of the change: its risk may shape the plan.")] = None,
    from_rev: Annotated[str | None, typer.Option("--from", help="With --repo: the revision deployed now.")] = None,
    to_rev: Annotated[str | None, typer.Option("--to", help="With --repo: the revision being rolled out.")] = None,
    *,
    control: RolloutControl,
) -> None:
    """Create a rollout and (by default) drive it in the foreground with a live view.

    With --wait the exit code says how it ended, for CI/CD gates: 0 promoted; 3 rolled back or
    aborted; 4 paused for a person (an approval gate, a hold, a person's pause); 5 --timeout reached
    while it was still running; 1 an error (store, server, token); 2 bad input. See docs/ci.md.

    Example: rollwise rollout start examples/canary.yaml --timeout 30m --junit rollwise.xml
    With analysis.adaptive: {risk: true}: rollwise rollout start canary.yaml --repo . --from v1.4 --to HEAD
    """
    from rollwise.control.protocol import ChangeRef

    _parse_commit_time(commit_time)
    if (repo is None) != (from_rev is None) or (repo is None) != (to_rev is None):
        err_console.print("error: --repo, --from and --to go together", markup=False, highlight=False)
        raise typer.Exit(2)
    change = ChangeRef(repo, from_rev, to_rev) if repo and from_rev and to_rev else None
    limit = _timeout_seconds(timeout, max_seconds)
    summary = control.start(file, _actor(actor), commit_time, change, force=force)
    if wait:
        summary = control.follow(summary["name"], output.value, limit, exit_on_pause)
    _print_summary(summary, output, f"{summary['name']}: {summary['phase']}")
    if not wait:
        return
    from rollwise.cli.gate import exit_code

    code = exit_code(summary["phase"])
    if junit is not None or summary_file is not None:
        _write_gate_reports(control, summary, code, junit, summary_file)
    if code:
        raise typer.Exit(code)


def _timeout_seconds(timeout: str | None, max_seconds: float | None) -> float | None:
    from rollwise.core.units import parse_duration

    if timeout is None:
        return max_seconds
    try:
        return parse_duration(timeout)
    except ValueError as exc:
        err_console.print(f"error: --timeout: {exc}", markup=False, highlight=False)
        raise typer.Exit(2) from None


def _write_gate_reports(control: RolloutControl, summary: dict[str, Any], code: int, junit: Path | None,
                        markdown: Path | None) -> None:
    """The JUnit XML and Markdown summary of the rollout's latest run; an unwritable file is one line, exit 1."""
    from rollwise.cli.gate import gate_report, junit_xml, markdown_summary
    from rollwise.core.model import split_runs

    runs = split_runs(control.events(summary["name"]))
    report = gate_report(summary, runs[-1] if runs else [], code)
    for path, text, mode in ((junit, junit_xml(report), "w"), (markdown, markdown_summary(report), "a")):
        if path is None:
            continue
        try:
            with path.open(mode, encoding="utf-8") as out:  # a step summary file is appended to, as CI expects
                out.write(text)
        except OSError as exc:
            err_console.print(f"error: cannot write {path}: {exc.strerror or exc}", markup=False, highlight=False)
            raise typer.Exit(1) from None


@rollout_app.command("status")
@_with_control
def rollout_status(name: str, output: OutputOpt = Output.text, *, control: RolloutControl) -> None:
    """Show one rollout's phase, weights and latest verdict. Example: rollwise rollout status checkout"""
    summary = control.status(name)
    if output == Output.json:
        _print_json(summary)
        return
    waves = summary.pop("waves", None)
    for key, value in readable_times(summary).items():
        console.print(f"{key:>15}: {value}", markup=False, highlight=False)
    if waves:
        from rollwise.core.waves import WaveRow, wave_lines

        console.print("\n".join(wave_lines([WaveRow.model_validate(w) for w in waves])), markup=False,
                      highlight=False)


TIME_FIELDS = ("created_at", "updated_at", "finished_at", "route_applied_at")


def readable_times(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary with its epoch times as ``2025-01-31 12:00:05 UTC (2m ago)`` (text output only)."""
    import time

    from rollwise.core.units import format_when

    now = time.time()
    return {key: format_when(value, now) if key in TIME_FIELDS and isinstance(value, int | float) else value
            for key, value in summary.items()}


def _get_or_exit(store: Any, name: str) -> RolloutRecord:
    from rollwise.control.local import missing_note
    from rollwise.core.protocols import NotFoundError

    try:
        return store.get(name)  # type: ignore[no-any-return]
    except NotFoundError:
        err_console.print(f"error: no rollout named {name!r}{missing_note(store)}", markup=False, highlight=False)
        raise typer.Exit(1) from None


@rollout_app.command("list")
@_with_control
def rollout_list(
    active: Annotated[bool, typer.Option(help="Only rollouts that have not ended.")] = False,
    output: OutputOpt = Output.text,
    *,
    control: RolloutControl,
) -> None:
    """List rollouts. Example: rollwise rollout list --active"""
    rows = control.list(active)
    if output == Output.json:
        _print_json(rows)
        return
    if not rows and control.local:
        console.print(f"no rollouts{control.missing_note}", markup=False, highlight=False)
        return
    console.print(_rollout_table(rows, control.title, {} if control.local else None))


def _command(name: str, command: str, actor: str, reason: str, output: Output, control: RolloutControl,
             full: bool = False) -> None:
    summary = control.command(name, command, _actor(actor), reason, full=full)  # audited, role "local" here
    _print_summary(summary, output, f"{summary['name']}: {command} recorded; phase {summary['phase']}")


@rollout_app.command("promote")
@_with_control
def rollout_promote(
    name: str,
    full: Annotated[bool, typer.Option("--full", help="Skip remaining steps and analysis: 100% now.")] = False,
    actor: ActorOpt = "", reason: ReasonOpt = "", output: OutputOpt = Output.text, *, control: RolloutControl,
) -> None:
    """Advance one step (or all with --full). Example: rollwise rollout promote checkout --reason 'looks good'"""
    _command(name, "promote", actor, reason, output, control, full=full)


def _register_control(command: str, summary: str) -> None:
    """One ``rollwise rollout COMMAND NAME`` that records a manual control (same options for all)."""

    def control_command(name: str, actor: ActorOpt = "", reason: ReasonOpt = "", output: OutputOpt = Output.text,
                        *, control: RolloutControl) -> None:
        _command(name, command, actor, reason, output, control)

    control_command.__doc__ = f"{summary} Example: rollwise rollout {command} checkout -r 'why'"
    rollout_app.command(command)(_with_control(control_command))


for _command_name, _summary in (
    ("pause", "Hold the rollout where it is."),
    ("resume", "Continue a paused rollout."),
    ("abort", "Send all traffic back to stable and end the rollout."),
    ("approve", "Answer an approval gate (untilApproved step, stage cap or shadow on hold, blue/green cutover, "
                "a region wave's gate)."),
    ("undo", "Go back to the previous stable within the rollback window."),
):
    _register_control(_command_name, _summary)


@rollout_app.command("update")
@_with_control
def rollout_update(
    name: str,
    file: Annotated[Path, typer.Argument(help="The new spec; rejected whole if invalid.")],
    actor: ActorOpt = "", reason: ReasonOpt = "", output: OutputOpt = Output.text, *, control: RolloutControl,
) -> None:
    """Replace a running rollout's spec (analysis, steps). Invalid specs change nothing.

    Example: rollwise rollout update checkout examples/canary.yaml -r 'longer pauses'
    """
    summary = control.update(name, file, _actor(actor), reason)
    _print_summary(summary, output, f"{summary['name']}: spec updated")


RunOpt = Annotated[int | None, typer.Option("--run", min=1, help="Which run of a reused name (1 = first; "
                                                              "default: the latest).")]


def select_run(events: list[Any], name: str, run: int | None) -> list[Any]:
    """The events of one run of ``name`` (the latest by default); exit 1 naming the runs there are.

    A name is reused by starting a new rollout once the old one ended; its runs stay apart.
    """
    from rollwise.core.model import split_runs

    runs = split_runs(events)
    if run is None:
        chosen = runs[-1] if runs else []
    elif run <= len(runs):
        chosen = runs[run - 1]
    else:
        err_console.print(f"error: {name!r} has run(s) 1..{len(runs)}, not {run}", markup=False, highlight=False)
        raise typer.Exit(1)
    if len(runs) > 1:
        shown = run or len(runs)
        err_console.print(f"{name}: run {shown} of {len(runs)} (others: --run N)", markup=False, highlight=False)
    return chosen


@app.command()
@_with_control
def history(
    name: Annotated[str | None, typer.Argument(help="Rollout name; all rollouts if omitted.")] = None,
    run: RunOpt = None,
    output: OutputOpt = Output.text,
    *,
    control: RolloutControl,
) -> None:
    """Every event in order: steps, decisions with evidence, commands. Example: rollwise history checkout --run 1"""
    events = control.events(name)
    if name is not None:
        events = select_run(events, name, run)
    if output == Output.json:
        _print_json(events)
        return
    from datetime import UTC, datetime

    for e in events:
        when = datetime.fromtimestamp(e["at"], UTC).strftime("%Y-%m-%d %H:%M:%S")
        console.print(f"{when} {e['rollout']:<14} #{e['seq']:<4} {e['actor']:<10} {e['type']:<12} {e['message']}",
                      markup=False, highlight=False)


@app.command()
def controller(
    store: StoreOpt = None,
    once: Annotated[bool, typer.Option("--once", help="Tick every active rollout once and exit.")] = False,
    poll: Annotated[float, typer.Option(help="Seconds between ticks.")] = 0.25,
    max_seconds: Annotated[float | None, typer.Option(help="Exit after this long.")] = None,
    controller_id: Annotated[str | None, typer.Option(
        "--id", help="This controller's name in leases (default host:pid).")] = None,
    lease_ttl: Annotated[float, typer.Option(
        help="Seconds a lease lasts unrenewed: a killed controller's rollouts move on after this.")] = 10.0,
    ads_listen: Annotated[str | None, typer.Option(
        "--ads-listen", help="Also serve the store's envoy-ads routes to Envoys over ADS on host:port.")] = None,
) -> None:
    """Drive every active rollout in the store until stopped. Safe to kill and restart at any time.

    Several controllers may share one store: each takes a fair share of the rollouts under a lease
    and acts only on those (see `rollwise controllers`).

    Example: ROLLWISE_STORE=postgresql://rollwise@db/rollwise rollwise controller --id ctl-a
    """
    from rollwise.controller import Controller
    from rollwise.wiring import build_watch, open_audit, open_leases

    if lease_ttl <= poll or lease_ttl <= 0:
        err_console.print(f"error: --lease-ttl must be positive and longer than --poll ({poll}s)")
        raise typer.Exit(2)
    the_store = _store(store)
    ctl = Controller(the_store, leases=open_leases(the_store), identity=controller_id, lease_ttl=lease_ttl)
    ctl.watch = build_watch(ctl.store, ctl.runtime, open_audit(ctl.store)[0])
    ads = None
    if ads_listen:
        from rollwise.fleet.cli import start_or_exit

        ads = start_or_exit(the_store, ads_listen, ctl.runtime)
    _sigterm_stops_like_ctrl_c()
    try:
        if once:
            ctl.tick_all()
            ctl.watch_once()
        else:
            ctl.run(None, poll_s=poll, until_done=False, max_seconds=max_seconds)
    finally:
        ctl.close()
        ctl.runtime.close()
        if ads is not None:
            ads.close()


@app.command()
def controllers(store: StoreOpt = None, output: OutputOpt = Output.text, server: ServerOpt = None,
                token: TokenOpt = None) -> None:
    """Controllers sharing this store, alive or gone, and the rollouts each holds a lease on (#token).

    Example: rollwise controllers --store postgresql://rollwise@db/rollwise
    """
    import time

    from rollwise.fleet.view import fleet_view, render_fleet

    if server:
        from rollwise.fleet.cli import remote_rows

        rows = remote_rows(server, token, "/api/v1/fleet/controllers")
    else:
        from rollwise.wiring import open_leases

        leases = open_leases(_existing_store(store))
        rows = [] if leases is None else fleet_view(leases.controllers(), leases.leases(), time.time())
    if output == Output.json:
        _print_json(rows)
        return
    for line in render_fleet(rows):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


@app.command()
def explain(
    name: str,
    decision: Annotated[int | None, typer.Option("--decision", "-d", help="Decision number (default: last).")] = None,
    run: RunOpt = None,
    store: StoreOpt = None,
    output: OutputOpt = Output.text,
) -> None:
    """Explain a decision in plain words: metric, numbers, the rule that fired.

    Example: rollwise explain checkout --decision 3
    """
    from rollwise.analysis.explain import (
        explain_decision,
        explain_metrics,
        explain_plan,
        explain_route,
        explain_waves,
    )
    from rollwise.core.evidence import decision_of

    the_store = _existing_store(store)
    _get_or_exit(the_store, name)
    history = select_run(the_store.events(name), name, run)
    # a refused route or a failing backend is the first thing to say, decision or not
    failing = "\n".join(text for text in (explain_route(history), explain_metrics(history)) if text) or None
    events = [e for e in history if e.type == "decision"]
    plans = [explain_plan(e) for e in history if e.type == "plan"]
    waves = explain_waves(history)
    if waves is not None and output != Output.json:
        plans.append(waves)
    if plans and output != Output.json:
        console.print("\n".join(plans) + "\n", markup=False, highlight=False)
    if failing is not None and output != Output.json:
        console.print(failing + ("\n" if events else ""), markup=False, highlight=False)
    if not events:
        if (failing is not None or plans) and output != Output.json:
            return
        err_console.print(f"error: no decisions recorded for {name!r}")
        raise typer.Exit(1)
    chosen = events[-1] if decision is None else next((e for e in events if decision_of(e.data).index == decision),
                                                      None)
    if chosen is None:
        err_console.print(f"error: {name!r} has decisions 1..{len(events)}")
        raise typer.Exit(1)
    if output == Output.json:
        _print_json(chosen.model_dump(mode="json"))
        return
    console.print(explain_decision(chosen), markup=False, highlight=False)


class _LazyFlagsGroup(TyperGroup):
    """``rollwise flags``: its commands (and the flag compiler) load when a flags command runs, not for
    ``rollwise --help``."""

    def _load(self) -> None:
        if not self.commands:
            from rollwise.flags.cli import flags_app

            self.commands.update(typer.main.get_group(flags_app).commands)

    def list_commands(self, ctx: Any) -> list[str]:
        self._load()
        return super().list_commands(ctx)  # type: ignore[no-any-return]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        self._load()
        return super().get_command(ctx, cmd_name)


class _LazyMemoryGroup(_LazyFlagsGroup):
    """``rollwise memory``: its commands load when one runs."""

    def _load(self) -> None:
        if not self.commands:
            from rollwise.agents.cli import memory_app

            self.commands.update(typer.main.get_group(memory_app).commands)


def _mount_optional() -> None:
    """Sub-commands owned by other parts of the system, mounted when present."""
    from rollwise.demo.cli import demo

    app.command(name="demo")(demo)
    from rollwise.api.cli import register as register_api_commands

    register_api_commands(app)
    app.add_typer(typer.Typer(cls=_LazyFlagsGroup, no_args_is_help=True), name="flags",
                  help="Feature flags (flagd format): validate, evaluate, kill, restore, schedule.")
    from rollwise.experiments.cli import experiments_app

    app.add_typer(experiments_app, name="experiments")
    app.add_typer(typer.Typer(cls=_LazyMemoryGroup, no_args_is_help=True), name="memory",
                  help="An agent's memory versioned with the release (LanceDB): list, diff, restore.")
    from rollwise.report.cli import register as register_report_commands

    register_report_commands(app)  # rollwise report, rollwise metrics
    from rollwise.watch.anomaly_cli import anomaly_app

    app.add_typer(anomaly_app, name="anomaly")
    from rollwise.watch.cli import register as register_watch_commands

    register_watch_commands(app)  # rollwise changes, rollwise incidents
    from rollwise.learning.cli import register as register_risk_commands

    register_risk_commands(app)  # rollwise risk evaluate, rollwise risk score
    from rollwise.fleet.cli import fleet_app

    app.add_typer(fleet_app, name="fleet")


_mount_optional()


def main() -> None:
    """The ``rollwise`` command: every mistake ends as one ``error:`` line and a non-zero exit.

    Click's usage errors (a bad option value, an unknown command) are printed as one line instead of
    a boxed panel, and an unexpected exception as one line naming its kind instead of a traceback
    (``ROLLWISE_DEBUG=1`` shows the traceback). The specific causes print their own clearer lines first.
    """
    try:
        code = app(standalone_mode=False)
    except Exception as exc:
        code = _one_line_error(exc)
    sys.exit(code if isinstance(code, int) else 0)


def _one_line_error(exc: Exception) -> int:
    """Print ``exc`` as one line and give the exit code. Click's exceptions are matched by shape: typer
    ships its own copy of click, so ``click.ClickException`` is not the class it raises."""
    kind = type(exc).__name__
    if kind == "NoArgsIsHelpError":
        exc.show()  # type: ignore[attr-defined]  # `rollwise` alone prints the help (exit 2, as click does)
        return int(getattr(exc, "exit_code", 2))
    if hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int):
        err_console.print(f"error: {_usage_line(exc)}", markup=False, highlight=False)
        return exc.exit_code  # type: ignore[attr-defined, no-any-return]
    if kind == "Abort":
        err_console.print("aborted", markup=False, highlight=False)
        return 1
    if os.environ.get("ROLLWISE_DEBUG"):
        raise exc
    message = " ".join(str(exc).split())[:300] or "(no message)"
    err_console.print(f"error: unexpected {kind}: {message} (ROLLWISE_DEBUG=1 shows where)",
                      markup=False, highlight=False)
    return 1


def _usage_line(exc: Any) -> str:
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    return f"{message} (see: {ctx.command_path} --help)" if ctx is not None else message


if __name__ == "__main__":
    main()
