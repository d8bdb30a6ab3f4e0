"""``rollwise report`` and ``rollwise metrics``: the postmortem of one rollout, and delivery metrics
over the store's history. Mounted on the main CLI by ``register(app)``."""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # an error stays one line, however long


class ReportFormat(StrEnum):
    md = "md"
    html = "html"
    text = "text"


class MetricsOutput(StrEnum):
    text = "text"
    json = "json"


StoreOpt = Annotated[
    str | None,
    typer.Option("--store", envvar="ROLLWISE_STORE", help="Store URL: sqlite:///path.db or postgresql+psycopg://…"),
]


def _open(url: str | None) -> Any:
    """The store for reading: exit 1 with one line if it cannot be opened; an empty one if it does not exist.

    Reports never create a store (nor ``~/.rollwise``).
    """
    from rollwise.core.protocols import StoreUnavailable
    from rollwise.wiring import open_store_for_reading

    try:
        return open_store_for_reading(url)
    except StoreUnavailable as exc:
        err_console.print(f"error: --store: {exc}", markup=False, highlight=False)
        raise typer.Exit(1) from None


def report(
    name: Annotated[str, typer.Argument(help="Rollout name.")],
    format: Annotated[ReportFormat, typer.Option("--format", "-f", help="md, html, or text (the RCA only).")] = (
        ReportFormat.md),
    output: Annotated[str | None, typer.Option(
        "--output", "-o", help="The format, as in every command (md, html, text); same as --format.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write to FILE (default: stdout).")] = None,
    similar: Annotated[bool, typer.Option(
        "--similar/--no-similar", help="Show the three most similar past rollbacks and incidents in the RCA.")] = True,
    store: StoreOpt = None,
) -> None:
    """Postmortem of a rollout: timeline, weights, canary vs baseline charts, decisions, RCA, follow-ups.

    Example: rollwise report checkout --format html --out checkout.html
    """
    from rollwise.core.memory_store import MissingStore
    from rollwise.core.protocols import NotFoundError
    from rollwise.report.postmortem import load_postmortem, to_html, to_markdown

    format = _format_from_output(output, format)
    _check_writable(out)
    the_store = _open(store)
    try:
        pm = load_postmortem(the_store, name)
    except NotFoundError:
        missing = the_store.missing if isinstance(the_store, MissingStore) else None
        err_console.print(f"error: no rollout named {name!r}" + (f" ({missing})" if missing else ""),
                          markup=False, highlight=False)
        raise typer.Exit(1) from None
    if similar and pm.rca.failed:
        pm.similar = _similar(the_store, pm)
    if format == ReportFormat.html:
        text = to_html(pm)
    elif format == ReportFormat.md:
        text = to_markdown(pm)
    else:
        text = pm.rca_text() + "\n"
    if out is None:
        sys.stdout.write(text)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        err_console.print(f"error: --out {out}: {exc.strerror or exc}", markup=False, highlight=False)
        raise typer.Exit(1) from None
    err_console.print(f"wrote {out} ({len(text):,} bytes)", markup=False, highlight=False)


def _similar(store: Any, pm: Any) -> Any:
    """The past incidents most like this rollback; a memory that cannot be read is a warning, not a failure."""
    from rollwise.report.similar import rollout_signature
    from rollwise.wiring import similar_incidents

    try:
        return similar_incidents(store, rollout_signature(pm.record, pm.events, pm.rca))
    except Exception as exc:  # the postmortem stands without them
        err_console.print(f"warning: similar incidents: {' '.join(str(exc).split())[:300]}", markup=False,
                          highlight=False)
        return None


def _format_from_output(output: str | None, format: ReportFormat) -> ReportFormat:
    """``-o``/``--output`` names a format in every rollwise command; a file name there is refused with the fix.

    (Until this release ``report -o`` took a FILE; the report now goes to a file with ``--out``.)
    """
    if output is None:
        return format
    try:
        return ReportFormat(output)
    except ValueError:
        err_console.print(f"error: -o/--output is the format (md, html or text) as in every rollwise command; "
                          f"to write a file use --out {output}", markup=False, highlight=False)
        raise typer.Exit(2) from None


def _check_writable(out: Path | None) -> None:
    """Refuse an ``--out`` that cannot be written before any work is done, with one line saying why."""
    if out is None:
        return
    problem = None
    if out.is_dir():
        problem = "is a folder; name a file, e.g. --out " + str(out / "postmortem.html")
    elif not out.parent.is_dir():
        problem = f"folder {out.parent} does not exist"
    elif not os.access(out if out.exists() else out.parent, os.W_OK):
        problem = "permission denied"
    if problem:
        err_console.print(f"error: --out {out}: {problem}", markup=False, highlight=False)
        raise typer.Exit(2)


def _fmt_seconds(value: float | None) -> str:
    from rollwise.core.units import format_duration

    return "—" if value is None else format_duration(value)


def _fmt(value: float | None, pattern: str) -> str:
    return "—" if value is None else pattern.format(value)


def metrics(
    service: Annotated[str | None, typer.Option("--service", "-s", help="Only this service.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Window, e.g. 30d or 12h (default: all history).")] = (
        None),
    output: Annotated[MetricsOutput, typer.Option("--output", "-o", help="text or json")] = MetricsOutput.text,
    store: StoreOpt = None,
) -> None:
    """Delivery metrics (deployment frequency, change failure rate, recovery time, rollbacks, lead time,
    observability) per service and overall, with DORA performance bands.

    Example: rollwise metrics --since 30d --output json
    """
    from rollwise.core.units import parse_duration
    from rollwise.report.metrics import delivery_metrics

    since_s = None
    if since is not None:
        try:
            since_s = parse_duration(since)
        except ValueError as exc:
            err_console.print(f"error: --since: {exc}")
            raise typer.Exit(2) from None
    from rollwise.wiring import open_watch

    the_store = _open(store)
    data = delivery_metrics(the_store, service=service, since_s=since_s, watch=open_watch(the_store))
    if output == MetricsOutput.json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        return
    table = Table(title="rollwise delivery metrics" + (f" — {service}" if service else ""))
    for column in ("scope", "releases", "deploys/day", "change failure", "recovery (median)", "rollbacks/week",
                   "lead time (median)", "observability"):
        table.add_column(column)
    scopes = [("all services", data["overall"]), *data["services"].items()]
    for scope, m in scopes:
        dora = m["dora"]
        table.add_row(
            scope, str(m["releases_ended"]),
            _fmt(m["deployment_frequency_per_day"], "{:.2f}") + (f" ({dora['deployment_frequency']})"
                                                                  if dora["deployment_frequency"] else ""),
            _fmt(m["change_failure_rate"], "{:.0%}") + (f" ({dora['change_failure_rate']})"
                                                         if dora["change_failure_rate"] else ""),
            _fmt_seconds(m["recovery_time_s"]["median"]) + (f" ({dora['recovery_time']})"
                                                             if dora["recovery_time"] else ""),
            _fmt(m["rollback_frequency_per_week"], "{:.2f}"),
            _fmt_seconds(m["lead_time_s"]["median"]) + (f" ({dora['lead_time']})" if dora["lead_time"] else ""),
            _fmt(m["release_observability"], "{:.0%}"),
        )
    console.print(table)
    console.print("Bands: DORA 2023 clusters (elite/high/medium/low). Definitions: rollwise metrics --output json",
                  style="dim")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
    app.command("metrics")(metrics)
