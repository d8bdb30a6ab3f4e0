"""``rollwise fleet …``: the Envoys of an ADS fleet (list), their bootstrap, and a standalone ADS server."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

fleet_app = typer.Typer(help="An Envoy fleet over ADS: list the Envoys, write a bootstrap, run a server.",
                        no_args_is_help=True)
console = Console(highlight=False, soft_wrap=True)  # a table row stays one line, piped or not
err_console = Console(stderr=True, highlight=False, soft_wrap=True)  # an error stays one line, however long

StoreOpt = Annotated[str | None, typer.Option("--store", envvar="ROLLWISE_STORE", help="Store URL.")]


class Output(StrEnum):
    text = "text"
    json = "json"


def _fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"error: {message}", markup=False)
    return typer.Exit(code)


def _store(url: str | None, *, create: bool) -> Any:
    from rollwise.core.protocols import StoreUnavailable
    from rollwise.wiring import open_store

    try:
        return open_store(url, create=create)
    except StoreUnavailable as exc:
        raise _fail(f"--store: {exc}") from None


@fleet_app.command("list")
def fleet_list(
    store: StoreOpt = None,
    server: Annotated[str | None, typer.Option("--server", envvar="ROLLWISE_SERVER",
                                               help="Ask a `rollwise serve` at this URL.")] = None,
    token: Annotated[str | None, typer.Option("--token", envvar="ROLLWISE_TOKEN", help="API token.")] = None,
    output: Annotated[Output, typer.Option("--output", "-o", help="text or json")] = Output.text,
) -> None:
    """Each Envoy: region, zone, connected or not, the routes version it ACKed, and any NACK.

    Example: rollwise fleet list --store postgresql+psycopg://rollwise@db/rollwise
    """
    from rollwise.fleet.view import envoy_rows, render_envoys

    if server:
        rows = remote_rows(server, token, "/api/v1/fleet/envoys")
    else:
        from rollwise.core.protocols import StoreUnavailable
        from rollwise.wiring import open_fleet, open_store_for_reading

        try:
            the_store = open_store_for_reading(store)
        except StoreUnavailable as exc:
            raise _fail(f"--store: {exc}") from None
        fleet = open_fleet(the_store)
        rows = envoy_rows(fleet.nodes(), time.time()) if fleet is not None else []
    if output == Output.json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    for line in render_envoys(rows):
        console.print(line, markup=False)


def remote_rows(server: str, token: str | None, path: str) -> list[dict[str, Any]]:
    """The rows a `rollwise serve` at ``server`` answers on ``path``; a failure is one line and exit 1."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(f"{server.rstrip('/')}{path}", headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        raise _fail(f"--server: {exc}") from None
    if response.status_code >= 400:
        raise _fail(f"--server: HTTP {response.status_code}: {response.text[:200]}")
    rows: list[dict[str, Any]] = response.json()
    return rows


@fleet_app.command("bootstrap")
def fleet_bootstrap(
    node_id: Annotated[str, typer.Option("--node-id", help="This Envoy's unique name in the fleet.")],
    ads: Annotated[str, typer.Option("--ads", help="host:port of rollwise's ADS server (--ads-listen).")],
    listen: Annotated[str, typer.Option("--listen", help="host:port this Envoy serves traffic on.")
                      ] = "127.0.0.1:10000",
    admin: Annotated[str, typer.Option("--admin", help="host:port of this Envoy's admin API (metrics).")
                     ] = "127.0.0.1:9901",
    region: Annotated[str | None, typer.Option("--region", help="Its region (waves, per-region weights).")] = None,
    zone: Annotated[str | None, typer.Option("--zone", help="Its zone.")] = None,
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="Serve TLS: certificate chain (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="Serve TLS: private key (PEM).")] = None,
    delta: Annotated[bool, typer.Option("--delta", help="Incremental xDS (DELTA_GRPC): each update carries only "
                                        "the resources that changed; the server speaks both.")] = False,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write here instead of stdout.")] = None,
) -> None:
    """Write an Envoy bootstrap (JSON) for rollwise's ADS server; run it with `envoy -c FILE --base-id N`.

    Example: rollwise fleet bootstrap --node-id edge-eu-1 --region eu --ads 10.0.0.5:18000 -o edge.json
    """
    from rollwise.fleet.bootstrap import ads_bootstrap

    try:
        document = ads_bootstrap(node_id, ads=ads, listen=listen, admin=admin, region=region, zone=zone,
                                 tls_cert=str(tls_cert.resolve()) if tls_cert else None,
                                 tls_key=str(tls_key.resolve()) if tls_key else None, delta=delta)
    except ValueError as exc:
        raise _fail(str(exc), 2) from None
    text = json.dumps(document, indent=2) + "\n"
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)
        err_console.print(f"wrote {out}; start it with: envoy -c {out} --base-id <unique per host>", markup=False)


@fleet_app.command("serve")
def fleet_serve(
    ads_listen: Annotated[str, typer.Option("--ads-listen", help="host:port to serve ADS on.")
                          ] = "127.0.0.1:18000",
    store: StoreOpt = None,
    max_seconds: Annotated[float | None, typer.Option(help="Exit after this long.")] = None,
) -> None:
    """Only the ADS server: serve the store's envoy-ads routes to the fleet (no API, no controller).

    Example: rollwise fleet serve --ads-listen 0.0.0.0:18000 --store postgresql+psycopg://rollwise@db/rollwise
    """
    ads = start_or_exit(_store(store, create=True), ads_listen)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    console.print(f"ADS on {ads_listen} (server {ads.server_id})", markup=False)
    try:
        stop.wait(max_seconds)
    except KeyboardInterrupt:
        pass
    finally:
        ads.close()


def start_or_exit(store: Any, listen: str, runtime: Any = None) -> Any:
    """``wiring.start_ads``, or one ``error: --ads-listen …`` line and exit 1."""
    from rollwise.core.protocols import StoreUnavailable
    from rollwise.wiring import start_ads

    try:
        return start_ads(store, listen, runtime)
    except (RuntimeError, StoreUnavailable) as exc:  # AdsError: cannot listen; or a store that keeps no fleet
        raise _fail(f"--ads-listen {listen}: {exc}") from None
