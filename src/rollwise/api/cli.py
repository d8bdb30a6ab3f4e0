"""``rollwise serve``, ``rollwise tokens …`` and ``rollwise audit …``.

``register(app)`` mounts the commands on the main CLI. (The rollout commands' ``--server`` mode is
``control/remote.py``.)
"""

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

tokens_app = typer.Typer(help="API tokens with roles. Example: rollwise tokens create --role releaser --name alice",
                         no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log of every write. Example: rollwise audit verify",
                        no_args_is_help=True)

StoreOpt = Annotated[
    str | None,
    typer.Option("--store", envvar="ROLLWISE_STORE", help="Store URL: sqlite:///path.db or postgresql+psycopg://…"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (same as --output json).")]


class Output(StrEnum):
    text = "text"
    json = "json"


OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="text or json, as in every rollwise command")]


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _local_actor() -> str:
    return f"cli:{os.environ.get('USER') or 'unknown'}"


def _open(store_url: str | None, *, read_only: bool = False) -> tuple[Any, Any, Any]:
    """Store, audit log and tokens; exit 1 with one line if the store cannot be opened (or, to read, is missing)."""
    from rollwise.core.protocols import StoreUnavailable
    from rollwise.wiring import open_audit, open_store

    try:
        store = open_store(store_url, create=not read_only)
    except StoreUnavailable as exc:
        err_console.print(f"error: --store: {exc}", markup=False, highlight=False)
        raise typer.Exit(1) from None
    audit, tokens = open_audit(store)
    return store, audit, tokens


def _require_key(audit: Any) -> None:
    """Load (or create) the audit key now: a bad key is one line and exit 2, before anything is written."""
    from rollwise.core.audit import AuditKeyError

    try:
        audit.key  # noqa: B018 - the property loads it
    except AuditKeyError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(2) from None


# --------------------------------------------------------------------------- serve


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    store: StoreOpt = None,
    flags: Annotated[Path | None, typer.Option("--flags", help="Serve this flagd-format flag file (OFREP).")] = None,
    controller: Annotated[bool, typer.Option("--controller/--no-controller",
                                             help="Drive rollouts in this process.")] = True,
    allow_commands: Annotated[bool, typer.Option("--allow-commands",
                                                 help="Let specs from the API start processes (versions.*.command).")
                              ] = False,
    allow_path: Annotated[list[Path] | None, typer.Option(
        "--allow-path", help="A folder specs from the API may name for traffic.path / traffic.flagsFile "
        "(repeatable; symlinks and .. are resolved first). Default: none, only the server's own folder.")] = None,
    allow_url: Annotated[list[str] | None, typer.Option(
        "--allow-url", help="A URL prefix specs from the API may name for metrics.prometheusUrl and "
        "notify.slack/teams/webhook, e.g. https://hooks.slack.com/ (repeatable). Default: none.")] = None,
    allow_upstream: Annotated[list[str] | None, typer.Option(
        "--allow-upstream", help="A host or network (10.0.0.0/8) specs from the API may name in "
        "versions.*.address (repeatable). Default: loopback only.")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    max_body_bytes: Annotated[int, typer.Option("--max-body-bytes", min=1,
                                                help="Refuse (413) request bodies larger than this.")] = 1 << 20,
    otlp_retention: Annotated[list[str] | None, typer.Option(
        "--otlp-retention", help="How long OTLP telemetry (per-second counts, route split, log templates, "
        "linked exemplar traces) is kept: DURATION for every service or SERVICE=DURATION for one "
        "(repeatable; at least 60s). Default: 1h.")] = None,
    otlp_sample: Annotated[list[str] | None, typer.Option(
        "--otlp-sample", help="Share of a service's traces counted, chosen by trace id as OpenTelemetry's "
        "TraceIdRatioBased sampler does (whole traces, their logs with them): RATE for every service or "
        "SERVICE=RATE for one (repeatable; in (0, 1]). Default: 1, every trace.")] = None,
    ads_listen: Annotated[str | None, typer.Option(
        "--ads-listen", help="Also serve the store's envoy-ads routes to Envoys over ADS on host:port.")] = None,
) -> None:
    """Run the API, the dashboard (/) and the controller in one process.

    While no API token exists, callers on 127.0.0.1 act as a local admin; create the first token with
    `rollwise tokens create --role admin --name you` to require tokens from then on.

    Specs posted to the API may only name files, URLs and upstreams the --allow-* options allow; others are
    refused (422 naming the field) and the refusal is audited (docs/serve-security.md).

    OTLP in (/v1/traces, /v1/logs, /v1/metrics) is bounded per service by --otlp-retention and --otlp-sample,
    which the server states when it starts (docs/otlp.md).

    Example: rollwise serve --port 8080 --flags flags.json --allow-path /srv/routes --allow-url https://hooks.slack.com/
    """
    import uvicorn

    from rollwise.api.app import create_app
    from rollwise.api.policy import SpecPolicy

    for prefix in allow_url or ():
        if not prefix.startswith(("http://", "https://")) or "@" in prefix:
            err_console.print(f"error: --allow-url {prefix!r}: give an http(s) URL prefix such as "
                              "https://hooks.slack.com/", soft_wrap=True, markup=False)
            raise typer.Exit(2)
    from rollwise.telemetry.limits import TelemetryLimits

    limits = TelemetryLimits()
    try:
        for setting in otlp_retention or ():
            limits = limits.with_retention(setting)
        for setting in otlp_sample or ():
            limits = limits.with_sample(setting)
    except ValueError as exc:
        err_console.print(f"error: {exc}", soft_wrap=True, markup=False, highlight=False)
        raise typer.Exit(2) from None
    served_flags = (flags,) if flags else ()  # progressive flag rollouts may write the flag file this server serves
    policy = SpecPolicy(allow_commands=allow_commands, allow_paths=(*(allow_path or ()), *served_flags),
                        allow_urls=tuple(allow_url or ()), allow_upstreams=tuple(allow_upstream or ()))
    from rollwise.core.protocols import StoreUnavailable
    from rollwise.flags.definitions import FlagValidationError

    try:
        app = create_app(store, str(flags) if flags else None, run_controller=controller, policy=policy,
                         max_body_bytes=max_body_bytes, telemetry_limits=limits, ads_listen=ads_listen)
    except StoreUnavailable as exc:
        err_console.print(f"error: --store: {exc}", markup=False, highlight=False)
        raise typer.Exit(1) from None
    except RuntimeError as exc:  # the ADS server cannot listen (AdsError)
        err_console.print(f"error: --ads-listen {ads_listen}: {exc}", markup=False, highlight=False)
        raise typer.Exit(1) from None
    except FlagValidationError as exc:  # a flag file that cannot be served: say why, start nothing
        typer.echo("\n".join(exc.problems), err=True)
        raise typer.Exit(2) from None
    _require_key(app.state.plane.audit)
    if not app.state.tokens.any_exist():
        err_console.print("[yellow]no API tokens yet: loopback callers act as admin, others are refused. "
                          "Create one with: rollwise tokens create --role admin --name <you>[/]")
    console.print(f"rollwise on http://{host}:{port}  (dashboard /, API /api/v1, reference /docs)",
                  highlight=False)
    console.print(limits.text(), highlight=False, markup=False, soft_wrap=True)
    from rollwise.telemetry.decode import protos_problem

    if (broken := protos_problem()) is not None:
        err_console.print(f"warning: {broken}", highlight=False, markup=False, soft_wrap=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=3)


