"""Flags in the control plane: the dashboard's flag list and kill switch, plus the flags service's
OFREP routes when ``rollwise.flags.service`` is installed.

The kill switch lives here (not only in the flags service) because it is a control-plane write:
it needs the ``releaser`` role and an audit row like every other write. The flags service's own
routes are mounted behind the same gate: OFREP evaluation (``/ofrep/...``) is the flags' data plane
and stays open to applications; any other non-GET route of that service needs ``releaser``.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Path, Request

from rollwise.api.auth import Principal, Role, requires
from rollwise.api.schemas import DENIED, CommandRequest

log = logging.getLogger("rollwise.api")
router = APIRouter(prefix="/api/v1", tags=["flags"])
FlagKey = Annotated[str, Path(max_length=255, description="Flag key")]


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
    """Every flag as served now, with its kill-switch state."""
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
    }


def _change(request: Request, key: str, action: str, who: Principal, reason: str) -> dict[str, Any]:
    from rollwise.flags.controls import ControlError

    repo = _repository(request)
    if "\x00" in key:
        raise HTTPException(404, "no such flag")
    try:
        record = getattr(repo, action)(key, who.actor, reason or f"{action} from the API")
    except ControlError as exc:
        message = str(exc)
        raise HTTPException(404 if "not defined" in message else 409, message) from None
    request.app.state.plane.audit.append(actor=who.actor, role=who.role.name, action=f"flag.{action}",
                                         target=f"flag:{key}", before=record.before, after=record.after,
                                         reason=reason)
    return {"key": key, "action": action, "version": record.version, "at": record.at}


@router.post("/flags/{key}/kill", responses={**DENIED, 404: {"description": "No such flag"},
                                             409: {"description": "Already killed"}})
def kill_flag(key: FlagKey, request: Request,
              payload: Annotated[CommandRequest | None, Body()] = None,
              who: Principal = Depends(requires(Role.releaser, "flag.kill", target=lambda r: _flag_target(r)))) -> Any:
    """Kill switch: serve the flag's off variant to everyone, now, in every process reading the file."""
    return _change(request, key, "kill", who, (payload or CommandRequest()).reason)


@router.post("/flags/{key}/restore", responses={**DENIED, 404: {"description": "No such flag"},
                                                409: {"description": "Not killed"}})
def restore_flag(key: FlagKey, request: Request,
                 payload: Annotated[CommandRequest | None, Body()] = None,
                 who: Principal = Depends(requires(Role.releaser, "flag.restore",
                                                   target=lambda r: _flag_target(r)))) -> Any:
    """Undo a kill: put back the definition the flag had before it."""
    return _change(request, key, "restore", who, (payload or CommandRequest()).reason)


def _flag_target(request: Request) -> str:
    return f"flag:{request.path_params.get('key', '')}"


# --------------------------------------------------------------------------- the flags service


def _service_guard(request: Request) -> None:
    """OFREP evaluation is open; the service's other writes need releaser and are audited on refusal."""
    path = request.url.path
    if path.startswith("/ofrep/"):
        return
    gatekeeper = request.app.state.gatekeeper
    if request.method in ("GET", "HEAD", "OPTIONS"):
        gatekeeper.authorize(request, Role.viewer, None, path)
        return
    gatekeeper.authorize(request, Role.releaser, f"flags.{request.method.lower()}", path)


def _service_router(repo: Any) -> APIRouter | None:
    """The flags service's router for ``repo``, if that module is installed."""
    try:
        service = importlib.import_module("rollwise.flags.service")
    except ImportError:
        return None
    for name in ("create_router", "ofrep_router", "make_router", "router_for", "build_router"):
        factory = getattr(service, name, None)
        if factory is None:
            continue
        params = inspect.signature(factory).parameters
        try:
            built = factory(repo) if params else factory()
        except TypeError:
            continue
        if isinstance(built, APIRouter):
            return built
    found = getattr(service, "router", None)
    return found if isinstance(found, APIRouter) else None


def mount(app: FastAPI, repo: Any) -> None:
    app.include_router(router)
    if repo is None:
        return
    service = _service_router(repo)
    if service is None:
        log.warning("rollwise.flags.service not found: serving the kill switch only, no OFREP routes")
        return
    taken = {(getattr(r, "path", None), m) for r in app.routes for m in (getattr(r, "methods", None) or ())}
    clash = [r for r in service.routes
             if any((getattr(r, "path", None), m) in taken for m in (getattr(r, "methods", None) or ()))]
    for route in clash:  # our audited kill switch wins over a same-path route of the service
        service.routes.remove(route)
    app.include_router(service, dependencies=[Depends(_service_guard)])
