from __future__ import annotations

from pathlib import Path

import pytest

from rollwise.core.units import parse_duration, parse_fraction, parse_latency_ms
from rollwise.spec import SpecError, load_spec, load_spec_text
from support.common import broken_canary  # type: ignore[import-not-found]


def test_every_example_is_valid(examples_dir: Path) -> None:
    files = sorted(examples_dir.glob("*.yaml"))
    assert {f.name for f in files} >= {"canary.yaml", "blue-green.yaml", "shadow.yaml"}
    for file in files:
        load_spec(file)


def test_canary_example_climbs_5_10_25_50_100(examples_dir: Path) -> None:
    spec = load_spec(examples_dir / "canary.yaml")
    assert spec.strategy.canary is not None
    weights = [s.setWeight for s in spec.strategy.canary.steps if s.setWeight is not None]
    assert weights == [5, 10, 25, 50, 100]
    analysis = spec.strategy.canary.analysis
    assert analysis is not None and analysis.judge == "sequential"
    kinds = {m.type for m in analysis.metrics}
    assert kinds == {"errorRate", "latency"}
    assert all(m.minEffect is None for m in analysis.metrics)


def _broken_canary(examples_dir: Path) -> str:
    return broken_canary((examples_dir / "canary.yaml").read_text())


def test_three_mistakes_are_all_named_with_their_lines(examples_dir: Path) -> None:
    text = _broken_canary(examples_dir)
    with pytest.raises(SpecError) as info:
        load_spec_text(text, "bad.yaml")
    problems = info.value.problems
    lines = text.splitlines()
    assert len(problems) == 3
    by_kind = {p.path: p for p in problems}
    weight = next(p for p in problems if p.path.endswith("setWeight"))
    assert "150" in lines[weight.line - 1]
    unknown = next(p for p in problems if "unknown step type" in p.message)
    assert "setWieght" in lines[unknown.line - 1]
    duration = next(p for p in problems if p.path.endswith("pause.duration"))
    assert "parsecs" in lines[duration.line - 1]
    assert all(str(p).startswith(f"bad.yaml:{p.line}: ") for p in problems)
    assert len(by_kind) == 3


def test_yaml_syntax_error_names_the_line() -> None:
    with pytest.raises(SpecError) as info:
        load_spec_text("name: x\nservice: [unclosed\n", "s.yaml")
    assert info.value.problems[0].line >= 2


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25), (12, 12)]
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["30 parsecs", "5 minutes", "-3s", "", "m5"])
def test_bad_durations_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_percentages_and_latency() -> None:
    assert parse_fraction("0.1%") == pytest.approx(0.001)
    assert parse_fraction(0.02) == pytest.approx(0.02)
    with pytest.raises(ValueError):
        parse_fraction("150%")
    assert parse_latency_ms("200ms") == 200
    assert parse_latency_ms("1.5s") == 1500


def test_slo_expressions_parse_to_numbers(examples_dir: Path) -> None:
    text = (examples_dir / "canary.yaml").read_text().replace('slo: "< 1%"', 'slo: "errorRate < 0.1%"')
    spec = load_spec_text(text)
    analysis = spec.analysis()
    assert analysis is not None
    error = next(m for m in analysis.metrics if m.type == "errorRate")
    assert error.slo is not None and error.slo.op == "<" and error.slo.value == pytest.approx(0.001)
    latency = next(m for m in analysis.metrics if m.type == "latency")
    assert latency.slo is not None and latency.slo.value == 500


def test_a_dumped_spec_loads_back_identical(examples_dir: Path) -> None:
    from rollwise.spec.models import RolloutSpec

    for file in sorted(examples_dir.glob("*.yaml")):
        spec = load_spec(file)
        again = RolloutSpec.model_validate(spec.model_dump(mode="json"))
        assert again == spec, file
        assert RolloutSpec.model_validate(spec.model_dump()) == spec


@pytest.mark.parametrize("seconds", [0.25, 1.5, 30, 90, 3600, 5400.5])
def test_formatted_durations_parse_back(seconds: float) -> None:
    from rollwise.core.units import format_duration

    assert parse_duration(format_duration(seconds, exact=True)) == pytest.approx(seconds)
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, abs=0.5)
