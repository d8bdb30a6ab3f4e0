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
    """Register the judges that ship with rollwise; a judge that fails to import is a broken build."""
    from rollwise.analysis.kayenta import KayentaJudge
    from rollwise.analysis.sequential import SequentialJudge
    from rollwise.analysis.threshold import ThresholdJudge

    register("threshold", ThresholdJudge)
    register("sequential", SequentialJudge)
    register("kayenta", KayentaJudge)
