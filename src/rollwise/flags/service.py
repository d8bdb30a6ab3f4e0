"""The flag service: OFREP evaluation, an SSE change stream, exposures and release controls over HTTP.

`create_flags_router(repository, ...)` returns an APIRouter; `create_flags_app(flags_path, ...)` wraps it
in a standalone FastAPI app that also runs the file watcher. `rollwise serve` mounts the router without
its release controls (the API's audited `/api/v1/flags` routes are the only ones there) and answers its
`authorize` hook with the API's tokens and roles.

Who may call is one hook, `authorize(request, scope) -> actor | Response` (scopes "evaluate": OFREP and
the change stream; "admin": exposures, history, release controls). The standalone app's default,
`token_authorizer`, is open on loopback until tokens are configured; then every request needs
`Authorization: Bearer` or `X-API-Key`, checked by a plain `(token, scope) -> actor | None` callable.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from rollwise.flags.controls import ControlError, parse_time
from rollwise.flags.definitions import FlagValidationError
from rollwise.flags.evaluator import FLAG_NOT_FOUND, Resolution
from rollwise.flags.exposure import ExposureLog, is_experiment
from rollwise.flags.repository import ConfigChange, FlagRepository, HistoryStore

TokenCheck = Callable[[str, str], str | None]
"""`(token, scope) -> actor`: the identity to audit under, or None to refuse (HTTP 403)."""

Authorize = Callable[[Request, str], "str | Response"]
"""`(request, scope) -> actor`, or the refusal to send instead (401/403)."""

EVALUATE = "evaluate"
ADMIN = "admin"


def static_tokens(tokens: Mapping[str, str] | Iterable[str]) -> TokenCheck:
    """A TokenCheck from fixed tokens: a mapping token → actor, or bare tokens (actor "token:<prefix>")."""
    table = dict(tokens) if isinstance(tokens, Mapping) else {t: f"token:{t[:4]}" for t in tokens}

    def check(token: str, scope: str) -> str | None:
        return table.get(token)

    return check


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host in ("localhost", "testclient"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _token(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth and auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return request.headers.get("x-api-key") or None


def token_authorizer(token_check: TokenCheck | None) -> Authorize:
    """Open on loopback while `token_check` is None; otherwise a token it accepts for the scope."""

    def authorize(request: Request, scope: str) -> str | Response:
        if token_check is None:
            client = request.client.host if request.client else None
            return "local" if _is_loopback(client) else Response(status_code=401)
        token = _token(request)
        if token is None:
            return Response(status_code=401, headers={"WWW-Authenticate": "Bearer"})
        actor = token_check(token, scope)
        return Response(status_code=403) if actor is None else actor

    return authorize


class ChangeBroadcaster:
    """Fans configuration changes out to SSE subscribers; changes arrive on the watcher's thread."""

    def __init__(self, repository: FlagRepository):
        self._subscribers: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[ConfigChange]]] = set()
        self._lock = threading.Lock()
        repository.subscribe(self._publish)

    def _publish(self, change: ConfigChange) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for loop, queue in subscribers:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(queue.put_nowait, change)

    @contextlib.contextmanager
    def subscription(self) -> Any:
        entry = (asyncio.get_running_loop(), asyncio.Queue[ConfigChange]())
        with self._lock:
            self._subscribers.add(entry)
        try:
            yield entry[1]
        finally:
            with self._lock:
                self._subscribers.discard(entry)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)


def _success_body(key: str, r: Resolution) -> dict[str, Any]:
    body: dict[str, Any] = {"key": key, "reason": r.reason, "variant": r.variant, "metadata": dict(r.metadata)}
    if r.variant is not None:
        body["value"] = r.value
    return body


def _error_body(key: str, r: Resolution) -> dict[str, Any]:
    return {"key": key, "errorCode": r.error_code, "errorDetails": r.error_message or r.error_code}


def _change_json(change: ConfigChange) -> str:
    return json.dumps(
        {
            "version": change.version,
            "etag": change.etag,
            "flagsChanged": change.flags_changed,
            "action": change.action,
            "at": change.at,
        }
    )


