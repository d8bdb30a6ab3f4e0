"""``/api/v1/rollouts``: start, inspect and steer rollouts; decisions, history, windows, KPIs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse

from rollwise.analysis.explain import explain_decision
from rollwise.api.auth import requires
from rollwise.api.schemas import (
    CONFLICT,
    DENIED,
    NOT_FOUND,
    SPEC_PROBLEMS,
    CommandRequest,
    DecisionOut,
    EventOut,
    KpiAccepted,
    KpiPush,
    PromoteRequest,
    RolloutDetail,
    RolloutSummary,
    WindowOut,
)
from rollwise.control.plane import ControlPlane, parse_spec_body
from rollwise.control.principal import Principal, Role
from rollwise.core.engine import COMMANDS
from rollwise.core.evidence import decision_of, evidence_schema
from rollwise.core.model import Event, RolloutRecord
from rollwise.spec import SpecError

router = APIRouter(prefix="/api/v1", tags=["rollouts"])

SPEC_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A rollout spec as YAML or JSON (the same document `rollwise validate` checks).",
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "object"}},
        },
    }
}

SpecSource = Annotated[str, Header(alias="X-Rollwise-Spec-File", max_length=255,
                                   description="File name to show in problems (default: request)")]


def plane(request: Request) -> ControlPlane:
    return request.app.state.plane  # type: ignore[no-any-return]


async def _body(request: Request) -> bytes:
    return await request.body()


def _problems(exc: SpecError) -> JSONResponse:
    lines = [str(p) for p in exc.problems]
    return JSONResponse(status_code=422, content={"detail": f"invalid spec: {len(lines)} problem(s)",
                                                  "problems": lines})


def _spec_source(source: str) -> str:
    return source.replace("\x00", "") or "request"


# --------------------------------------------------------------------------- reads


@router.get("/rollouts", response_model=list[RolloutSummary], responses=DENIED)
def list_rollouts(
    request: Request,
    active: Annotated[bool, Query(description="Only rollouts that have not ended.")] = False,
    _who: Principal = Depends(requires(Role.viewer)),
) -> list[RolloutSummary]:
    return [RolloutSummary.of(r) for r in plane(request).store.list(active_only=active)]


@router.get("/rollouts/{name}", response_model=RolloutDetail, responses={**NOT_FOUND, **DENIED})
def get_rollout(name: str, request: Request, _who: Principal = Depends(requires(Role.viewer))) -> RolloutDetail:
    record = plane(request).get(name)
    applied = plane(request).store.applied_route(name)
    return RolloutDetail(**RolloutSummary.of(record).model_dump(), route=record.route.model_dump(mode="json"),
                         spec=_spec_dump(record), route_revision=record.route.revision,
                         route_applied_revision=applied.revision if applied else None,
                         route_applied_at=applied.at if applied else None)


def _spec_dump(record: RolloutRecord) -> dict[str, Any]:
    from rollwise.control.plane import spec_json

    return spec_json(record.spec)


@router.get("/rollouts/{name}/events", response_model=list[EventOut], responses={**NOT_FOUND, **DENIED})
def rollout_events(
    name: str, request: Request,
    since_seq: Annotated[int, Query(ge=0, le=2**31, description="Only events after this seq.")] = 0,
    _who: Principal = Depends(requires(Role.viewer)),
) -> list[EventOut]:
    p = plane(request)
    p.get(name)
    return [EventOut.of(e) for e in p.store.events(name, since_seq)]


@router.get("/events", response_model=list[EventOut], responses=DENIED)
def all_events(
    request: Request,
    limit: Annotated[int | None, Query(ge=1, le=100_000, description="Only the newest N events.")] = None,
    _who: Principal = Depends(requires(Role.viewer)),
) -> list[EventOut]:
    events = plane(request).store.events(None)
    if limit is not None:
        events = events[-limit:]
    return [EventOut.of(e) for e in events]


def _explain(event: Event) -> str:
    try:
        return str(explain_decision(event))
    except Exception as exc:  # an explainer bug must not hide the evidence itself
        return f"(could not explain: {exc})"


@router.get("/rollouts/{name}/decisions", response_model=list[DecisionOut], responses={**NOT_FOUND, **DENIED})
def rollout_decisions(name: str, request: Request,
                      _who: Principal = Depends(requires(Role.viewer))) -> list[DecisionOut]:
    """Every judge decision with its evidence (test, numbers, rule) and, if available, plain words."""
    p = plane(request)
    p.get(name)
    out = []
    for event in p.store.events(name):
        if event.type != "decision":
            continue
        decision = decision_of(event.data)
        out.append(DecisionOut(
            index=decision.index, seq=event.seq, at=event.at, action=decision.action, rule=decision.rule,
            culprit=decision.culprit, stage=decision.stage, weight=decision.weight,
            metrics_error=decision.metrics_error, message=event.message, evidence=decision.evidence,
            explanation=_explain(event),
        ))
    return out


@router.get("/schema/evidence", tags=["meta"])
def evidence_json_schema() -> dict[str, Any]:
    """The JSON Schema of a decision's evidence (``DecisionOut.evidence``; version in ``$id``). Public, like
    ``/openapi.json``: it describes the format, no rollout's data."""
    return evidence_schema()


