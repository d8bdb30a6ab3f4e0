"""Experiments in the control plane: ``/api/v1/experiments`` (define, list, read out, stop, check guardrails)
and the batched ingestion of exposures and metric events.

A guardrail is also checked automatically after events it reads arrive (at most every
``GUARDRAIL_INTERVAL_S`` per experiment), acting as ``rollwise-guardrails``.

Roles: reads need ``viewer``; creating an experiment and pushing exposures or events ``deployer`` (like
pushing KPIs); stopping one and acting on its guardrails ``releaser`` (it may kill a flag). Every write is
audited. What arrives is untrusted: a bad item is a 422 naming it (``events[3].value: a finite number``).
"""

from __future__ import annotations

import csv
import io
import threading
import time
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Body, Depends, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from pydantic import ValidationError

from rollwise.api.auth import requires
from rollwise.api.schemas import DENIED, CommandRequest
from rollwise.control.principal import Principal, Role
from rollwise.core.clock import SystemClock
from rollwise.experiments.model import ExperimentSpec
from rollwise.experiments.readout import CSV_COLUMNS, csv_rows
from rollwise.experiments.service import BadInput, ExperimentService, parse_events, parse_exposures, view

router = APIRouter(prefix="/api/v1", tags=["experiments"])
Name = Annotated[str, Path(max_length=64, description="Experiment name")]
MISSING: dict[int | str, dict[str, Any]] = {**DENIED, 404: {"description": "No such experiment"}}


def service(request: Request) -> ExperimentService:
    from rollwise.experiments.service import ExperimentService
    from rollwise.wiring import open_experiments

    state = request.app.state
    if getattr(state, "experiments", None) is None:
        state.experiments = open_experiments(state.plane.store)
    flags = state.flags
    kill = (lambda key, actor, reason: flags.kill(key, actor, reason)) if flags is not None else None
    return ExperimentService(state.experiments, state.plane.audit, SystemClock(), kill)


def _unprocessable(message: str, loc: list[Any] | None = None, kind: str = "value_error") -> HTTPException:
    """A 422 in FastAPI's documented shape (a list of {loc, msg, type}), its message naming the field."""
    return HTTPException(422, [{"loc": ["body", *(loc or [])], "msg": message, "type": kind}])


def _get(svc: ExperimentService, name: str) -> Any:
    from rollwise.adapters.stores.sql_experiments import ExperimentNotFound

    try:
        return svc.store.get(name)
    except ExperimentNotFound as exc:
        raise HTTPException(404, str(exc)) from None


@router.get("/experiments", responses=DENIED)
def list_experiments(request: Request, _who: Principal = Depends(requires(Role.viewer))) -> list[dict[str, Any]]:
    """Every experiment, oldest first."""
    return [view(e) for e in service(request).store.list()]


@router.post("/experiments", status_code=201, responses={**DENIED, 409: {"description": "The name is taken"}})
def create_experiment(request: Request, body: Annotated[dict[str, Any], Body()],
                      who: Principal = Depends(requires(Role.deployer, "experiment.create", target="experiments"))
                      ) -> dict[str, Any]:
    """Define and start an experiment (its spec as JSON: hypothesis, owner, flag or route, variants, metrics)."""
    from rollwise.adapters.stores.sql_experiments import ExperimentExists

    try:
        spec = ExperimentSpec.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "spec"
        raise _unprocessable(f"{where}: {first['msg']}", list(first["loc"]), first["type"]) from None
    try:
        return view(service(request).create(spec, who))
    except ExperimentExists as exc:
        raise HTTPException(409, str(exc)) from None


@router.get("/experiments/{name}", responses=MISSING)
def get_experiment(name: Name, request: Request, _who: Principal = Depends(requires(Role.viewer))) -> dict[str, Any]:
    """The experiment and its readout now."""
    svc = service(request)
    experiment = _get(svc, name)
    return {**view(experiment), "readout": svc.readout(name).to_json()}


@router.get("/experiments/{name}/readout", responses=MISSING)
def get_readout(name: Name, request: Request, format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
                _who: Principal = Depends(requires(Role.viewer))) -> Any:
    """The readout as JSON, or as CSV (one row per metric and variant)."""
    svc = service(request)
    _get(svc, name)
    result = svc.readout(name)
    if format == "json":
        return result.to_json()
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    writer.writerows(csv_rows(result))
    return PlainTextResponse(out.getvalue(), media_type="text/csv")


@router.get("/experiments/{name}/history", responses=MISSING)
def get_history(name: Name, request: Request, points: Annotated[int, Query(ge=2, le=100)] = 20,
                _who: Principal = Depends(requires(Role.viewer))) -> list[dict[str, Any]]:
    """The primary metric's lift and confidence sequence over time (what the chart draws)."""
    svc = service(request)
    _get(svc, name)
    return svc.history(name, points)


