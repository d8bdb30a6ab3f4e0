"""Region-wave specs: each mistake is refused with the field it is about."""

from __future__ import annotations

import pytest

from rollwise.spec import SpecError, load_spec, load_spec_text
from support.common import EXAMPLES
from support.specs import SHOP

STEPS = """
  canary:
    steps:
      - setWeight: 10
      - pause: {duration: 1m}
"""


def _problem(text: str) -> str:
    with pytest.raises(SpecError) as info:
        load_spec_text(SHOP + STEPS + text)
    return str(info.value)


def test_the_example_runs_as_region_waves() -> None:
    spec = load_spec(EXAMPLES / "waves.yaml")
    assert spec.strategy.kind == "regionWaves" and spec.traffic.router == "envoy-ads"
    canary = spec.strategy.canary
    assert canary is not None and canary.waves is not None
    assert [w.batches() for w in canary.waves] == [[["a"]], [["b"], ["c"]], [["d", "e", "f"]]]
    assert canary.blackouts[0].start == "Fri 16:00"
    dumped = spec.model_dump(mode="json")
    assert dumped["strategy"]["canary"]["blackouts"][0]["from"] == "Fri 16:00"  # round-trips as written
    assert load_spec_text(__import__("yaml").safe_dump(dumped)).strategy.canary == canary


@pytest.mark.parametrize(("text", "path", "words"), [
    ("    waves:\n      - {name: one, regions: [a]}\n      - {name: two, regions: [b, a]}\n",
     "strategy.canary.waves.1.regions", "region 'a' is already in wave 'one'"),
    ("    waves:\n      - {name: one, regions: [a]}\n      - {name: one, regions: [b]}\n",
     "strategy.canary.waves.1.name", "names an earlier wave"),
    ("    waves:\n      - {name: one, regions: []}\n", "strategy.canary.waves.0.regions", "at least 1"),
    ("    waves:\n      - {name: one, regions: [a], bake: soon}\n", "strategy.canary.waves.0.bake",
     "invalid duration"),
    ("    waves:\n      - {name: one, regions: [a], parallelism: 0}\n", "strategy.canary.waves.0.parallelism",
     "greater than or equal to 1"),
    ("    waves: []\n", "strategy.canary.waves", "at least 1"),
    ("    onFailure: hold\n", "strategy.canary", "onFailure: needs waves"),
    ("    onFailure: later\n    waves: [{name: one, regions: [a]}]\n", "strategy.canary.onFailure",
     "'rollback' or 'hold'"),
    ("    carryForward: {startWeight: 25}\n", "strategy.canary", "carryForward: needs waves"),
    ("    waves: [{name: one, regions: [a]}]\n    carryForward: {bakeFactor: 2}\n",
     "strategy.canary.carryForward.bakeFactor", "less than or equal to 1"),
    ("    waves: [{name: one, regions: [a]}]\n    blackouts:\n      - {timezone: Mars/Olympus, from: Fri 16:00, "
     "to: Mon 08:00}\n", "strategy.canary.blackouts.0", "unknown time zone 'Mars/Olympus'"),
    ("    waves: [{name: one, regions: [a]}]\n    blackouts:\n      - {from: Fry 16:00, to: Mon 08:00}\n",
     "strategy.canary.blackouts.0", "invalid weekday"),
    ("    waves: [{name: one, regions: [a]}]\n    blackouts:\n      - {from: Fri 16:00, to: '08:00'}\n",
     "strategy.canary.blackouts.0", "both name a weekday"),
    ("    waves: [{name: one, regions: [a]}]\n    blackouts:\n      - {regions: [z], from: Fri 16:00, "
     "to: Mon 08:00}\n", "strategy.canary.blackouts.0.regions", "region 'z' is in no wave"),
    ("    waves: [{name: one, regions: [a]}]\n    blackouts:\n      - {to: Mon 08:00}\n",
     "strategy.canary.blackouts.0.from", "Field required"),
])
def test_wave_mistakes_name_their_field(text: str, path: str, words: str) -> None:
    problem = _problem(text)
    assert f": {path}: " in problem, problem
    assert words in problem, problem


def test_waves_need_a_router_with_regions() -> None:
    text = SHOP.replace("traffic: {router: none}", "traffic: {router: envoy}") + STEPS + \
        "    waves: [{name: one, regions: [a]}]\n"
    with pytest.raises(SpecError) as info:
        load_spec_text(text)
    assert ": traffic.router: envoy has no regions" in str(info.value)
