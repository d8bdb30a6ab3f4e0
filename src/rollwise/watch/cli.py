"""``rollwise changes record|list`` and ``rollwise incidents list|show``: the change log and the incidents
the watch opened. Mounted on the main CLI by ``register(app)``; they act on the store (``--store``)."""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console

err_console = Console(stderr=True, soft_wrap=True)

changes_app = typer.Typer(help="The change log: what changed on which service, when, by whom.",
                          no_args_is_help=True)
watch_app = typer.Typer(help="The post-release watch: run it alone, or show a service's policy.")
incidents_app = typer.Typer(help="Incidents the watch opened: onset, culprit, actions, recovery.",
                            no_args_is_help=True)

StoreOpt = Annotated[
    str | None,
    typer.Option("--store", envvar="ROLLWISE_STORE", help="Store URL: sqlite:///path.db or postgresql+psycopg://…"),
]


ServerOpt = Annotated[str | None, typer.Option("--server", envvar="ROLLWISE_SERVER",
                                              help="Talk to a `rollwise serve` at this URL instead of the store.")]
TokenOpt = Annotated[str | None, typer.Option("--token", envvar="ROLLWISE_TOKEN", help="API token for --server.")]


def _remote(server: str, token: str | None, call: Any) -> Any:
    """``call(client)`` on the server's API; its refusal as one ``error:`` line (exit 2 for bad input, else 1)."""
    from rollwise.control.client import ApiError, ControlPlaneClient

    with ControlPlaneClient(server, token) as client:
        try:
            return call(client)
        except ApiError as exc:
            raise _fail(f"{exc.message} (HTTP {exc.status})" if exc.status else exc.message,
                        2 if exc.status == 422 else 1) from None


class Output(StrEnum):
    text = "text"
    json = "json"


OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="text or json")]


def _fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(f"error: {message}", markup=False, highlight=False)
    return typer.Exit(code)


def _open(url: str | None, *, read_only: bool) -> Any:
    from rollwise.core.protocols import StoreUnavailable
    from rollwise.wiring import open_store, open_store_for_reading

    try:
        return open_store_for_reading(url) if read_only else open_store(url)
    except StoreUnavailable as exc:
        raise _fail(f"--store: {exc}", 1) from None


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")


@changes_app.command("record")
def record(
    service: Annotated[str, typer.Option(help="The service that changed.")],
    kind: Annotated[str, typer.Option(help="deploy, config, flag or infra.")],
    version: Annotated[str | None, typer.Option(help="The version it now runs (required for a deploy).")] = None,
    region: Annotated[str | None, typer.Option(help="Region it changed in (all, if left out).")] = None,
    description: Annotated[str, typer.Option(help="What changed, in a line.")] = "",
    scope: Annotated[str | None, typer.Option(help="What else it touched, e.g. flag:checkout.")] = None,
    actor: Annotated[str, typer.Option(envvar="ROLLWISE_ACTOR", help="Who changed it.")] = "",
    store: StoreOpt = None,
    server: ServerOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.text,
) -> None:
    """Record a change made outside rollwise, so the watch can name it behind an anomaly.

    Example: rollwise changes record --service web --kind deploy --version v7 --region eu --description "hotfix"
    """
    from rollwise.watch.changes import Change, ChangeError, outside_change
    from rollwise.watch.operations import record_change
    from rollwise.wiring import open_audit, open_watch

    try:
        change = outside_change(service=service, kind=kind, at=time.time(), version=version, region=region,
                                description=description, actor=actor or os.environ.get("USER") or "cli",
                                source="cli", scope=scope)
    except ChangeError as exc:
        raise _fail(f"--{exc}") from None
    if server:  # the server names the actor: the token's
        body = {k: v for k, v in change.to_json().items()
                if k in ("service", "kind", "version", "region", "scope", "description") and v not in (None, "")}
        stored = Change.from_json(_remote(server, token, lambda client: client.record_change(body)))
    else:
        the_store = _open(store, read_only=False)
        audit, _tokens = open_audit(the_store)
        stored = record_change(open_watch(the_store), audit, change, role="local")
    if output == Output.json:
        sys.stdout.write(json.dumps(stored.to_json(), indent=2) + "\n")
    else:
        typer.echo(f"{stored.id}: {stored.kind} of {stored.service} recorded")


