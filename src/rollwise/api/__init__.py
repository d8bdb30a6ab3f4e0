"""rollwise's HTTP control plane: API, live event stream, flags (OFREP) and the dashboard.

``create_app`` is imported on first use, so the CLI can import ``rollwise.api.cli`` (its ``serve``,
``tokens`` and ``audit`` commands) without loading FastAPI for ``rollwise --help``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rollwise.api.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from rollwise.api.app import create_app

        return create_app
    raise AttributeError(f"module 'rollwise.api' has no attribute {name!r}")
