"""The fleet over HTTP (``viewer``): ``GET /api/v1/fleet/envoys`` (what ``rollwise fleet list`` shows) and
``GET /api/v1/fleet/controllers`` (what ``rollwise controllers`` shows); the dashboard's Fleet page reads both."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Request

from rollwise.api.auth import requires
from rollwise.api.schemas import DENIED
from rollwise.control.principal import Principal, Role

router = APIRouter(prefix="/api/v1", tags=["fleet"])


@router.get("/fleet/envoys", responses=DENIED)
def envoys(request: Request, _who: Principal = Depends(requires(Role.viewer))) -> list[dict[str, Any]]:
    """Each Envoy of the ADS fleet: region, zone, connected, the versions it ACKed, routes it serves, NACKs."""
    from rollwise.fleet.view import envoy_rows
    from rollwise.wiring import open_fleet

    fleet = open_fleet(request.app.state.plane.store)
    return envoy_rows(fleet.nodes(), time.time()) if fleet is not None else []


@router.get("/fleet/controllers", responses=DENIED)
def controllers(request: Request, _who: Principal = Depends(requires(Role.viewer))) -> list[dict[str, Any]]:
    """Each controller sharing the store: alive or gone, when last seen, the rollouts it holds (its leases);
    what ``rollwise controllers`` shows."""
    from rollwise.fleet.view import fleet_view
    from rollwise.wiring import open_leases

    leases = open_leases(request.app.state.plane.store)
    return fleet_view(leases.controllers(), leases.leases(), time.time()) if leases is not None else []
