"""RollwiseProvider: an in-process OpenFeature provider over a flagd-format flag file.

It watches the file (polling, ~150 ms), swaps in the recompiled configuration on change, applies due
schedules in memory, and emits PROVIDER_CONFIGURATION_CHANGED so applications can react.

Given an ``ExperimentTracker`` (``flags/tracking.py``) it also feeds experiments: its hook records an exposure
for each evaluation of a flag a running experiment is on, and OpenFeature's ``track`` sends metric events,
both in batches to ``rollwise serve``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType, Reason
from openfeature.hook import Hook
from openfeature.provider import AbstractProvider, Metadata
from openfeature.track import TrackingEventDetails

from rollwise.flags.evaluator import Resolution, check_type
from rollwise.flags.repository import ConfigChange, FlagRepository
from rollwise.flags.tracking import ExperimentTracker, ExposureHook

_REASONS = {r.value: r for r in Reason}
_ERRORS = {e.value: e for e in ErrorCode}


def context_dict(ctx: EvaluationContext | None) -> dict[str, Any]:
    """OpenFeature context to the plain dict the evaluator reads (`targetingKey` included)."""
    if ctx is None:
        return {}
    data = dict(ctx.attributes)
    if ctx.targeting_key is not None:
        data["targetingKey"] = ctx.targeting_key
    return data


def to_details(result: Resolution, default: Any) -> FlagResolutionDetails[Any]:
    return FlagResolutionDetails(
        value=default if result.variant is None else result.value,
        variant=result.variant,
        reason=_REASONS.get(result.reason, result.reason),
        error_code=_ERRORS.get(result.error_code) if result.error_code else None,
        error_message=result.error_message,
        flag_metadata=dict(result.metadata),
    )


class RollwiseProvider(AbstractProvider):
    """In-process OpenFeature provider for rollwise / flagd flag files."""

    def __init__(
        self,
        path: str | Path,
        *,
        fractional_version: int | None = None,
        poll_interval: float = 0.15,
        clock: Callable[[], float] | None = None,
        watch: bool = True,
        tracker: ExperimentTracker | None = None,
    ):
        super().__init__()
        self.tracker = tracker
        kwargs: dict[str, Any] = {"fractional_version": fractional_version, "apply_schedules": False}
        if clock is not None:
            kwargs["clock"] = clock
        self.repository = FlagRepository(path, poll_interval=poll_interval, **kwargs)
        self._watch = watch
        self._unsubscribe = self.repository.subscribe(self._on_change)

    def get_metadata(self) -> Metadata:
        return Metadata(name="rollwise")

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        if self._watch:
            self.repository.start()

    def shutdown(self) -> None:
        self.repository.stop()
        if self.tracker is not None:
            self.tracker.close()

    def get_provider_hooks(self) -> list[Hook]:
        """With a tracker: the hook that records exposures of experiment flags."""
        return [ExposureHook(self.tracker)] if self.tracker is not None else []

    def track(
        self,
        tracking_event_name: str,
        evaluation_context: EvaluationContext | None = None,
        tracking_event_details: TrackingEventDetails | None = None,
    ) -> None:
        """OpenFeature's tracking API: a metric event for the context's targeting key (value 1 unless the
        details carry one), sent in the tracker's next batch. Without a tracker it does nothing."""
        if self.tracker is None:
            return
        subject = evaluation_context.targeting_key if evaluation_context is not None else None
        value = tracking_event_details.value if tracking_event_details is not None else None
        self.tracker.event(subject, tracking_event_name, value)

    def _on_change(self, change: ConfigChange) -> None:
        self.emit_provider_configuration_changed(
            ProviderEventDetails(
                flags_changed=change.flags_changed,
                message=f"flag configuration version {change.version} ({change.action})",
                metadata={"version": change.version, "etag": change.etag},
            )
        )

    def _resolve(self, key: str, default: Any, ctx: EvaluationContext | None, kind: str) -> FlagResolutionDetails[Any]:
        result = self.repository.flag_set.resolve(key, context_dict(ctx), default)
        return to_details(check_type(result, kind), default)

    def resolve_boolean_details(
        self, flag_key: str, default_value: bool, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[bool]:
        return self._resolve(flag_key, default_value, evaluation_context, "boolean")

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        return self._resolve(flag_key, default_value, evaluation_context, "string")

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        return self._resolve(flag_key, default_value, evaluation_context, "integer")

    def resolve_float_details(
        self, flag_key: str, default_value: float, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[float]:
        return self._resolve(flag_key, default_value, evaluation_context, "float")

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        return self._resolve(flag_key, default_value, evaluation_context, "object")
