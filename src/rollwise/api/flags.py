"""Flags in the control plane: ``/api/v1/flags`` (list, kill switch, rollout share, schedules, history)
and the flags' data plane (OFREP evaluation, its change stream, exposures) from ``flags/service.py``.

There is one set of flag routes and one auth scheme: the API's. Every flag write is a control-plane
write under ``/api/v1/flags``: it needs the ``releaser`` role and gets an audit row like every other
write. The flags service's router is mounted without its own controls (``include_controls=False``),
and its ``authorize`` hook is answered by the API's gatekeeper: OFREP evaluation and the change stream
need ``viewer`` (no token while none exists, on loopback), exposures ``releaser``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from rollwise.api.auth import requires
from rollwise.api.schemas import DENIED, CommandRequest, FlagRolloutRequest, FlagScheduleRequest
from rollwise.control.principal import Principal, Role

router = APIRouter(prefix="/api/v1", tags=["flags"])
FlagKey = Annotated[str, Path(max_length=255, description="Flag key")]
CHANGED: dict[int | str, dict[str, Any]] = {**DENIED, 404: {"description": "No such flag"},
                                            409: {"description": "The change does not apply to the flag"}}


def _repository(request: Request) -> Any:
    repo = request.app.state.flags
    if repo is None:
        raise HTTPException(404, "flags are not served here: start the server with `rollwise serve --flags FILE`")
    return repo


def _flag_view(key: str, flag: dict[str, Any], killed: dict[str, Any]) -> dict[str, Any]:
    variants = flag.get("variants", {})
    return {
        "key": key,
        "state": flag.get("state"),
        "default_variant": flag.get("defaultVariant"),
        "variants": variants if isinstance(variants, dict) else {},
        "targeted": bool(flag.get("targeting")),
        "killed": key in killed,
        "killed_at": (killed.get(key) or {}).get("at") if key in killed else None,
    }


@router.get("/flags", responses=DENIED)
def list_flags(request: Request, _who: Principal = Depends(requires(Role.viewer))) -> dict[str, Any]:
    """Every flag as served now, with its kill-switch state and the pending schedules."""
    repo = request.app.state.flags
    if repo is None:
        return {"enabled": False, "source": None, "version": None, "last_error": None, "flags": []}
    document = repo.document
    killed = repo.killed()
    flags = document.get("flags", {})
    return {
        "enabled": True,
        "source": str(repo.path),
        "version": repo.version,
        "last_error": repo.last_error,
        "flags": [_flag_view(key, flag, killed) for key, flag in sorted(flags.items()) if isinstance(flag, dict)],
        "schedules": [s.to_json() for s in repo.schedules()],
    }


@router.get("/flags/history", responses=DENIED)
def flag_history(request: Request, flag: Annotated[str | None, Query(max_length=255)] = None,
                 _who: Principal = Depends(requires(Role.releaser))) -> list[dict[str, Any]]:
    """The flag file's change history: version, when, who, what and why."""
    return [r.to_json() for r in _repository(request).changes(flag)]


def _change(request: Request, key: str, action: str, who: Principal, reason: str,
            apply: Callable[[Any, str], Any]) -> dict[str, Any]:
    """Apply one flag change as ``who`` and audit it (``flag.<action>``, the flag before and after)."""
    from rollwise.flags.controls import ControlError
    from rollwise.flags.definitions import FlagValidationError

    repo = _repository(request)
    if "\x00" in key:
        raise HTTPException(404, "no such flag")
    try:
        record = apply(repo, reason or f"{action} from the API")
    except (ControlError, FlagValidationError) as exc:
        message = str(exc)
        raise HTTPException(404 if "not defined" in message else 409, message) from None
    request.app.state.plane.audit.append(actor=who.actor, role=who.role.name, action=f"flag.{action}",
                                         target=f"flag:{key}", before=record.before, after=record.after,
                                         reason=reason)
    _log_change(request, key, action, who, reason)
    return {"key": key, "action": action, "version": record.version, "at": record.at}


def _log_change(request: Request, key: str, action: str, who: Principal, reason: str) -> None:
    """The flag change in the watch's change log, so an anomaly after it can be attributed to it."""
    import time

    from rollwise.watch.changes import ANY_SERVICE, Change

    request.app.state.watch.record_change(Change(
        service=ANY_SERVICE, at=time.time(), kind="flag", scope=f"flag:{key}",
        description=f"{action}: {reason}" if reason else action,
        actor=who.actor, source="rollwise", data={"flag": key, "action": action}))


def _writer(action: str) -> Any:
    return requires(Role.releaser, f"flag.{action}", target=lambda r: f"flag:{r.path_params.get('key', '')}")


@router.post("/flags/{key}/kill", responses={**CHANGED, 409: {"description": "Already killed"}})
def kill_flag(key: FlagKey, request: Request, payload: Annotated[CommandRequest | None, Body()] = None,
              who: Principal = Depends(_writer("kill"))) -> Any:
    """Kill switch: serve the flag's off variant to everyone, now, in every process reading the file."""
    return _change(request, key, "kill", who, (payload or CommandRequest()).reason,
                   lambda repo, why: repo.kill(key, who.actor, why))


@router.post("/flags/{key}/restore", responses={**CHANGED, 409: {"description": "Not killed"}})
def restore_flag(key: FlagKey, request: Request, payload: Annotated[CommandRequest | None, Body()] = None,
                 who: Principal = Depends(_writer("restore"))) -> Any:
    """Undo a kill: put back the definition the flag had before it."""
    return _change(request, key, "restore", who, (payload or CommandRequest()).reason,
                   lambda repo, why: repo.restore(key, who.actor, why))


@router.post("/flags/{key}/rollout", responses=CHANGED)
def set_flag_rollout(key: FlagKey, request: Request, payload: FlagRolloutRequest,
                     who: Principal = Depends(_writer("rollout"))) -> Any:
    """Set the flag's fractional rollout share now."""
    return _change(request, key, "rollout", who, payload.reason,
                   lambda repo, why: repo.set_rollout_percent(key, payload.percent, who.actor, why))


@router.post("/flags/{key}/schedule", responses={**CHANGED, 422: {"description": "Not an ISO 8601 time"}})
def schedule_flag(key: FlagKey, request: Request, payload: FlagScheduleRequest,
                  who: Principal = Depends(_writer("schedule"))) -> Any:
    """Schedule a change (set-percent, enable, disable); the server applies it when it comes due."""
    from rollwise.flags.controls import ControlError, parse_time

    try:
        when = parse_time(payload.at)
    except ControlError as exc:
        raise HTTPException(422, f"at: {exc}") from None
    return _change(request, key, "schedule", who, payload.reason,
                   lambda repo, why: repo.schedule(key, when, payload.action, who.actor, why, payload.percent))


# --------------------------------------------------------------------------- the flags' data plane


def _authorize(request: Request, scope: str) -> str | Response:
    """The flags service's ``authorize`` hook, answered by the API's tokens and roles (nothing audited:
    these are reads). ``evaluate`` (OFREP, change stream) needs viewer; anything else releaser."""
    from rollwise.flags.service import EVALUATE

    needed = Role.viewer if scope == EVALUATE else Role.releaser
    try:
        who = request.app.state.gatekeeper.authorize(request, needed, None, request.url.path)
    except HTTPException as exc:
        return JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)
    return str(who.actor)


def mount(app: FastAPI, repo: Any) -> None:
    app.include_router(router)
    if repo is None:
        return
    from rollwise.flags.service import create_flags_router

    app.include_router(create_flags_router(repo, authorize=_authorize, include_controls=False))
