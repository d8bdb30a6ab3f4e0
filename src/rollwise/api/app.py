"""The FastAPI application: API, live stream, flags (OFREP) and the dashboard, in one process.

``create_app`` is the factory ``rollwise serve`` runs under uvicorn; tests call it too. With
``run_controller=True`` the app also runs the controller loop in a background thread, so a
rollout started over HTTP progresses without a separate ``rollwise controller``. The thread and
the request handlers share nothing but the store, whose optimistic revisions keep them (and any
other controller on the same store) from overwriting each other.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from rollwise.api import admin, guards, insights, rollouts, stream
from rollwise.api.auth import Gatekeeper
from rollwise.api.policy import SpecPolicy
from rollwise.control.plane import ControlPlane
from rollwise.core.engine import CommandError
from rollwise.core.protocols import AuditLog, ConflictError, NotFoundError, Store
from rollwise.telemetry.limits import TelemetryLimits
from rollwise.wiring import Runtime, build_watch, open_audit, open_shared_flags

log = logging.getLogger("rollwise.api")
STATIC = Path(__file__).parent / "static"


class ControllerThread:
    """Runs ``Controller.run`` (the same loop as ``rollwise controller``) in a thread until stopped."""

    def __init__(self, store: Store, runtime: Runtime | None = None, poll_s: float = 0.25,
                 audit: AuditLog | None = None, flags: Any = None) -> None:
        from rollwise.controller import Controller
        from rollwise.wiring import open_leases

        self.controller = Controller(store, runtime=runtime, leases=open_leases(store))  # one of the fleet
        if audit is not None:  # the post-release watch runs beside the rollouts
            self.controller.watch = build_watch(store, self.controller.runtime, audit, flags)
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rollwise-controller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        self.controller.close()
        self.controller.runtime.close()

    def _run(self) -> None:
        self.controller.run(None, poll_s=self.poll_s, until_done=False, stop=self._stop)


def create_app(
    store_url: str | None = None,
    flags_path: str | None = None,
    *,
    store: Store | None = None,
    run_controller: bool = False,
    controller_poll_s: float = 0.25,
    runtime: Runtime | None = None,
    allow_commands: bool = False,
    stream_poll_s: float = 0.5,
    policy: SpecPolicy | None = None,
    max_body_bytes: int = guards.MAX_BODY_BYTES,
    telemetry_limits: TelemetryLimits | None = None,
    ads_listen: str | None = None,
) -> FastAPI:
    """The control-plane app over the store at ``store_url`` (or an already open ``store``).

    ``policy``: what specs from the API may make this server do (files, URLs, processes, upstreams);
    by default nothing outside the server's own folder and loopback (``allow_commands`` as given).
    """
    flags = _open_flags(flags_path) if flags_path else None  # a bad flag file fails before a store is made
    if store is None:
        from rollwise.wiring import open_store

        store = open_store(store_url)
    audit, tokens = open_audit(store)
    if flags is not None and flags_path is not None and (shared := open_shared_flags(store, flags_path)) is not None:
        flags.share(shared)  # replicas on one PostgreSQL serve one flag document
    plane = ControlPlane(store=store, audit=audit, policy=policy or SpecPolicy(allow_commands=allow_commands))

    import time

    from rollwise.telemetry.aggregate import SpanAggregates

    # OTLP in (api/otlp.py), read by `metrics.source: otlp`; bounded per service (telemetry/limits.py)
    telemetry = SpanAggregates(clock=time.time, limits=telemetry_limits)
    if run_controller:
        runtime = runtime or Runtime(store=store)
        runtime.telemetry = runtime.telemetry or telemetry
    ads = None
    if ads_listen:  # started now, so a port in use fails `serve` before it listens for HTTP
        from rollwise.wiring import start_ads

        ads = start_ads(store, ads_listen, runtime)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.stopping = asyncio.Event()
        guards.install_log_redaction()  # again: the server may have configured logging since create_app
        controller = ControllerThread(store, runtime, controller_poll_s, audit, flags) if run_controller else None
        if controller is not None:
            controller.start()
        if flags is not None:
            flags.start()
        try:
            yield
        finally:
            app.state.stopping.set()
            if controller is not None:
                controller.stop()
            if flags is not None:
                flags.stop()
            if ads is not None:
                ads.close()

    app = FastAPI(
        title="rollwise",
        version="1",
        summary="Progressive delivery control plane: rollouts, decisions with evidence, flags, audit.",
        description="Reads need a `viewer` token, starting rollouts and pushing KPIs `deployer`, steering "
        "rollouts and flags `releaser`, tokens and audit `admin` (each role implies the ones before). "
        "While no token exists, loopback callers act as a local admin.",
        lifespan=lifespan,
        max_body_size=max_body_bytes,
        docs_url=None,  # FastAPI's pages load Swagger UI / ReDoc from a CDN; api/docs.py serves /docs locally
        redoc_url=None,
    )
    guards.install(app)
    app.state.plane = plane
    app.state.tokens = tokens
    app.state.gatekeeper = Gatekeeper(tokens, audit)
    app.state.stream_poll_s = stream_poll_s
    app.state.stopping = asyncio.Event()
    app.state.flags = flags

    @app.exception_handler(NotFoundError)
    async def _not_found(_request: Request, exc: NotFoundError) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": f"no rollout named {exc.args[0]!r}"})

    @app.exception_handler(CommandError)
    async def _command_error(_request: Request, exc: CommandError) -> JSONResponse:
        return JSONResponse(status_code=409, content={"detail": str(exc)})

    @app.exception_handler(ConflictError)
    async def _conflict(_request: Request, exc: ConflictError) -> JSONResponse:
        return JSONResponse(status_code=409, content={"detail": str(exc)})

    app.include_router(rollouts.router)
    app.include_router(stream.router)
    app.include_router(insights.router)
    app.include_router(admin.router)
    from rollwise.api import bridges

    app.include_router(bridges.router)  # Argo Rollouts' web provider and Flagger's webhooks
    from rollwise.api import otlp

    app.state.telemetry = runtime.telemetry if runtime is not None and runtime.telemetry else telemetry
    app.include_router(otlp.router)  # OpenTelemetry in: POST /v1/traces, /v1/logs, /v1/metrics
    app.include_router(otlp.traces_router)  # exemplar traces: GET /api/v1/traces/<trace id>
    from rollwise.api import flags as flags_api

    flags_api.mount(app, flags)
    from rollwise.api import experiments as experiments_api

    app.include_router(experiments_api.router)
    from rollwise.api import watch as watch_api

    watch_api.mount(app)
    from rollwise.api import fleet as fleet_api

    app.include_router(fleet_api.router)
    from rollwise.api import docs

    docs.mount(app)

    @app.get("/healthz", tags=["meta"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _open_flags(path: str) -> Any:
    from rollwise.flags import FlagRepository

    return FlagRepository(path)
