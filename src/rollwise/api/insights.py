"""``GET /api/v1/metrics``: delivery metrics (DORA-style) computed by ``rollwise.report.metrics``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic_core import to_jsonable_python

from rollwise.api.auth import requires
from rollwise.control.principal import Principal, Role
from rollwise.report.metrics import delivery_metrics as compute_delivery_metrics

router = APIRouter(prefix="/api/v1", tags=["metrics"])


@router.get("/metrics", responses={401: {"description": "No or unknown token"}})
def delivery_metrics(
    request: Request,
    service: Annotated[str | None, Query(max_length=255, description="Only this service.")] = None,
    since_s: Annotated[float | None, Query(gt=0, le=10 * 365 * 86400,
                                           description="Only rollouts of the last N seconds.")] = None,
    bucket_s: Annotated[float | None, Query(ge=3600, le=365 * 86400,
                                            description="Trend bucket length in seconds; by default a day, "
                                                        "a week or 30 days, from the window's length.")] = None,
    _who: Principal = Depends(requires(Role.viewer)),
) -> Any:
    """Deployment frequency, lead time, change failure rate and time to restore, with DORA bands and
    trends per bucket, from the store."""
    if service is not None and "\x00" in service:
        raise HTTPException(422, "service: must not contain NUL characters")
    return to_jsonable_python(compute_delivery_metrics(request.app.state.plane.store, service=service,
                                                       since_s=since_s, bucket_s=bucket_s,
                                                       watch=request.app.state.watch))
