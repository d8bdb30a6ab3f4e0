"""The watch over HTTP: ``/api/v1/changes`` (the change log; recording needs ``deployer`` and is audited)
and ``/api/v1/incidents`` (what the watch opened, with evidence and actions; ``viewer``)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request
from pydantic import Field

from rollwise.api.auth import requires
from rollwise.api.schemas import DENIED, StrictBody
from rollwise.control.principal import Principal, Role

router = APIRouter(prefix="/api/v1", tags=["watch"])


class ChangeRequest(StrictBody):
    """A change made outside rollwise."""

    service: str = Field(min_length=1, max_length=255)
    kind: str = Field(description="deploy, config, flag or infra", max_length=32)
    version: str | None = Field(default=None, max_length=255)
    region: str | None = Field(default=None, max_length=255)
    scope: str | None = Field(default=None, max_length=255, description="e.g. flag:checkout")
    description: str = Field(default="", max_length=2000)
    at: float | None = Field(default=None, gt=0, description="When it happened (epoch seconds); default now.")


def _watch(request: Request) -> Any:
    return request.app.state.watch


@router.post("/changes", status_code=201, responses={**DENIED, 422: {"description": "A field is invalid"}})
def record_change(payload: ChangeRequest, request: Request,
                  who: Principal = Depends(requires(Role.deployer, "change.record",
                                                    target=lambda r: "changes"))) -> dict[str, Any]:
    """Record a change made outside rollwise (deploy, config, flag, infra) in the change log."""
    from rollwise.watch.changes import ChangeError, outside_change
    from rollwise.watch.operations import record_change as record

    now = time.time()
    at = payload.at if payload.at is not None else now
    if at > now + 300:
        raise HTTPException(422, "at: in the future")
    try:
        change = outside_change(service=payload.service, kind=payload.kind, at=at, version=payload.version,
                                region=payload.region, description=payload.description, actor=who.actor,
                                source="api", scope=payload.scope)
    except ChangeError as exc:
        raise HTTPException(422, str(exc)) from None
    return record(_watch(request), request.app.state.plane.audit, change, role=who.audit_role).to_json()


@router.get("/changes", responses=DENIED)
def list_changes(request: Request,
                 service: Annotated[str | None, Query(max_length=255)] = None,
                 since_s: Annotated[float, Query(gt=0, le=365 * 86400)] = 86400.0,
                 _who: Principal = Depends(requires(Role.viewer))) -> list[dict[str, Any]]:
    """The change log of the last ``since_s`` seconds, oldest first (rollouts' own changes included)."""
    if service is not None and "\x00" in service:
        raise HTTPException(422, "service: must not contain NUL characters")
    return [c.to_json() for c in _watch(request).changes(service=service, since=time.time() - since_s)]


@router.get("/incidents", responses=DENIED)
def list_incidents(request: Request,
                   service: Annotated[str | None, Query(max_length=255)] = None,
                   open_only: Annotated[bool, Query(alias="open")] = False,
                   _who: Principal = Depends(requires(Role.viewer))) -> list[dict[str, Any]]:
    """Incidents, oldest first: onset, metric, culprit with confidence, actions, recovery time."""
    if service is not None and "\x00" in service:
        raise HTTPException(422, "service: must not contain NUL characters")
    return [i.to_json() for i in _watch(request).incidents(service=service, open_only=open_only)]


@router.get("/incidents/{incident_id}", responses={**DENIED, 404: {"description": "No such incident"}})
def show_incident(request: Request, incident_id: Annotated[int, Path(ge=1, le=2**62)],
                  _who: Principal = Depends(requires(Role.viewer))) -> dict[str, Any]:
    """One incident with its evidence (onset, effect size, per-version split) and actions."""
    incident = _watch(request).incident(incident_id)
    if incident is None:
        raise HTTPException(404, f"no incident #{incident_id}")
    data: dict[str, Any] = incident.to_json()
    return data


def mount(app: FastAPI) -> None:
    from rollwise.wiring import open_watch

    app.state.watch = open_watch(app.state.plane.store)
    app.include_router(router)
