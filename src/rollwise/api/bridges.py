"""Routes for controllers teams already run: Argo Rollouts' ``web`` metric provider and Flagger's webhooks.

``GET|POST|PUT /api/v1/bridges/argo`` answers 200 with the verdict as JSON for an AnalysisTemplate's
``successCondition`` (``result.verdict != "rollback"``, or ``== "promote"`` to gate on enough evidence);
``POST /api/v1/bridges/flagger/{hook}`` answers Flagger, which reads only the status: 2xx passes, 409
fails the check (a rollback verdict; or, for ``confirm-promotion``, not yet ``promote``). Both read
Prometheus for the two versions named in the call through the Prometheus metric source and keep each
analysis's windows in the store (``rollwise.bridges``, ``adapters/stores/sql_bridges.py``).

Other answers: 400 a bad parameter (one line naming it), 401/403 no or too weak a token (deployer or
above; Flagger, which cannot send headers, may put it in ``metadata.token``), 422 a Prometheus URL
outside ``serve --allow-url``, 503 Prometheus could not be read (unknown, not bad: Argo counts it as an
error measurement, Flagger as a failed check), 409 a concurrent call for the same session won.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from rollwise.api.auth import requires
from rollwise.api.schemas import DENIED
from rollwise.bridges.contract import BridgeError, BridgeRequest, FlaggerCall, bridge_request, flagger_call
from rollwise.bridges.judging import MIN_WINDOW_S, SESSION_TTL_S, Session, judge_call
from rollwise.control.principal import Principal, Role
from rollwise.core.model import Window
from rollwise.core.protocols import BridgeSessions, MetricsError

router = APIRouter(prefix="/api/v1/bridges", tags=["bridges"])
MAX_PARAMS = 64
_REFUSALS = {
    400: "A parameter rollwise cannot use (one line naming it)",
    409: "Flagger: a rollback verdict (or, for confirm-promotion, not yet promote); or a concurrent call won",
    422: "The Prometheus URL is outside `rollwise serve --allow-url`",
    503: "Prometheus could not be read: unknown, not bad",
}
ANSWERS: dict[int | str, dict[str, Any]] = {
    **DENIED,
    200: {"description": "The verdict so far: verdict, reason, rule, culprit, windows, baseline, canary, evidence",
          "content": {"application/json": {"schema": {"type": "object"}}}},
    **{status: {"description": why, "content": {"application/json": {"schema": {"type": "object"}}}}
       for status, why in _REFUSALS.items()},
}


class _Refused(Exception):
    def __init__(self, status: int, detail: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.body = status, detail, body

    def response(self) -> JSONResponse:
        return JSONResponse(status_code=self.status, content={"detail": self.detail, **(self.body or {})})


async def _json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise _Refused(400, "body: not JSON") from None
    if not isinstance(body, dict):
        raise _Refused(400, "body: must be a JSON object")
    return body


async def argo_measurement(request: Request) -> JSONResponse:
    """One measurement of Argo Rollouts' ``web`` provider: the verdict so far for the run named in the call."""
    requires(Role.deployer, "bridge.argo", "argo")(request)
    try:
        params: dict[str, Any] = dict(request.query_params)
        if request.method != "GET":
            params.update(await _json_object(request))
        if len(params) > MAX_PARAMS:
            raise _Refused(400, f"too many parameters (at most {MAX_PARAMS})")
        call = _parsed(lambda: bridge_request(params))
        _check_url(request, call)
        session = await run_in_threadpool(_judge, request, call, time.time())
    except _Refused as refused:
        return refused.response()
    return JSONResponse(session.answer)


for _method in ("GET", "POST", "PUT"):  # the web provider's methods; one operation each in the OpenAPI
    router.add_api_route("/argo", argo_measurement, methods=[_method], responses=ANSWERS,
                         operation_id=f"argo_measurement_{_method.lower()}", summary="Argo Rollouts web provider")


@router.post("/flagger/{hook}", responses=ANSWERS)
async def flagger_webhook(hook: str, request: Request) -> JSONResponse:
    """One Flagger webhook (``confirm-rollout``, ``pre-rollout``, ``rollout``, ``confirm-promotion``)."""
    try:
        body = await _json_object(request)
        metadata = body.get("metadata")
        _authorize_flagger(request, metadata.get("token") if isinstance(metadata, dict) else None, hook)
        call = _parsed(lambda: flagger_call(hook, body))
        _check_url(request, call.request)
        return await run_in_threadpool(_flagger_answer, request, call, time.time())
    except _Refused as refused:
        return refused.response()