@changes_app.command("list")
def list_changes(
    service: Annotated[str | None, typer.Option(help="Only this service (changes to every service included).")] = None,
    since: Annotated[str, typer.Option(help="How far back: 30m, 24h, 7d.")] = "24h",
    store: StoreOpt = None,
    server: ServerOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.text,
) -> None:
    """The change log, oldest first: recorded changes and rollwise's own (rollout steps, promotions, undos).

    Example: rollwise changes list --service web --since 24h
    """
    from rollwise.watch.changes import Change, ChangeError, parse_duration
    from rollwise.wiring import open_watch

    try:
        window = parse_duration(since, "--since")
    except ChangeError as exc:
        raise _fail(str(exc)) from None
    if server:
        rows = _remote(server, token, lambda client: client.changes(service, window))
        changes = [Change.from_json(row) for row in rows]
    else:
        changes = open_watch(_open(store, read_only=True)).changes(service=service, since=time.time() - window)
    if output == Output.json:
        sys.stdout.write(json.dumps([c.to_json() for c in changes], indent=2) + "\n")
        return
    if not changes:
        typer.echo(f"no changes in the last {since}")
    for c in changes:
        where = " ".join(x for x in (c.version and f"version={c.version}", c.region and f"region={c.region}",
                                     c.scope and f"scope={c.scope}") if x)
        typer.echo(f"{_when(c.at)}  {c.id:<16} {c.service:<14} {c.kind:<13} {where}  {c.actor}: "
                      f"{c.description}")


@incidents_app.command("list")
def list_incidents(
    service: Annotated[str | None, typer.Option(help="Only this service.")] = None,
    open_only: Annotated[bool, typer.Option("--open", help="Only incidents not resolved.")] = False,
    store: StoreOpt = None,
    output: OutputOpt = Output.text,
) -> None:
    """Incidents, oldest first. Example: rollwise incidents list --open"""
    from rollwise.wiring import open_watch

    incidents = open_watch(_open(store, read_only=True)).incidents(service=service, open_only=open_only)
    if output == Output.json:
        sys.stdout.write(json.dumps([i.to_json() for i in incidents], indent=2) + "\n")
        return
    if not incidents:
        typer.echo("no incidents")
    for i in incidents:
        culprit = (i.culprit or {}).get("id") or "no change"
        typer.echo(f"#{i.id:<4} {i.status:<9} {i.service:<14} onset {_when(i.onset)}  {i.metric:<12} "
                      f"culprit {culprit}  actions {len(i.actions)}")


@incidents_app.command("show")
def show_incident(
    incident_id: Annotated[int, typer.Argument(metavar="ID", help="Incident number.")],
    store: StoreOpt = None,
    output: OutputOpt = Output.text,
) -> None:
    """One incident with its evidence and actions. Example: rollwise incidents show 3"""
    from rollwise.watch.render import incident_text
    from rollwise.wiring import open_watch

    incident = open_watch(_open(store, read_only=True)).incident(incident_id)
    if incident is None:
        raise _fail(f"no incident #{incident_id}", 1)
    if output == Output.json:
        sys.stdout.write(json.dumps(incident.to_json(), indent=2) + "\n")
    else:
        typer.echo(incident_text(incident))


