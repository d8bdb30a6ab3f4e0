"""OTLP/HTTP in: ``POST /v1/traces``, ``/v1/logs``, ``/v1/metrics`` as the OTLP specification defines them
(https://opentelemetry.io/docs/specs/otlp/#otlphttp), so any OpenTelemetry SDK or Collector exports
straight to ``rollwise serve`` (``OTEL_EXPORTER_OTLP_ENDPOINT=http://rollwise:8080``).

Bodies are ``application/x-protobuf`` or ``application/json`` (optionally gzip); the answer is the empty
``Export*ServiceResponse`` in the same encoding. 415 another media type, 400 a body that does not
decode (one line). Exporting needs a deployer token (``OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer
rw_…``), like pushing KPIs; loopback callers need none while no token exists. Spans are aggregated
(``rollwise.telemetry``) for rollouts whose ``metrics.source`` is ``otlp``.

``GET /api/v1/traces/<trace id>`` (viewer) answers one kept exemplar trace (``telemetry/exemplars.py``)
as JSON: its spans and the span where its error or its time originated; the RCA links to it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from rollwise.api.auth import requires
from rollwise.api.schemas import DENIED
from rollwise.control.principal import Principal, Role
from rollwise.telemetry.decode import (
    DecodeError,
    Signal,
    decode,
    encode_response,
    inflate,
    media_type,
    protos_problem,
)

router = APIRouter(prefix="/v1", tags=["otlp"])
traces_router = APIRouter(prefix="/api/v1", tags=["otlp"])
ANSWERS: dict[int | str, dict[str, Any]] = {
    **DENIED,
    200: {"description": "Accepted: an empty Export*ServiceResponse",
          "content": {"application/x-protobuf": {}, "application/json": {"schema": {"type": "object"}}}},
    400: {"description": "The body does not decode as OTLP"},
    415: {"description": "Not application/x-protobuf or application/json"},
}


async def _export(signal: Signal, request: Request) -> Response:
    broken = protos_problem()
    if broken is not None:
        return JSONResponse(status_code=503, content={"detail": broken})
    kind = media_type(request.headers.get("content-type"))
    if kind is None:
        return JSONResponse(status_code=415, content={
            "detail": "Content-Type: OTLP/HTTP is application/x-protobuf or application/json"})
    body = await request.body()
    try:
        message = await run_in_threadpool(decode, signal, inflate(body, request.headers.get("content-encoding")),
                                          kind)
    except DecodeError as exc:
        return JSONResponse(status_code=400, content={"detail": str(exc)})
    spans = request.app.state.telemetry
    add = {"traces": spans.add_traces, "logs": spans.add_logs, "metrics": spans.add_metrics}[signal]
    await run_in_threadpool(add, message)
    return Response(content=encode_response(signal, kind), media_type=kind)


@router.post("/traces", responses=ANSWERS)
async def export_traces(request: Request, _who: Principal = Depends(requires(Role.deployer, "otlp.export", "traces"))
                        ) -> Response:
    """OTLP/HTTP traces (ExportTraceServiceRequest)."""
    return await _export("traces", request)


@router.post("/logs", responses=ANSWERS)
async def export_logs(request: Request, _who: Principal = Depends(requires(Role.deployer, "otlp.export", "logs"))
                      ) -> Response:
    """OTLP/HTTP logs (ExportLogsServiceRequest): counted per service and version."""
    return await _export("logs", request)


@router.post("/metrics", responses=ANSWERS)
async def export_metrics(request: Request,
                         _who: Principal = Depends(requires(Role.deployer, "otlp.export", "metrics"))) -> Response:
    """OTLP/HTTP metrics (ExportMetricsServiceRequest): data points counted per service and version."""
    return await _export("metrics", request)


@traces_router.get("/traces/{trace_id}", responses={**DENIED, 404: {"description": "Not a kept exemplar trace"}})
def get_trace(request: Request, trace_id: str = Path(pattern="^[0-9a-fA-F]{32}$"),
              _who: Principal = Depends(requires(Role.viewer))) -> dict[str, Any]:
    """One exemplar trace kept from OTLP spans: its spans (name, ids, parent, duration, self-time, status)
    and ``origin``, the span where its error (deepest ERROR span) or its time (largest self-time) began."""
    exemplar = request.app.state.telemetry.trace(trace_id)
    if exemplar is None:
        raise HTTPException(404, f"trace {trace_id} is not kept (exemplars: the slowest and failed few per "
                                 "version and minute, for an hour)")
    found: dict[str, Any] = exemplar.to_dict()
    return found
