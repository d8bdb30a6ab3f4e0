"""Feature flags: flagd-compatible definitions, a compiled evaluator, OpenFeature and OFREP.

The names below load on first use, so importing one submodule (the CLI's ``flags.cli``) does not
load the OpenFeature provider and the rest for ``rollwise --help``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rollwise.flags.definitions import FlagValidationError
    from rollwise.flags.evaluator import FlagSet, Resolution
    from rollwise.flags.provider import RollwiseProvider
    from rollwise.flags.repository import ChangeRecord, FlagRepository, set_rollout_percent

_WHERE = {
    "ChangeRecord": "repository",
    "FlagRepository": "repository",
    "FlagSet": "evaluator",
    "FlagValidationError": "definitions",
    "Resolution": "evaluator",
    "RollwiseProvider": "provider",
    "set_rollout_percent": "repository",
}
__all__ = [
    "ChangeRecord",
    "FlagRepository",
    "FlagSet",
    "FlagValidationError",
    "Resolution",
    "RollwiseProvider",
    "set_rollout_percent",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f"rollwise.flags.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'rollwise.flags' has no attribute {name!r}")