# --------------------------------------------------------------------------- tokens


@tokens_app.command("create")
def tokens_create(
    role: Annotated[str, typer.Option("--role", help="viewer, deployer, releaser or admin.")],
    name: Annotated[str, typer.Option("--name", help="Who or what holds it; shown in the audit log.")],
    store: StoreOpt = None,
) -> None:
    """Create a token and print it once, alone on the last line (only its sha256 is stored).

    Example: TOKEN=$(rollwise tokens create --role releaser --name ci | tail -1)
    """
    from rollwise.core.audit import TokenError

    _, audit, tokens = _open(store)
    _require_key(audit)
    try:
        token, secret = tokens.create(name, role)
    except TokenError as exc:
        err_console.print(f"error: {exc}")
        raise typer.Exit(2) from None
    audit.append(actor=_local_actor(), role="local", action="tokens.create", target=f"token:{token.id}",
                 after={"name": token.name, "role": token.role})
    err_console.print(f"token {token.id} for {token.name!r} ({token.role}); it is shown only now:")
    sys.stdout.write(secret + "\n")


@tokens_app.command("list")
def tokens_list(store: StoreOpt = None, as_json: JsonOpt = False,
                output: OutputOpt = Output.text) -> None:
    """List tokens (never their secrets). Example: rollwise tokens list"""
    as_json = as_json or output == Output.json
    _, _, tokens = _open(store, read_only=True)
    rows = [t.to_dict() for t in tokens.list()]
    if as_json:
        _print_json(rows)
        return
    table = Table(title="API tokens")
    for column in ("id", "name", "role", "created", "revoked"):
        table.add_column(column)
    for row in rows:
        table.add_row(str(row["id"]), row["name"], row["role"], _when(row["created_at"]),
                      _when(row["revoked_at"]) if row["revoked_at"] else "-")
    console.print(table)