@incidents_app.command("similar")
def similar_incidents(
    ident: Annotated[str, typer.Argument(metavar="ID", help="A watch incident's number (as in `incidents list`) "
                                         "or a rollout's name (its latest run).")],
    top: Annotated[int, typer.Option("--top", min=1, max=20, help="How many to show.")] = 3,
    store: StoreOpt = None,
    output: OutputOpt = Output.text,
) -> None:
    """The past rollbacks and incidents most like ID, and how each was resolved.

    Similarity is the RCA text's embedding (the memory extra) and the signature (metrics and effect sizes,
    regressed routes, change features); without the embedding model it is signature only, and says so.
    Example: rollwise incidents similar checkout --output json
    """
    from rollwise.core.protocols import NotFoundError
    from rollwise.learning.incident_memory import IncidentMemoryUnavailable
    from rollwise.report.similar import query_signature
    from rollwise.wiring import open_watch, similar_incidents

    the_store = _open(store, read_only=True)
    try:
        query = query_signature(the_store, open_watch(the_store), ident)
    except NotFoundError as exc:
        message = str(exc).strip("'\"")
        raise _fail(message if message.startswith("no ") else f"no rollout named {ident!r}", 1) from None
    try:
        retrieval = similar_incidents(the_store, query, top)
    except (IncidentMemoryUnavailable, OSError, RuntimeError, ValueError) as exc:  # LanceDB or the model refused
        raise _fail(f"incident memory: {' '.join(str(exc).split())[:300]}", 1) from None
    if output == Output.json:
        sys.stdout.write(json.dumps({"query": {"id": query.id, "title": query.title}, **retrieval.to_json()},
                                    indent=2) + "\n")
        return
    typer.echo(f"{query.title or query.id}")
    for line in retrieval.lines():
        typer.echo(line)


@watch_app.callback(invoke_without_command=True)
def watch(
    ctx: typer.Context,
    store: StoreOpt = None,
    poll: Annotated[float, typer.Option(help="Seconds between passes.")] = 1.0,
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit.")] = False,
    max_seconds: Annotated[float | None, typer.Option(help="Exit after this long.")] = None,
) -> None:
    """Watch every service whose latest rollout has a ``watch:`` block, alone (``serve`` and ``controller``
    run the same watch beside the rollouts). Example: rollwise watch --store sqlite:///r.db"""
    if ctx.invoked_subcommand is not None:
        return
    import threading

    from rollwise.controller import default_controller_id
    from rollwise.core.leases import DEFAULT_LEASE_TTL_S
    from rollwise.wiring import Runtime, build_watch, open_audit, open_leases

    the_store = _open(store, read_only=False)
    runtime = Runtime(store=the_store)
    runner = build_watch(the_store, runtime, open_audit(the_store)[0])
    leases, holder = open_leases(the_store), f"watch@{default_controller_id()}"

    def owned(services: list[str]) -> set[str]:  # beside controllers on the same store, one watcher per service
        assert leases is not None
        return leases.claim_watch(holder, services, time.time(), DEFAULT_LEASE_TTL_S)

    started, stop = time.monotonic(), threading.Event()
    try:
        while not stop.is_set():
            for incident in runner.tick(owned if leases is not None else None):
                culprit = (incident.culprit or {}).get("id") or "no change"
                typer.echo(f"incident #{incident.id} {incident.status} on {incident.service}: {incident.metric}, "
                           f"culprit {culprit}")
            if once or (max_seconds is not None and time.monotonic() - started >= max_seconds):
                break
            stop.wait(poll)
    except KeyboardInterrupt:
        pass
    finally:
        if leases is not None:
            leases.release(holder)
        runtime.close()


@watch_app.command("policy")
def policy(
    service: Annotated[str, typer.Argument(help="The service.")],
    store: StoreOpt = None,
) -> None:
    """The watch policy in force for SERVICE: its latest rollout's ``watch:`` block (as JSON).

    Example: rollwise watch policy web"""
    records = [r for r in _open(store, read_only=True).list() if r.spec.service == service]
    if not records:
        raise _fail(f"no rollout of service {service!r}", 1)
    latest = max(records, key=lambda r: r.created_at)
    spec = latest.spec.watch
    typer.echo(json.dumps({"service": service, "rollout": latest.name,
                           "watch": spec.model_dump(mode="json") if spec else None}, indent=2))


def register(app: typer.Typer) -> None:
    app.add_typer(watch_app, name="watch")
    app.add_typer(changes_app, name="changes")
    app.add_typer(incidents_app, name="incidents")