@router.get("/rollouts/{name}/windows", response_model=list[WindowOut], responses={**NOT_FOUND, **DENIED})
def rollout_windows(name: str, request: Request,
                    _who: Principal = Depends(requires(Role.viewer))) -> list[WindowOut]:
    """The current run's observation windows: error rates, p99 and KPIs per side, for charts."""
    p = plane(request)
    p.get(name)
    return [WindowOut.of(stage, window) for stage, window in p.store.windows(name)]


# --------------------------------------------------------------------------- writes


@router.post("/rollouts", status_code=201, response_model=RolloutSummary, openapi_extra=SPEC_BODY,
             responses={**SPEC_PROBLEMS, **DENIED, 409: {"description": "A rollout of that name is running"}})
def start_rollout(
    request: Request,
    body: bytes = Depends(_body),
    reason: Annotated[str, Query(max_length=2000)] = "",
    commit_time: Annotated[str | None, Query(max_length=64, description="ISO time of the change")] = None,
    source: SpecSource = "request",
    force: Annotated[bool, Query(description="Start even while the service has an open incident (audited).")] = False,
    who: Principal = Depends(requires(Role.deployer, "rollout.start", target="rollouts")),
) -> Any:
    """Start a rollout from a spec. An invalid spec is rejected whole (422) and nothing changes."""
    p = plane(request)
    try:
        spec = parse_spec_body(body, _spec_source(source))
        p.admit(spec, body, _spec_source(source), who, "rollout.start", reason.replace("\x00", ""))
    except SpecError as exc:
        return _problems(exc)
    commit_ts = None
    if commit_time:
        try:
            commit_ts = datetime.fromisoformat(commit_time).timestamp()
        except ValueError:
            raise HTTPException(422, f"commit_time: {commit_time!r} is not an ISO time") from None
    return RolloutSummary.of(p.start(spec, who, reason.replace("\x00", ""), commit_ts, force=force))


@router.put("/rollouts/{name}/spec", response_model=RolloutSummary, openapi_extra=SPEC_BODY,
            responses={**SPEC_PROBLEMS, **NOT_FOUND, **CONFLICT, **DENIED})
def update_rollout_spec(
    name: str,
    request: Request,
    body: bytes = Depends(_body),
    reason: Annotated[str, Query(max_length=2000)] = "",
    source: SpecSource = "request",
    who: Principal = Depends(requires(Role.releaser, "rollout.update")),
) -> Any:
    """Replace a running rollout's spec (analysis, steps). Invalid specs change nothing."""
    p = plane(request)
    p.get(name)
    try:
        spec = parse_spec_body(body, _spec_source(source))
    except SpecError as exc:
        return _problems(exc)
    if spec.name != name:
        return JSONResponse(status_code=422, content={
            "detail": "invalid spec: 1 problem(s)",
            "problems": [f"{_spec_source(source)}:1: name: is {spec.name!r}, but this is rollout {name!r}"]})
    spec = p.keep_secrets(name, spec)
    try:
        p.admit(spec, body, _spec_source(source), who, "rollout.update", reason.replace("\x00", ""))
    except SpecError as exc:
        return _problems(exc)
    return RolloutSummary.of(p.update_spec(name, spec, who, reason.replace("\x00", "")))


COMMAND_DOCS = {
    "promote": "Advance one step (or everything with full=true).",
    "pause": "Hold the rollout where it is.",
    "resume": "Continue a paused rollout.",
    "abort": "Send all traffic back to stable and end the rollout.",
    "approve": "Answer an approval gate (untilApproved step, stage cap or shadow on hold, blue/green cutover).",
    "undo": "Go back to the previous stable within the rollback window.",
}


def _command_route(command: str) -> None:
    """One POST route per command, so each shows in OpenAPI with its own role and body."""
    gate = requires(Role.releaser, f"rollout.{command}")

    def run(name: str, request: Request, given: CommandRequest, who: Principal) -> RolloutSummary:
        full = isinstance(given, PromoteRequest) and given.full
        return RolloutSummary.of(plane(request).command(name, command, who, given.reason, full=full))

    if command == "promote":
        def endpoint(name: str, request: Request,
                     payload: Annotated[PromoteRequest | None, Body()] = None,
                     who: Principal = Depends(gate)) -> RolloutSummary:
            return run(name, request, payload or PromoteRequest(), who)
    else:
        def endpoint(name: str, request: Request,  # type: ignore[misc]
                     payload: Annotated[CommandRequest | None, Body()] = None,
                     who: Principal = Depends(gate)) -> RolloutSummary:
            return run(name, request, payload or CommandRequest(), who)

    endpoint.__name__ = f"{command}_rollout"
    endpoint.__doc__ = COMMAND_DOCS[command]
    router.post(f"/rollouts/{{name}}/{command}", response_model=RolloutSummary,
                responses={**NOT_FOUND, **CONFLICT, **DENIED})(endpoint)


for _command in COMMANDS:
    _command_route(_command)


@router.post("/rollouts/{name}/kpis", status_code=201, response_model=KpiAccepted,
             responses={**NOT_FOUND, **DENIED, 422: {"description": "Unknown version or bad value"}})
def push_kpi(name: str, payload: KpiPush, request: Request,
             who: Principal = Depends(requires(Role.deployer, "rollout.kpi"))) -> KpiAccepted:
    """Record a business KPI event (visits, checkouts) for one version; the judge compares them."""
    try:
        at = plane(request).push_kpi(name, payload.version, payload.metric, payload.value, payload.at, who)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return KpiAccepted(rollout=name, version=payload.version, metric=payload.metric, value=payload.value, at=at)
