"""Feature flags: flagd-compatible definitions, a compiled evaluator, OpenFeature and OFREP."""

from rollwise.flags.definitions import FlagValidationError
from rollwise.flags.evaluator import FlagSet, Resolution
from rollwise.flags.provider import RollwiseProvider
from rollwise.flags.repository import ChangeRecord, FlagRepository, set_rollout_percent

__all__ = [
    "ChangeRecord",
    "FlagRepository",
    "FlagSet",
    "FlagValidationError",
    "Resolution",
    "RollwiseProvider",
    "set_rollout_percent",
]
