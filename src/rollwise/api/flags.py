"""Flags in the control plane: the dashboard's flag list and kill switch, plus the flags service's
OFREP routes when ``rollwise.flags.service`` is installed.

The kill switch lives here (not only in the flags service) because it is a control-plane write:
it needs the ``releaser`` role and an audit row like every other write. The flags service's own
routes (``create_flags_router``: OFREP under ``/ofrep/v1``, ``/flags…`` controls) are mounted behind
the same roles: OFREP evaluation is the flags' data plane and needs any token (none while no token
exists, on loopback); the service's other writes need ``releaser`` and are audited here too.
"""

from __future__ import annotations

import copy
import importlib
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Path, Request
from starlette.concurrency import run_in_threadpool

from rollwise.api.auth import requires
from rollwise.api.schemas import DENIED, CommandRequest
from rollwise.control.principal import Principal, Role

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
    """OFREP evaluation is left to the service; its other routes need viewer (reads) or releaser (writes)."""
    path = request.url.path
    if path.startswith("/ofrep/"):
        return
    gatekeeper = request.app.state.gatekeeper
    if request.method in ("GET", "HEAD", "OPTIONS"):
        gatekeeper.authorize(request, Role.viewer, None, path)
        return
    key = request.path_params.get("key", "")
    gatekeeper.authorize(request, Role.releaser, f"flag.{path.rstrip('/').rsplit('/', 1)[-1]}", f"flag:{key}")


def _token_check(tokens: Any) -> Any:
    """The flags service's ``(token, scope) -> actor`` hook, answered by rollwise's API tokens and roles."""
    needed = {"evaluate": Role.viewer, "admin": Role.releaser}

    def check(token: str, scope: str) -> str | None:
        found = tokens.resolve(token)
        if found is None or Role[found.role] < needed.get(scope, Role.admin):
            return None
        return str(found.name)

    return check


def _service_router(repo: Any, tokens: Any) -> APIRouter | None:
    """The flags service's router for ``repo``, if that module is installed.

    While no token exists the service runs its own loopback-only rule; once tokens exist (at start)
    it asks rollwise's tokens. Either way its writes also pass ``_service_guard`` (releaser).
    """
    try:
        service = importlib.import_module("rollwise.flags.service")
        factory = service.create_flags_router
    except (ImportError, AttributeError):
        return None
    check = _token_check(tokens) if tokens.any_exist() else None
    built = factory(repo, token_check=check)
    return built if isinstance(built, APIRouter) else None


def mount(app: FastAPI, repo: Any) -> None:
    app.include_router(router)
    if repo is None:
        return
    service = _service_router(repo, app.state.tokens)
    if service is None:
        log.warning("rollwise.flags.service not found: serving the kill switch only, no OFREP routes")
        return
    app.include_router(service, dependencies=[Depends(_service_guard)])

    @app.middleware("http")
    async def audit_flag_writes(request: Request, call_next: Any) -> Any:
        """Successful writes through the flags service's own routes get an audit row like ours do."""
        path = request.url.path
        parts = path.strip("/").split("/")
        if request.method != "POST" or len(parts) != 3 or parts[0] != "flags":
            return await call_next(request)
        key, action = parts[1], parts[2]
        before = copy.deepcopy(repo.document.get("flags", {}).get(key))
        response = await call_next(request)
        if response.status_code < 300:
            gatekeeper = request.app.state.gatekeeper
            try:
                who = await run_in_threadpool(gatekeeper.identify, request)
            except Exception:
                who = None
            after = repo.document.get("flags", {}).get(key)
            await run_in_threadpool(
                request.app.state.plane.audit.append, actor=who.name if who else "unknown",
                role=who.role.name if who else "none", action=f"flag.{action}", target=f"flag:{key}",
                before=before, after=after)
        return response