def create_flags_router(
    repository: FlagRepository,
    *,
    token_check: TokenCheck | None = None,
    authorize: Authorize | None = None,
    exposures: ExposureLog | None = None,
    keepalive_seconds: float = 15.0,
    clock: Callable[[], float] = time.time,
    include_controls: bool = True,
) -> APIRouter:
    """All flag endpoints over one repository. The caller runs `repository.start()` (the app factory does).

    `authorize` decides who may call (default: `token_authorizer(token_check)`).
    `include_controls=False` leaves out `/flags`, `/flags/history` and the `/flags/{key}/...` release
    controls, for a host app that serves its own; OFREP, the change stream and exposures stay.
    """
    router = APIRouter()
    broadcaster = ChangeBroadcaster(repository)
    exposure_log = exposures if exposures is not None else ExposureLog()
    router.exposures = exposure_log  # type: ignore[attr-defined]
    router.broadcaster = broadcaster  # type: ignore[attr-defined]

    authorize = authorize or token_authorizer(token_check)

    def expose(key: str, r: Resolution, context: dict[str, Any]) -> None:
        if r.variant is not None and is_experiment(r.metadata):
            subject = context.get("targetingKey")
            exposure_log.record(key, r.variant, subject if isinstance(subject, str) else None, clock())

    _add_evaluation(router, repository, authorize, expose)
    _add_change_stream(router, repository, authorize, broadcaster, keepalive_seconds)

    @router.get("/flags/exposures", tags=["flags"])
    async def exposures_endpoint(
        request: Request, flag: str | None = None, variant: str | None = None, since: float | None = None
    ) -> Response:
        who = authorize(request, ADMIN)
        if isinstance(who, Response):
            return who
        events = exposure_log.query(flag, variant, since=since)
        body: dict[str, Any] = {"exposures": [asdict(e) for e in events]}
        if flag is not None:
            body["summary"] = {v: asdict(s) for v, s in exposure_log.summary(flag).items()}
        return JSONResponse(body)

    if include_controls:
        _add_controls(router, repository, authorize)
    return router


def _add_evaluation(router: APIRouter, repository: FlagRepository, authorize: Authorize,
                    expose: Callable[[str, Resolution, dict[str, Any]], None]) -> None:
    """OFREP's evaluation endpoints: one flag, or every flag with an ETag for the context."""

    @router.post("/ofrep/v1/evaluate/flags/{key}", tags=["ofrep"])
    async def evaluate_flag(key: str, request: Request) -> Response:
        who = authorize(request, EVALUATE)
        if isinstance(who, Response):
            return who
        context = await _read_context(request, key)
        if isinstance(context, Response):
            return context
        r = repository.flag_set.resolve(key, context, None)
        if r.error_code == FLAG_NOT_FOUND:
            return JSONResponse(_error_body(key, r), 404)
        if r.error_code is not None:
            return JSONResponse(_error_body(key, r), 400)
        expose(key, r, context)
        return JSONResponse(_success_body(key, r))

    @router.post("/ofrep/v1/evaluate/flags", tags=["ofrep"])
    async def evaluate_all(request: Request) -> Response:
        who = authorize(request, EVALUATE)
        if isinstance(who, Response):
            return who
        context = await _read_context(request, "")
        if isinstance(context, Response):
            return context
        flag_set, config_etag = repository.flag_set, repository.etag
        canonical = json.dumps(context, sort_keys=True, separators=(",", ":"), default=str)
        etag = '"' + hashlib.sha256(f"{config_etag}|{canonical}".encode()).hexdigest()[:24] + '"'
        if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers={"ETag": etag})
        flags = []
        for key in flag_set:
            r = flag_set.resolve(key, context, None)
            if r.error_code is None:
                expose(key, r, context)
                flags.append(_success_body(key, r))
            else:
                flags.append(_error_body(key, r))
        return JSONResponse({"flags": flags, "metadata": dict(flag_set.metadata)}, headers={"ETag": etag})


def _add_change_stream(router: APIRouter, repository: FlagRepository, authorize: Authorize,
                       broadcaster: ChangeBroadcaster, keepalive_seconds: float) -> None:
    @router.get("/ofrep/v1/changes", tags=["ofrep"])
    async def changes(request: Request) -> Response:
        """Server-sent events: `ready` once, then `configuration_changed` on every change."""
        who = authorize(request, EVALUATE)
        if isinstance(who, Response):
            return who

        async def stream() -> AsyncIterator[str]:
            with broadcaster.subscription() as queue:
                ready = {"version": repository.version, "etag": repository.etag}
                yield f"retry: 1000\nevent: ready\ndata: {json.dumps(ready)}\n\n"
                while True:
                    try:
                        change = await asyncio.wait_for(queue.get(), keepalive_seconds)
                    except TimeoutError:
                        yield ": keepalive\n\n"
                        continue
                    yield f"id: {change.version}\nevent: configuration_changed\ndata: {_change_json(change)}\n\n"

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )


def _add_controls(router: APIRouter, repository: FlagRepository, authorize: Authorize) -> None:
    """The standalone service's flag list, history and release controls (`rollwise serve` has `/api/v1/flags`)."""
    _add_inspection(router, repository, authorize)
    _add_release_controls(router, repository, authorize)