@router.get("/experiments/{name}/report", responses=MISSING, response_class=HTMLResponse)
def get_report(name: Name, request: Request, _who: Principal = Depends(requires(Role.viewer))) -> HTMLResponse:
    """A self-contained HTML report: hypothesis, decision and rule, lift over time, every metric, SRM."""
    from rollwise.report.experiment import render_experiment

    svc = service(request)
    experiment = _get(svc, name)
    return HTMLResponse(render_experiment(experiment, svc.readout(name), svc.history(name)))


def _writer(role: Role, action: str) -> Any:
    return requires(role, f"experiment.{action}", target=lambda r: f"experiment:{r.path_params.get('name', '')}")


@router.post("/experiments/{name}/stop", responses={**MISSING, 409: {"description": "Already stopped"}})
def stop_experiment(name: Name, request: Request, payload: Annotated[CommandRequest | None, Body()] = None,
                    who: Principal = Depends(_writer(Role.releaser, "stop"))) -> dict[str, Any]:
    """Stop the experiment (its readout stays)."""
    from rollwise.adapters.stores.sql_experiments import ExperimentExists

    svc = service(request)
    _get(svc, name)
    try:
        return view(svc.stop(name, who, (payload or CommandRequest()).reason or "stopped from the API"))
    except ExperimentExists as exc:
        raise HTTPException(409, str(exc)) from None


@router.post("/experiments/{name}/check", responses=MISSING)
def check_experiment(name: Name, request: Request,
                     who: Principal = Depends(_writer(Role.releaser, "check"))) -> dict[str, Any]:
    """Read out and act: a guardrail breach stops the experiment and kills its flag (audited with evidence)."""
    svc = service(request)
    _get(svc, name)
    return svc.check(name, who).to_json()


@router.post("/experiments/{name}/exposures", responses={**MISSING, 422: {"description": "A bad item"}})
def push_exposures(name: Name, request: Request, body: Annotated[list[Any], Body(max_length=100_000)],
                   _who: Principal = Depends(_writer(Role.deployer, "exposures"))) -> dict[str, int]:
    """A batch of exposures ``[{subject, variant, at?}]``; a subject's first exposure wins."""
    svc = service(request)
    experiment = _get(svc, name)
    try:
        rows = parse_exposures(experiment, body, svc.clock.now())
    except BadInput as exc:
        raise _unprocessable(str(exc)) from None
    return {"received": len(rows), "new": svc.store.record_exposures(name, rows)}


#: Seconds between automatic guardrail checks of one experiment (each is a readout).
GUARDRAIL_INTERVAL_S = 10.0
#: Who the automatic checks act as in the audit log.
GUARDRAILS = Principal(name="rollwise-guardrails", role=Role.releaser, token_id=None)
_checked: dict[str, float] = {}
_checking = threading.Lock()


def _watch_guardrails(svc: ExperimentService, names: set[str]) -> None:
    """After events arrive: check the running experiments whose guardrails read them (at most one check
    per experiment every ``GUARDRAIL_INTERVAL_S``), so a breach stops the experiment and kills its flag
    without anyone asking. Runs after the response is sent."""
    for experiment in svc.store.list():
        guardrails = experiment.spec.guardrails
        watched = {g.event_name for g in guardrails} | {g.denominator for g in guardrails if g.denominator}
        if experiment.status != "running" or not watched & names:
            continue
        with _checking:
            if time.monotonic() - _checked.get(experiment.name, -1e9) < GUARDRAIL_INTERVAL_S:
                continue
            _checked[experiment.name] = time.monotonic()
        svc.check(experiment.name, GUARDRAILS)


@router.post("/metric-events", responses={**DENIED, 422: {"description": "A bad item"}})
def push_events(request: Request, body: Annotated[list[Any], Body(max_length=100_000)], background: BackgroundTasks,
                _who: Principal = Depends(requires(Role.deployer, "experiment.events", target="metric-events"))
                ) -> dict[str, int]:
    """A batch of metric events ``[{subject, event, value?, at?}]`` (value defaults to 1, at to now).
    Running experiments whose guardrails read these events are then checked (see ``_watch_guardrails``)."""
    svc = service(request)
    try:
        rows = parse_events(body, svc.clock.now())
    except BadInput as exc:
        raise _unprocessable(str(exc)) from None
    received = svc.store.record_events(rows)
    background.add_task(_watch_guardrails, svc, {row[1] for row in rows})
    return {"received": received}
