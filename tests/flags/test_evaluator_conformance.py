"""The flagd testbed's evaluator suite (evaluator/gherkin + testkit-flags.json) against FlagSet.

Every scenario runs; @fractional-v1/-v2 examples run with that bucketing version selected, all others
with rollwise's default (v3).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from pytest_bdd import given, parsers, scenarios, then, when

from rollwise.flags import FlagSet
from rollwise.flags.evaluator import Resolution, check_type
from support.flags_bdd import TESTBED, assert_metadata, assert_value, convert, fractional_version

scenarios(str(TESTBED / "evaluator" / "gherkin"))

_KINDS = {"Boolean": "boolean", "String": "string", "Integer": "integer", "Float": "float", "Object": "object"}


@dataclass
class Evaluation:
    flag_set: FlagSet | None = None
    kind: str = "String"
    key: str = ""
    default: Any = None
    context: dict[str, Any] = field(default_factory=dict)
    result: Resolution | None = None


@pytest.fixture
def evaluation() -> Evaluation:
    return Evaluation()


@given("an evaluator")
def an_evaluator(evaluation: Evaluation, request: pytest.FixtureRequest) -> None:
    if evaluation.flag_set is None:
        evaluation.flag_set = FlagSet.load(
            TESTBED / "evaluator" / "flags" / "testkit-flags.json", fractional_version=fractional_version(request)
        )


@given(parsers.re(r'a (?P<kind>\w+)-flag with key "(?P<key>[^"]*)" and a fallback value "(?P<default>.*)"'))
def a_flag(evaluation: Evaluation, kind: str, key: str, default: str) -> None:
    evaluation.kind, evaluation.key, evaluation.default = kind, key, convert(default, kind)


@given(
    parsers.re(r'a context containing a key "(?P<key>[^"]*)", with type "(?P<kind>\w+)" and with value "(?P<value>.*)"')
)
def a_context_key(evaluation: Evaluation, key: str, kind: str, value: str) -> None:
    evaluation.context[key] = convert(value, kind)


@given(
    parsers.re(
        r'a context containing a nested property with outer key "(?P<outer>[^"]*)" '
        r'and inner key "(?P<inner>[^"]*)", with value "(?P<value>.*)"'
    )
)
def a_nested_context(evaluation: Evaluation, outer: str, inner: str, value: str) -> None:
    evaluation.context.setdefault(outer, {})[inner] = value


@given(parsers.re(r'a context containing a targeting key with value "(?P<value>.*)"'))
def a_targeting_key(evaluation: Evaluation, value: str) -> None:
    evaluation.context["targetingKey"] = value


@when("the flag was evaluated with details")
def evaluate(evaluation: Evaluation) -> None:
    assert evaluation.flag_set is not None
    raw = evaluation.flag_set.resolve(evaluation.key, evaluation.context, evaluation.default)
    evaluation.result = check_type(raw, _KINDS[evaluation.kind])


def _result(evaluation: Evaluation) -> Resolution:
    assert evaluation.result is not None
    return evaluation.result


@then(parsers.re(r'the resolved details value should be "(?P<value>.*)"'))
def value_is(evaluation: Evaluation, value: str) -> None:
    r = _result(evaluation)
    actual = evaluation.default if r.variant is None else r.value
    assert_value(actual, value, evaluation.kind)


@then(parsers.re(r'the reason should be "(?P<reason>.*)"'))
def reason_is(evaluation: Evaluation, reason: str) -> None:
    assert _result(evaluation).reason == reason


@then(parsers.re(r'the error-code should be "(?P<code>.*)"'))
def error_code_is(evaluation: Evaluation, code: str) -> None:
    assert (_result(evaluation).error_code or "") == code


@then("the resolved metadata should contain")
def metadata_contains(evaluation: Evaluation, datatable: list[list[str]]) -> None:
    assert_metadata(_result(evaluation).metadata, datatable)


@then("the resolved metadata is empty")
def metadata_empty(evaluation: Evaluation) -> None:
    assert dict(_result(evaluation).metadata) == {}
