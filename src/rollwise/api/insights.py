"""``GET /api/v1/metrics``: delivery metrics (DORA-style) computed by ``rollwise.report.metrics``."""

from __future__ import annotations

import importlib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic_core import to_jsonable_python

from rollwise.api.auth import requires
from rollwise.control.principal import Principal, Role

router = APIRouter(prefix="/api/v1", tags=["metrics"])


@router.get("/metrics", responses={503: {"description": "The metrics module is not installed"},
                                   401: {"description": "No or unknown token"}})
def delivery_metrics(
    request: Request,
    service: Annotated[str | None, Query(max_length=255, description="Only this service.")] = None,
    since_s: Annotated[float | None, Query(gt=0, le=10 * 365 * 86400,
                                           description="Only rollouts of the last N seconds.")] = None,
    _who: Principal = Depends(requires(Role.viewer)),
) -> Any:
    """Deployment frequency, lead time, change failure rate and time to restore, from the store."""
    try:
        module = importlib.import_module("rollwise.report.metrics")
        compute = module.delivery_metrics
    except (ImportError, AttributeError):
        raise HTTPException(503, "delivery metrics are not available: rollwise.report.metrics is not "
                                 "installed in this build") from None
    if service is not None and "\x00" in service:
        raise HTTPException(422, "service: must not contain NUL characters")
    result = compute(request.app.state.plane.store, service=service, since_s=since_s)
    for method in ("to_dict", "model_dump"):
        if hasattr(result, method):
            result = getattr(result, method)()
            break
    return to_jsonable_python(result)
