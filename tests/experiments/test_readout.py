"""The readout's decision rule on per-variant statistics with known outcomes."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from rollwise.experiments.model import Experiment, ExperimentSpec
from rollwise.experiments.readout import csv_rows, readout
from rollwise.experiments.stats import Moments

SPEC = {"name": "exp", "hypothesis": "h", "owner": "o", "flag": "f", "variants": ["a", "b", "c"],
        "primary": {"name": "buy", "kind": "conversion"},
        "guardrails": [{"name": "err", "kind": "conversion", "higherIsBetter": False, "maxRegression": 0.1}]}


def _conversions(n: int, rate: float) -> Moments:
    k = round(n * rate)
    return Moments(float(n), float(k), float(k))


def _experiment(**changes: object) -> Experiment:
    return Experiment(spec=ExperimentSpec.model_validate({**SPEC, **changes}), started_at=0.0)


def test_a_clear_winner_ships_and_the_others_stay_undecided() -> None:
    n = 20_000
    moments = {"buy": {"a": _conversions(n, 0.10), "b": _conversions(n, 0.12), "c": _conversions(n, 0.10)},
               "err": {v: _conversions(n, 0.01) for v in "abc"}}
    result = readout(_experiment(), {v: n for v in "abc"}, moments)
    assert (result.decision, result.winner) == ("ship", "b")
    assert result.comparison_alpha == pytest.approx(0.025)
    by_variant = {r.variant: r for r in result.metrics[0].comparisons}
    assert by_variant["b"].cs_low > 0 and by_variant["b"].relative == pytest.approx(0.2)
    assert by_variant["c"].better is None
    # the sequence is wider than the fixed-horizon interval at the same look
    assert by_variant["b"].cs_high - by_variant["b"].cs_low > by_variant["b"].fixed_high - by_variant["b"].fixed_low
    assert {row["variant"] for row in csv_rows(result)} == {"b", "c"}


def test_a_guardrail_breach_stops_even_with_a_winner() -> None:
    n = 20_000
    moments = {"buy": {"a": _conversions(n, 0.10), "b": _conversions(n, 0.12), "c": _conversions(n, 0.10)},
               "err": {"a": _conversions(n, 0.01), "b": _conversions(n, 0.03), "c": _conversions(n, 0.01)}}
    result = readout(_experiment(), {v: n for v in "abc"}, moments)
    assert result.decision == "stop"
    assert [(b["metric"], b["variant"]) for b in result.breaches] == [("err", "b")]
    assert result.breaches[0]["cs_low"] > 0.1


def test_a_regression_inside_the_tolerance_is_no_breach() -> None:
    n = 20_000
    moments = {"buy": {v: _conversions(n, 0.10) for v in "abc"},
               "err": {"a": _conversions(n, 0.0100), "b": _conversions(n, 0.0105), "c": _conversions(n, 0.01)}}
    result = readout(_experiment(), {v: n for v in "abc"}, moments)
    assert result.decision == "continue" and not result.breaches


def test_sample_ratio_mismatch_halts_the_readout() -> None:
    moments = {"buy": {"a": _conversions(12_000, 0.1), "b": _conversions(10_000, 0.2), "c": _conversions(10_000, 0.1)}}
    result = readout(_experiment(), {"a": 12_000, "b": 10_000, "c": 10_000}, moments)
    assert result.decision == "halt" and result.srm.status == "mismatch" and result.winner is None


def test_an_uneven_planned_allocation_is_no_mismatch() -> None:
    experiment = _experiment(allocation={"a": 2, "b": 1, "c": 1})
    result = readout(experiment, {"a": 20_000, "b": 10_000, "c": 10_000}, {})
    assert result.srm.status == "ok" and result.decision == "continue"
    assert result.metrics[0].note == "not enough data"


def test_cuped_is_used_when_a_covariate_is_there() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(10, 2, (2, 5_000))
    y = x + rng.normal(0, 1, (2, 5_000))
    moments = {"buy": {"a": Moments.of(y[0], x[0]), "b": Moments.of(y[1], x[1])}}
    spec = {**SPEC, "variants": ["a", "b"], "primary": {"name": "buy", "kind": "sum"}, "guardrails": []}
    adjusted = readout(Experiment(spec=ExperimentSpec.model_validate(spec), started_at=0.0), {"a": 5_000, "b": 5_000},
                       moments)
    plain_spec = {**spec, "primary": {"name": "buy", "kind": "sum", "cuped": False}}
    plain = readout(Experiment(spec=ExperimentSpec.model_validate(plain_spec), started_at=0.0),
                    {"a": 5_000, "b": 5_000}, moments)
    assert adjusted.metrics[0].cuped and not plain.metrics[0].cuped
    width = [r.metrics[0].comparisons[0].cs_high - r.metrics[0].comparisons[0].cs_low for r in (adjusted, plain)]
    assert width[0] < 0.6 * width[1]


@pytest.mark.parametrize(("change", "field"), [
    ({"variants": ["a"]}, "variants"),
    ({"variants": ["a", "a"]}, "variants"),
    ({"control": "z"}, "control"),
    ({"flag": None}, "flag"),
    ({"route": {"header": "x-exp"}}, "flag"),
    ({"allocation": {"a": 1}}, "allocation"),
    ({"primary": {"name": "r", "kind": "ratio"}}, "denominator"),
    ({"name": "Bad Name"}, "name"),
])
def test_bad_specs_name_the_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        ExperimentSpec.model_validate({**SPEC, **change})


def test_a_ratio_without_its_denominator_yet_is_not_enough_data() -> None:
    spec = {**SPEC, "variants": ["a", "b"], "guardrails": [],
            "primary": {"name": "rps", "event": "revenue", "kind": "ratio", "denominator": "session"}}
    empty = {"rps": {"a": Moments(100.0, 0.0, 0.0), "b": Moments(100.0, 0.0, 0.0)}}
    result = readout(Experiment(spec=ExperimentSpec.model_validate(spec), started_at=0.0), {"a": 100, "b": 100}, empty)
    assert result.metrics[0].note == "not enough data" and result.metrics[0].control_value is None
