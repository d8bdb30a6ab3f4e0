"""The flagd testbed's provider scenarios (gherkin/{targeting,evaluation,disabled,metadata}.feature) run
against the in-process RollwiseProvider through the OpenFeature SDK client.

The provider reads the testbed's merged `allFlags.json` (every `flags/*.json` except `selector-*`), or
the single raw file named by the scenario's `selector` option, as flagd's file sync does. Fractional
examples run with the bucketing version of their @fractional-vN tag (v3 otherwise).

Skipped, explicitly (see SKIPPED_TAGS): nothing needs a flagd daemon, RPC or connection handling in these
four features; only the @deprecated @no-default outline is skipped, because the testbed itself replaced
it with @no-default-variant, whose expectations contradict it (reason DEFAULT, no error, instead of
FLAG_NOT_FOUND) — no provider can pass both.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.evaluation_context import EvaluationContext
from openfeature.flag_evaluation import FlagEvaluationDetails
from pytest_bdd import given, parsers, scenarios, then, when

from rollwise.flags import RollwiseProvider
from support.flags_bdd import TESTBED, assert_metadata, assert_value, convert, fractional_version

FEATURES = ["targeting", "evaluation", "disabled", "metadata"]

SKIPPED_TAGS = {
    "deprecated": "superseded by @no-default-variant in the same feature, which contradicts it",
}


for _feature in FEATURES:
    scenarios(str(TESTBED / "gherkin" / f"{_feature}.feature"))


@dataclass
class ProviderRun:
    all_flags: Path
    options: dict[str, str] = field(default_factory=dict)
    client: OpenFeatureClient | None = None
    kind: str = "String"
    key: str = ""
    default: Any = None
    targeting_key: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    details: FlagEvaluationDetails[Any] | None = None


@pytest.fixture
def run(all_flags_file: Path, request: pytest.FixtureRequest) -> Iterator[ProviderRun]:
    for tag, why in SKIPPED_TAGS.items():
        if request.node.get_closest_marker(tag) is not None:
            pytest.skip(f"@{tag}: {why}")
    state = ProviderRun(all_flags_file)
    providers: list[RollwiseProvider] = []
    request.node.rollwise_providers = providers
    try:
        yield state
    finally:
        for provider in providers:
            provider.shutdown()


def _source(state: ProviderRun) -> Path:
    selector = state.options.get("selector")
    if not selector or selector == "flags/allFlags.json":
        return state.all_flags
    assert selector.startswith("rawflags/"), f"unknown selector {selector!r}"
    return TESTBED / "flags" / selector.removeprefix("rawflags/")


@given(parsers.re(r'an option "(?P<name>[^"]*)" of type "(?P<kind>[^"]*)" with value "(?P<value>.*)"'))
def an_option(run: ProviderRun, name: str, value: str) -> None:
    run.options[name] = value


@given(parsers.re(r"an? (?P<flavour>stable|metadata) flagd provider"))
def a_provider(run: ProviderRun, request: pytest.FixtureRequest) -> None:
    provider = RollwiseProvider(_source(run), fractional_version=fractional_version(request), watch=False)
    request.node.rollwise_providers.append(provider)
    domain = f"conformance-{uuid.uuid4().hex}"
    api.set_provider_and_wait(provider, domain)
    run.client = api.get_client(domain)


@given(parsers.re(r'a (?P<kind>\w+)-flag with key "(?P<key>[^"]*)" and a default value "(?P<default>.*)"'))
def a_flag(run: ProviderRun, kind: str, key: str, default: str) -> None:
    run.kind, run.key, run.default = kind, key, convert(default.strip(), kind)


@given(
    parsers.re(r'a context containing a key "(?P<key>[^"]*)", with type "(?P<kind>\w+)" and with value "(?P<value>.*)"')
)
def a_context_key(run: ProviderRun, key: str, kind: str, value: str) -> None:
    if key == "targetingKey" and kind == "String":
        run.targeting_key = value
    else:
        run.attributes[key] = convert(value, kind)


@given(
    parsers.re(
        r'a context containing a nested property with outer key "(?P<outer>[^"]*)" '
        r'and inner key "(?P<inner>[^"]*)", with value "(?P<value>.*)"'
    )
)
def a_nested_context(run: ProviderRun, outer: str, inner: str, value: str) -> None:
    run.attributes.setdefault(outer, {})[inner] = value


@given(parsers.re(r'a context containing a targeting key with value "(?P<value>.*)"'))
def a_targeting_key(run: ProviderRun, value: str) -> None:
    run.targeting_key = value


@when("the flag was evaluated with details")
def evaluate(run: ProviderRun) -> None:
    assert run.client is not None
    ctx = EvaluationContext(run.targeting_key, run.attributes)
    getter = {
        "Boolean": run.client.get_boolean_details,
        "String": run.client.get_string_details,
        "Integer": run.client.get_integer_details,
        "Float": run.client.get_float_details,
        "Object": run.client.get_object_details,
    }[run.kind]
    run.details = getter(run.key, run.default, ctx)


def _details(run: ProviderRun) -> FlagEvaluationDetails[Any]:
    assert run.details is not None
    return run.details


@then(parsers.re(r'the resolved details value should be "(?P<value>.*)"'))
def value_is(run: ProviderRun, value: str) -> None:
    assert_value(_details(run).value, value.strip(), run.kind)


@then(parsers.re(r'the reason should be "(?P<reason>.*)"'))
def reason_is(run: ProviderRun, reason: str) -> None:
    assert str(_details(run).reason) == reason or getattr(_details(run).reason, "value", None) == reason


@then(parsers.re(r'the error-code should be "(?P<code>.*)"'))
def error_code_is(run: ProviderRun, code: str) -> None:
    actual = _details(run).error_code
    assert (actual.value if actual is not None else "") == code


@then("the resolved metadata should contain")
def metadata_contains(run: ProviderRun, datatable: list[list[str]]) -> None:
    assert_metadata(_details(run).flag_metadata, datatable)


@then("the resolved metadata is empty")
def metadata_empty(run: ProviderRun) -> None:
    assert dict(_details(run).flag_metadata) == {}
