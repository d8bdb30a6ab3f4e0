"""A metric source that adds an evaluation batch per evaluation to every window it collects.

This is the hook that joins evaluations to the live decision without touching the engine: at each
look the engine collects a window, and this wrapper runs each evaluation's batch (through the runners
``wiring.py`` built) and keeps it on the window (``Window.evaluations``). The sequential judge folds it
like any other observation, with the evaluation's share of alpha. An evaluation that cannot run at
all (its suite unreadable, a version with no endpoint) is a ``MetricsError``: unknown, not bad.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from rollwise.agents.runner import Batch
from rollwise.core.model import VersionStats, Window, WindowQuery
from rollwise.core.protocols import BaselineHistory, MetricsError, MetricSource


class BatchRunner(Protocol):
    def batch(self, seed: str) -> Batch: ...


#: Builds an evaluation's runner for a rollout's versions (may raise ``ValueError`` naming what is missing).
RunnerFactory = Callable[[WindowQuery], BatchRunner]


class WithEvaluations:
    """``source``'s windows (or empty ones when there is no source) with each evaluation's batch."""

    def __init__(self, source: MetricSource | None, runners: dict[str, RunnerFactory]):
        self.source = source
        self.runners = runners

    def collect(self, query: WindowQuery) -> Window:
        if self.source is not None:
            window = self.source.collect(query)
        else:
            window = Window(start=query.start, end=query.end, baseline=None, canary=None, cursor=query.cursor)
        batches = {}
        for name, factory in self.runners.items():
            seed = f"{query.rollout}/{name}/{query.canary_version}/{query.start:.3f}"
            try:
                batches[name] = factory(query).batch(seed).to_dict()
            except (ValueError, OSError) as exc:
                raise MetricsError(f"evaluation {name}: {exc}") from None
        if window.error is None:  # an evaluation is data even when no live request arrived
            window = replace(window, baseline=window.baseline or VersionStats(),
                             canary=window.canary or VersionStats())
        return replace(window, evaluations={**(window.evaluations or {}), **batches})


class WithEvaluationsAndHistory(WithEvaluations):
    """The same, for a source that is also a ``BaselineHistory`` (the engine checks by type)."""

    source: BaselineHistory  # type: ignore[assignment]

    def baseline_history(self, query: WindowQuery) -> VersionStats | None:
        return self.source.baseline_history(query)


def with_evaluations(source: MetricSource | None, runners: dict[str, RunnerFactory]) -> WithEvaluations:
    if source is not None and isinstance(source, BaselineHistory):
        return WithEvaluationsAndHistory(source, runners)
    return WithEvaluations(source, runners)
