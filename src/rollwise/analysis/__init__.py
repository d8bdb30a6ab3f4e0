"""Judges: pure functions from a stage's observations to a verdict with its evidence.

``judge_for`` is the registry the engine is given; the spec's ``analysis.judge`` picks one.
"""

from __future__ import annotations

from collections.abc import Callable

from rollwise.core.protocols import Judge
from rollwise.spec.models import AnalysisSpec

_REGISTRY: dict[str, Callable[[AnalysisSpec], Judge]] = {}


def register(name: str, factory: Callable[[AnalysisSpec], Judge]) -> None:
    _REGISTRY[name] = factory


def judge_for(analysis: AnalysisSpec) -> Judge:
    if not _REGISTRY:
        _load_builtin()
    try:
        factory = _REGISTRY[analysis.judge]
    except KeyError:
        raise ValueError(f"no judge named {analysis.judge!r}; known: {', '.join(sorted(_REGISTRY))}") from None
    return factory(analysis)


def _load_builtin() -> None:
    from rollwise.analysis.threshold import ThresholdJudge

    register("threshold", ThresholdJudge)
    try:  # the statistical judges live in their own modules
        from rollwise.analysis.sequential import SequentialJudge
    except ImportError:
        register("sequential", ThresholdJudge)
    else:
        register("sequential", SequentialJudge)
    try:
        from rollwise.analysis.kayenta import KayentaJudge
    except ImportError:
        pass
    else:
        register("kayenta", KayentaJudge)