@tokens_app.command("revoke")
def tokens_revoke(token_id: Annotated[int, typer.Argument(help="Token id from `tokens list`.")],
                  store: StoreOpt = None) -> None:
    """Revoke a token; requests with it get 401 from then on. Example: rollwise tokens revoke 3"""
    _, audit, tokens = _open(store)
    _require_key(audit)
    before = tokens.get(token_id)
    if before is None:
        err_console.print(f"error: no token with id {token_id}")
        raise typer.Exit(1)
    token = tokens.revoke(token_id)
    audit.append(actor=_local_actor(), role="local", action="tokens.revoke", target=f"token:{token_id}",
                 before=before.to_dict(), after=token.to_dict())
    console.print(f"token {token_id} ({token.name}) revoked")


# --------------------------------------------------------------------------- audit


@audit_app.command("verify")
def audit_verify(
    store: StoreOpt = None,
    as_json: JsonOpt = False,
    output: OutputOpt = Output.text,
    head: Annotated[str | None, typer.Option("--head", help="ID:HASH from an earlier `rollwise audit head`: fail if "
                                                          "that row is gone (rows cut off) or differs.")] = None,
) -> None:
    """Recompute the keyed hash chain. Exit 0 if intact; else exit 1 naming the first edited, removed or moved row.

    Example: rollwise audit verify --head "$(cat audit-head.txt)"
    """
    as_json = as_json or output == Output.json
    from rollwise.core.audit import AuditKeyError, parse_anchor

    try:
        anchor = parse_anchor(head) if head is not None else None
    except ValueError as exc:
        err_console.print(f"error: --head: {exc}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    _, audit, _ = _open(store, read_only=True)
    try:
        report = audit.verify(anchor)
    except AuditKeyError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    if as_json:
        _print_json({"ok": report.ok, "rows": report.rows, "head": report.head, "head_id": report.head_id,
                     "keyed": report.keyed, "unkeyed": report.unkeyed,
                     "first_bad_row": report.problem.row_id if report.problem else None,
                     "problem": str(report.problem) if report.problem else None})
    elif report.ok:
        console.print(f"audit log intact: {report.rows} row(s), head {report.anchor or '(empty)'}"
                      + (", matches --head" if anchor else ""), highlight=False)
        if report.unkeyed:
            console.print(f"note: {report.unkeyed} older row(s) are chained by plain SHA-256 only (written before "
                          "the audit key): someone with database access could rewrite those undetected; "
                          "`--head` with an exported head catches that", highlight=False)
    else:
        err_console.print(f"audit log BROKEN: {report.problem}", highlight=False)
    if not report.ok:
        raise typer.Exit(1)


@audit_app.command("head")
def audit_head(store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Print the newest row as ID:HASH. Keep it outside the database; `audit verify --head` checks it later.

    Example: rollwise audit head >> /secure/audit-heads.txt
    """
    _, audit, _ = _open(store)
    head = audit.head()
    if as_json:
        _print_json({"id": head[0], "hash": head[1]} if head else None)
        return
    if head is None:
        err_console.print("error: the audit log is empty")
        raise typer.Exit(1)
    sys.stdout.write(f"{head[0]}:{head[1]}\n")


@audit_app.command("list")
def audit_list(
    limit: Annotated[int, typer.Option(help="Newest N rows.")] = 50,
    target: Annotated[str | None, typer.Option(help="Only this target (rollout name, token:ID, flag:KEY).")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
    output: OutputOpt = Output.text,
) -> None:
    """Who did what, when, before/after and why; refused attempts are marked DENIED.

    Example: rollwise audit list --target checkout
    """
    as_json = as_json or output == Output.json
    _, audit, _ = _open(store, read_only=True)
    entries = list(reversed(audit.entries(target, limit, newest_first=True)))
    if as_json:
        _print_json([e.to_dict() for e in entries])
        return
    for e in entries:
        outcome = "DENIED " if e.denied else ""
        change = _change_text(e.before, e.after)
        reason = f"  reason: {e.reason}" if e.reason else ""
        console.print(f"#{e.id:<5} {_when(e.at)} {e.actor:<20} {e.role:<9} {outcome}{e.action} {e.target}"
                      f"{change}{reason}", markup=False, highlight=False)


def _change_text(before: Any, after: Any) -> str:
    if isinstance(after, dict) and after.get("outcome") == "denied":
        return f"  ({after.get('status')}: {after.get('error')})"
    keys = ("phase", "canary_weight")
    if isinstance(before, dict) and isinstance(after, dict) and any(k in after for k in keys):
        parts = [f"{k} {before.get(k)} -> {after.get(k)}" for k in keys if before.get(k) != after.get(k)]
        return "  " + ", ".join(parts) if parts else ""
    return ""


def _when(ts: float | None) -> str:
    from datetime import UTC, datetime

    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.add_typer(tokens_app, name="tokens")
    app.add_typer(audit_app, name="audit")