def _flagger_answer(request: Request, call: FlaggerCall, now: float) -> JSONResponse:
    sessions = _sessions(request)
    state, revision = sessions.load(call.request.session)
    if state is not None and state.get("verdict") == "rollback":
        raise _Refused(409, f"{call.namespace}/{call.name} checksum {call.checksum!r} was rolled back by "
                       "rollwise; a new revision starts a new analysis", state.get("answer"))
    if call.hook in ("confirm-rollout", "pre-rollout"):
        _read(call.request, now - call.request.lookback_s, now)  # can rollwise judge this at all?
        if call.hook == "pre-rollout":  # traffic starts now: the first window starts here
            session = Session(call.request.session, started_at=now, last_end=now)
            sessions.save(session.key, session.to_json(), now, revision)
        return JSONResponse({"ok": True, "hook": call.hook, "session": call.request.session})
    session = _judge(request, call.request, now)
    if session.verdict == "rollback":
        raise _Refused(409, f"rollback: {session.answer.get('reason')}", session.answer)
    if call.hook == "confirm-promotion" and session.verdict != "promote":
        raise _Refused(409, f"not yet: {session.answer.get('reason')}", session.answer)
    return JSONResponse(session.answer)


def _judge(request: Request, call: BridgeRequest, now: float) -> Session:
    """Read the window since the session's last call, judge the whole session, keep it (optimistically)."""
    from rollwise.analysis import judge_for

    sessions = _sessions(request)
    state, revision = sessions.load(call.session)
    session = Session.from_json(state) if state else Session(call.session, started_at=now)
    start = session.window_start(call, now)
    window = None
    if session.verdict != "rollback" and now - start >= MIN_WINDOW_S:
        window = _read(call, start, now)
    session = judge_call(session, call, judge_for(call.analysis), window, now)
    if not sessions.save(session.key, session.to_json(), now, revision):
        raise _Refused(409, f"another call for session {call.session!r} was judged at the same time; ask again")
    if revision == 0:  # a new session: a good moment to forget the ones long idle
        sessions.prune(now - SESSION_TTL_S)
    return session


def _read(call: BridgeRequest, start: float, end: float) -> Window:
    from rollwise.wiring import bridge_metrics

    source = bridge_metrics(call.prometheus, call.queries)
    try:
        baseline = source.version_stats(call.session, call.baseline, start, end)
        canary = source.version_stats(call.session, call.canary, start, end)
    except MetricsError as exc:
        raise _Refused(503, str(exc)) from None
    finally:
        source.close()
    return Window(start, end, baseline, canary)


def _sessions(request: Request) -> BridgeSessions:
    sessions: BridgeSessions | None = getattr(request.app.state, "bridge_sessions", None)
    if sessions is None:
        from rollwise.wiring import open_bridge_sessions

        sessions = request.app.state.bridge_sessions = open_bridge_sessions(request.app.state.plane.store)
    return sessions


def _parsed(make: Any) -> Any:
    try:
        return make()
    except BridgeError as exc:
        raise _Refused(400, str(exc)) from None


def _check_url(request: Request, call: BridgeRequest) -> None:
    policy = request.app.state.plane.policy
    refusal = policy.url_refusal("prometheus", call.prometheus) if hasattr(policy, "url_refusal") else None
    if refusal is not None:
        raise _Refused(422, refusal)


def _authorize_flagger(request: Request, token: Any, hook: str) -> Principal:
    """Flagger's webhooks send no headers: a token may come in ``metadata.token`` instead."""
    gatekeeper = request.app.state.gatekeeper
    if request.headers.get("authorization") or not isinstance(token, str) or not token:
        try:
            return gatekeeper.authorize(request, Role.deployer, "bridge.flagger", hook)  # type: ignore[no-any-return]
        except HTTPException as exc:
            raise _Refused(exc.status_code, str(exc.detail)) from None
    resolved = gatekeeper.tokens.resolve(token)
    if resolved is None or Role[resolved.role] < Role.deployer:
        status, why = (401, "unknown or revoked token") if resolved is None else (
            403, f"role {resolved.role!r} may not do this: it needs 'deployer' or above")
        gatekeeper.audit.append(actor=resolved.name if resolved else "unknown", role=resolved.role if resolved
                                else "none", action="bridge.flagger", target=hook,
                                after={"outcome": "denied", "status": status, "error": why})
        raise _Refused(status, why)
    return Principal(name=resolved.name, role=Role[resolved.role], token_id=resolved.id)