def _add_inspection(router: APIRouter, repository: FlagRepository, authorize: Authorize) -> None:
    @router.get("/flags", tags=["flags"])
    async def list_flags(request: Request) -> Response:
        who = authorize(request, EVALUATE)
        if isinstance(who, Response):
            return who
        killed = repository.killed()
        flags = [
            {
                "key": key,
                "state": f.definition.state,
                "kind": f.kind,
                "variants": sorted(f.definition.variants),
                "defaultVariant": f.definition.default_variant,
                "targeted": bool(f.definition.targeting),
                "killed": key in killed,
                "metadata": dict(f.metadata),
            }
            for key, f in repository.flag_set.flags.items()
        ]
        return JSONResponse(
            {
                "version": repository.version,
                "etag": repository.etag,
                "flags": flags,
                "schedules": [s.to_json() for s in repository.schedules()],
            }
        )

    @router.get("/flags/history", tags=["flags"])
    async def history(request: Request, flag: str | None = None) -> Response:
        who = authorize(request, ADMIN)
        if isinstance(who, Response):
            return who
        return JSONResponse([r.to_json() for r in repository.changes(flag)])


def _add_release_controls(router: APIRouter, repository: FlagRepository, authorize: Authorize) -> None:
    async def control(request: Request, apply: Callable[[str, dict[str, Any]], Any]) -> Response:
        who = authorize(request, ADMIN)
        if isinstance(who, Response):
            return who
        try:
            body = json.loads(await request.body() or b"{}")
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            reason = body.get("reason")
            if not isinstance(reason, str) or not reason.strip():
                raise ValueError("field 'reason' is required: say why")
            record = apply(who, body)
        except (ValueError, ControlError, FlagValidationError) as e:
            return JSONResponse({"error": str(e)}, 400)
        return JSONResponse(record.to_json())

    @router.post("/flags/{key}/kill", tags=["flags"])
    async def kill(key: str, request: Request) -> Response:
        return await control(request, lambda who, b: repository.kill(key, who, b["reason"]))

    @router.post("/flags/{key}/restore", tags=["flags"])
    async def restore(key: str, request: Request) -> Response:
        return await control(request, lambda who, b: repository.restore(key, who, b["reason"]))

    @router.post("/flags/{key}/rollout", tags=["flags"])
    async def rollout(key: str, request: Request) -> Response:
        return await control(
            request, lambda who, b: repository.set_rollout_percent(key, float(b["percent"]), who, b["reason"])
        )

    @router.post("/flags/{key}/schedule", tags=["flags"])
    async def schedule(key: str, request: Request) -> Response:
        def apply(who: str, b: dict[str, Any]) -> Any:
            percent = b.get("percent")
            return repository.schedule(
                key,
                parse_time(str(b["at"])),
                str(b["action"]),
                who,
                b["reason"],
                None if percent is None else float(percent),
            )

        return await control(request, apply)


async def _read_context(request: Request, key: str) -> dict[str, Any] | Response:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        return JSONResponse(
            {"key": key, "errorCode": "INVALID_CONTEXT", "errorDetails": "request body is not JSON"}, 400
        )
    context = body.get("context", {}) if isinstance(body, dict) else None
    if context is None:
        context = {}
    if not isinstance(context, dict):
        return JSONResponse(
            {"key": key, "errorCode": "INVALID_CONTEXT", "errorDetails": "'context' must be an object"}, 400
        )
    return context


def create_flags_app(
    flags_path: str | Path,
    *,
    token_check: TokenCheck | None = None,
    tokens: Mapping[str, str] | Iterable[str] | None = None,
    history: HistoryStore | None = None,
    exposures: ExposureLog | None = None,
    poll_interval: float = 0.15,
    clock: Callable[[], float] = time.time,
    fractional_version: int | None = None,
    keepalive_seconds: float = 15.0,
) -> FastAPI:
    """A standalone flag service over one flag file (the main app mounts `create_flags_router` instead)."""
    if token_check is None and tokens is not None:
        token_check = static_tokens(tokens)
    repository = FlagRepository(
        flags_path,
        history=history,
        clock=clock,
        fractional_version=fractional_version,
        poll_interval=poll_interval,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        repository.start()
        try:
            yield
        finally:
            repository.stop()

    app = FastAPI(title="rollwise flags", lifespan=lifespan)
    router = create_flags_router(
        repository, token_check=token_check, exposures=exposures, keepalive_seconds=keepalive_seconds, clock=clock
    )
    app.include_router(router)
    app.state.repository = repository
    app.state.exposures = router.exposures  # type: ignore[attr-defined]
    return app
