"""The rollout spec: what users write in YAML, validated with pydantic."""

from rollwise.spec.loader import SpecError, SpecProblem, load_spec, load_spec_text
from rollwise.spec.models import AnalysisSpec, MetricSpec, RolloutSpec

__all__ = [
    "AnalysisSpec",
    "MetricSpec",
    "RolloutSpec",
    "SpecError",
    "SpecProblem",
    "load_spec",
    "load_spec_text",
]
