"""rollwise's HTTP control plane: API, live event stream, flags (OFREP) and the dashboard."""

from rollwise.api.app import create_app

__all__ = ["create_app"]
