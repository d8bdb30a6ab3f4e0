"""Evaluation semantics beyond the testbed: JsonLogic operators, $flagd context, fractional properties."""

from __future__ import annotations

from typing import Any

import pytest

from rollwise.flags import FlagSet
from rollwise.flags.jsonlogic import STANDARD_OPERATORS, Compiler
from rollwise.flags.operators import FLAGD_OPERATORS, parse_semver


def rule(r: Any, data: Any = None, flag_key: str = "f", clock: Any = None) -> Any:
    c = Compiler(flag_key, {**STANDARD_OPERATORS, **FLAGD_OPERATORS}, 3, clock)
    return c.compile(r)(data if data is not None else {})


@pytest.mark.parametrize(
    ("expr", "data", "expected"),
    [
        ({"==": [1, "1"]}, {}, True),
        ({"===": [1, "1"]}, {}, False),
        ({"!=": [{"var": "a"}, "x"]}, {"a": "y"}, True),
        ({"<": [1, {"var": "n"}, 3]}, {"n": 2}, True),
        ({"<=": [1, {"var": "n"}, 3]}, {"n": 3}, True),
        ({">": ["b", "a"]}, {}, True),
        ({"and": [True, {"var": "x"}]}, {"x": 0}, 0),
        ({"or": [0, "", "first"]}, {}, "first"),
        ({"!": [[]]}, {}, True),
        ({"!!": [{}]}, {}, True),
        ({"if": [False, 1, {"var": "z"}, 2, 3]}, {"z": True}, 2),
        ({"in": ["b", ["a", "b"]]}, {}, True),
        ({"in": ["ell", "hello"]}, {}, True),
        ({"cat": ["v", 1.0, True, None]}, {}, "v1truenull"),
        ({"substr": ["rollwise", -4]}, {}, "wise"),
        ({"substr": ["rollwise", 1, -4]}, {}, "oll"),
        ({"+": [1, "2", 3.5]}, {}, 6.5),
        ({"-": [5]}, {}, -5),
        ({"%": [7, 3]}, {}, 1),
        ({"max": [1, 9, 3]}, {}, 9),
        ({"var": ["missing", "dflt"]}, {}, "dflt"),
        ({"var": "a.b.1"}, {"a": {"b": [10, 20]}}, 20),
        ({"missing": ["a", "b"]}, {"a": 1}, ["b"]),
        ({"missing_some": [1, ["a", "b"]]}, {"a": 1}, []),
        ({"map": [{"var": "xs"}, {"*": [{"var": ""}, 2]}]}, {"xs": [1, 2]}, [2, 4]),
        ({"filter": [[1, 2, 3], {">": [{"var": ""}, 1]}]}, {}, [2, 3]),
        ({"reduce": [[1, 2, 3], {"+": [{"var": "current"}, {"var": "accumulator"}]}, 0]}, {}, 6),
        ({"all": [[1, 2], {">": [{"var": ""}, 0]}]}, {}, True),
        ({"some": [[1, 2], {">": [{"var": ""}, 1]}]}, {}, True),
        ({"none": [[1, 2], {">": [{"var": ""}, 5]}]}, {}, True),
        ({"merge": [[1], 2, [3]]}, {}, [1, 2, 3]),
        ({"starts_with": [{"var": "id"}, "abc"]}, {"id": "abcd"}, True),
        ({"ends_with": [{"var": "id"}, 3]}, {"id": "x3"}, None),
        ({"sem_ver": ["1.2.3", ">=", "1.2.0"]}, {}, True),
        ({"sem_ver": ["1.0.0-alpha.2", "<", "1.0.0-alpha.10"]}, {}, True),
        ({"sem_ver": ["1.0.0-alpha", "<", "1.0.0-alpha.1"]}, {}, True),
        ({"sem_ver": ["1.0.0-rc.1", "<", "1.0.0"]}, {}, True),
        ({"sem_ver": ["v2", "=", "2.0.0+build.5"]}, {}, True),
        ({"sem_ver": ["1.2.3", "~", "1.2.9"]}, {}, True),
        ({"sem_ver": ["01.2.3", "=", "1.2.3"]}, {}, None),
    ],
)
def test_jsonlogic_operators(expr: Any, data: Any, expected: Any) -> None:
    assert rule(expr, data) == expected


def test_flagd_context_properties_are_compiled_in() -> None:
    assert rule({"var": "$flagd.flagKey"}, flag_key="my-flag") == "my-flag"
    assert rule({"var": "$flagd.timestamp"}, clock=lambda: 1234.9) == 1234
    assert rule({"var": "$flagd"}, flag_key="k", clock=lambda: 5.0) == {"flagKey": "k", "timestamp": 5}
    # Not taken from the caller's context: flagd overwrites it.
    assert rule({"var": "$flagd.flagKey"}, {"$flagd": {"flagKey": "spoofed"}}, flag_key="real") == "real"


def test_semver_parsing_rejects_invalid_versions() -> None:
    assert parse_semver("1.2.3.4") is None
    assert parse_semver("abc") is None
    assert parse_semver(True) is None
    assert parse_semver(1.5) == parse_semver("1.5.0")


def _rollout(percent_on: int, version: int = 3, wrap: bool = False) -> FlagSet:
    frac: dict[str, Any] = {"fractional": [["on", percent_on], ["off", 100 - percent_on]]}
    targeting = {"if": [True, frac]} if wrap else frac
    doc = {
        "flags": {
            "r": {
                "state": "ENABLED",
                "variants": {"on": True, "off": False},
                "defaultVariant": "off",
                "targeting": targeting,
            }
        }
    }
    return FlagSet.from_dict(doc, fractional_version=version)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_fast_fractional_path_agrees_with_the_general_compiler(version: int) -> None:
    fast, general = _rollout(37, version), _rollout(37, version, wrap=True)
    for i in range(3000):
        ctx = {"targetingKey": f"user-{i}" + ("é" * (i % 30))}  # crosses the 24-byte CBOR length boundary
        assert fast.resolve("r", ctx).value == general.resolve("r", ctx).value
    assert fast.resolve("r", {}, "dflt").reason == "DEFAULT"
    assert fast.resolve("r", {"targetingKey": 7}, "dflt").variant == "off"


def test_fractional_split_is_close_to_its_weights_and_monotone() -> None:
    users = [{"targetingKey": f"user-{i}"} for i in range(10_000)]
    on_at = {p: {u["targetingKey"] for u in users if _rollout(p).resolve("r", u).value} for p in (10, 50, 90)}
    assert 900 < len(on_at[10]) < 1100
    assert 4800 < len(on_at[50]) < 5200
    # Raising the share only adds users: nobody who had the feature loses it.
    assert on_at[10] <= on_at[50] <= on_at[90]


def test_results_are_precomputed_not_rebuilt_per_call() -> None:
    fs = _rollout(50)
    a = fs.resolve("r", {"targetingKey": "same"})
    assert fs.resolve("r", {"targetingKey": "same"}) is a
    static = FlagSet.from_dict({"flags": {"s": {"state": "ENABLED", "variants": {"x": 1.0}, "defaultVariant": "x"}}})
    assert static.resolve("s", {}) is static.resolve("s", {"any": 1})
