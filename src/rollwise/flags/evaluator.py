"""The native evaluation API: `FlagSet.load(path).resolve(key, context, default)`.

Every result that does not depend on the caller's default is built once at load time: a static flag
resolves with one dict lookup, and a targeting match returns the variant's precomputed result. Nothing is
cached per user, so memory does not grow with traffic.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from rollwise.flags.definitions import (
    FlagDefinition,
    FlagDocument,
    load_document,
    parse_text,
    validate_document,
)
from rollwise.flags.jsonlogic import STANDARD_OPERATORS, Compiler, Rule
from rollwise.flags.operators import FLAGD_OPERATORS, FRACTIONAL_VERSIONS, direct_fractional

OPERATORS = {**STANDARD_OPERATORS, **FLAGD_OPERATORS}

STATIC = "STATIC"
TARGETING_MATCH = "TARGETING_MATCH"
DEFAULT = "DEFAULT"
DISABLED = "DISABLED"
ERROR = "ERROR"

FLAG_NOT_FOUND = "FLAG_NOT_FOUND"
PARSE_ERROR = "PARSE_ERROR"
TYPE_MISMATCH = "TYPE_MISMATCH"
GENERAL = "GENERAL"

_NO_METADATA: Mapping[str, Any] = types.MappingProxyType({})
_EMPTY_CONTEXT: dict[str, Any] = {}


class Resolution(NamedTuple):
    """One evaluation. `value` is the caller's default whenever `variant` is None."""

    value: Any
    variant: str | None
    reason: str
    error_code: str | None = None
    metadata: Mapping[str, Any] = _NO_METADATA
    error_message: str | None = None


Evaluate = Callable[[dict[str, Any], Any], Resolution]


@dataclass(frozen=True)
class CompiledFlag:
    """A flag ready to evaluate; `kind` is the OpenFeature type its variants share."""

    key: str
    definition: FlagDefinition
    kind: str
    metadata: Mapping[str, Any]
    evaluate: Evaluate
    static: Resolution | None
    problems: tuple[str, ...]


def _flag_kind(variants: Mapping[str, Any]) -> str:
    values = list(variants.values())
    if all(isinstance(v, bool) for v in values):
        return "boolean"
    if all(isinstance(v, str) for v in values):
        return "string"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "integer"
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return "float"
    return "object"


def _substitute_refs(rule: Any, evaluators: Mapping[str, Any]) -> Any:
    """Replace `{"$ref": name}` with the named shared rule (one level, as flagd does)."""
    if isinstance(rule, dict):
        if len(rule) == 1 and "$ref" in rule and isinstance(rule["$ref"], str) and rule["$ref"] in evaluators:
            return evaluators[rule["$ref"]]
        return {k: _substitute_refs(v, evaluators) for k, v in rule.items()}
    if isinstance(rule, list):
        return [_substitute_refs(x, evaluators) for x in rule]
    return rule


def compile_flag(
    key: str,
    flag: FlagDefinition,
    set_metadata: Mapping[str, Any],
    evaluators: Mapping[str, Any],
    fractional_version: int,
    clock: Callable[[], float] | None = None,
) -> CompiledFlag:
    md: Mapping[str, Any] = types.MappingProxyType({**set_metadata, **flag.metadata})
    kind = _flag_kind(flag.variants)
    variants = dict(flag.variants)
    if kind == "float":
        # Serialise a float flag's whole-number variants as floats so typed clients see one type.
        variants = {n: float(v) for n, v in variants.items()}
    default_name = flag.default_variant or None

    def build(d: CompiledFlagArgs) -> CompiledFlag:
        return CompiledFlag(key, flag, kind, md, d.evaluate, d.static, tuple(d.problems))

    if flag.state == "DISABLED":

        def disabled(_ctx: dict[str, Any], default: Any) -> Resolution:
            return Resolution(default, None, DISABLED, None, md)

        return build(CompiledFlagArgs(disabled, None, []))

    default_result = Resolution(variants[default_name], default_name, DEFAULT, None, md) if default_name else None

    def no_variant(_ctx: dict[str, Any], default: Any) -> Resolution:
        return Resolution(default, None, DEFAULT, None, md)

    if not flag.targeting:
        if default_name is None:
            return build(CompiledFlagArgs(no_variant, None, []))
        static = Resolution(variants[default_name], default_name, STATIC, None, md)
        return build(CompiledFlagArgs(lambda _c, _d: static, static, []))

    compiler = Compiler(key, OPERATORS, fractional_version, clock)
    rule_json = _substitute_refs(flag.targeting, evaluators)
    rule: Rule = compiler.compile(rule_json)
    matches = {name: Resolution(v, name, TARGETING_MATCH, None, md) for name, v in variants.items()}
    bool_matches = {b: matches[str(b).lower()] for b in (True, False) if str(b).lower() in matches}

    def targeted(ctx: dict[str, Any], default: Any) -> Resolution:
        try:
            out = rule(ctx)
        except Exception as e:
            return Resolution(default, None, ERROR, PARSE_ERROR, md, f"flag {key!r}: targeting failed: {e}")
        if out.__class__ is str:
            hit = matches.get(out)
            if hit is not None:
                return hit
        elif out is None:
            return default_result if default_result is not None else Resolution(default, None, DEFAULT, None, md)
        elif out.__class__ is bool:
            hit = bool_matches.get(out)
            if hit is not None:
                return hit
        elif out.__class__ is int or out.__class__ is float:
            hit = matches.get(str(out))
            if hit is not None:
                return hit
        return Resolution(
            default,
            None,
            ERROR,
            GENERAL,
            md,
            f"flag {key!r}: targeting chose {out!r}, which is not a variant",
        )

    evaluate: Evaluate = targeted
    if list(rule_json) == ["fractional"] and isinstance(rule_json["fractional"], list):

        def outcome(variant: Any) -> Resolution | None:
            if isinstance(variant, bool):
                return bool_matches.get(variant)
            return matches.get(variant) if isinstance(variant, str) else None

        def on_null(default: Any) -> Resolution:
            return default_result if default_result is not None else Resolution(default, None, DEFAULT, None, md)

        fast = direct_fractional(rule_json["fractional"], compiler, outcome, on_null, targeted)
        if fast is not None:
            evaluate = fast
    return build(CompiledFlagArgs(evaluate, None, compiler.problems))


@dataclass
class CompiledFlagArgs:
    evaluate: Evaluate
    static: Resolution | None
    problems: list[str]


class FlagSet:
    """An immutable, compiled flag configuration. Reload = build a new FlagSet and swap the reference."""

    def __init__(
        self,
        document: FlagDocument,
        *,
        fractional_version: int | None = None,
        clock: Callable[[], float] | None = None,
        source: str = "<flags>",
    ):
        version = fractional_version or document.fractional_version or 3
        if version not in FRACTIONAL_VERSIONS:
            raise ValueError(f"fractional_version must be one of {FRACTIONAL_VERSIONS}, not {version!r}")
        self.document = document
        self.source = source
        self.fractional_version = version
        self.metadata: Mapping[str, Any] = types.MappingProxyType(dict(document.metadata))
        self.flags: dict[str, CompiledFlag] = {
            key: compile_flag(key, flag, document.metadata, document.evaluators, version, clock)
            for key, flag in document.flags.items()
        }
        self._static: dict[str, Resolution] = {k: f.static for k, f in self.flags.items() if f.static is not None}
        self._evaluate: dict[str, Evaluate] = {k: f.evaluate for k, f in self.flags.items()}

    # --- construction ---------------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        fractional_version: int | None = None,
        clock: Callable[[], float] | None = None,
    ) -> FlagSet:
        return cls(load_document(path), fractional_version=fractional_version, clock=clock, source=str(path))

    @classmethod
    def from_dict(cls, data: Any, *, fractional_version: int | None = None, source: str = "<flags>") -> FlagSet:
        return cls(validate_document(data, source), fractional_version=fractional_version, source=source)

    @classmethod
    def from_text(
        cls, text: str, *, fmt: str = "json", fractional_version: int | None = None, source: str = "<flags>"
    ) -> FlagSet:
        return cls.from_dict(parse_text(text, source, fmt), fractional_version=fractional_version, source=source)

    # --- evaluation -----------------------------------------------------------------------------------

    def resolve(self, key: str, context: dict[str, Any] | None = None, default: Any = None) -> Resolution:
        """Evaluate `key` for `context` (a plain dict; `targetingKey` is the bucketing key)."""
        hit = self._static.get(key)
        if hit is not None:
            return hit
        evaluate = self._evaluate.get(key)
        if evaluate is None:
            return Resolution(default, None, ERROR, FLAG_NOT_FOUND, _NO_METADATA, f"flag {key!r} not found")
        return evaluate(context if context is not None else _EMPTY_CONTEXT, default)

    def evaluator(self, key: str) -> Evaluate | None:
        """The compiled evaluation function of one flag, for callers that evaluate one flag in a loop."""
        return self._evaluate.get(key)

    def problems(self) -> list[str]:
        """Rule problems that load but fail when reached (unknown operator, missing `$ref`)."""
        return [f"flag {k!r}: {p}" for k, f in self.flags.items() for p in f.problems]

    def __contains__(self, key: object) -> bool:
        return key in self.flags

    def __iter__(self) -> Iterator[str]:
        return iter(self.flags)

    def __len__(self) -> int:
        return len(self.flags)


def check_type(result: Resolution, kind: str) -> Resolution:
    """Apply an OpenFeature typed call's expectations to a result (TYPE_MISMATCH, int→float)."""
    if result.variant is None:
        return result
    value = result.value
    ok: bool
    if kind == "boolean":
        ok = isinstance(value, bool)
    elif kind == "string":
        ok = isinstance(value, str)
    elif kind == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "float":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and not isinstance(value, float):
            return result._replace(value=float(value))
    else:
        ok = isinstance(value, dict | list)
    if ok:
        return result
    return Resolution(
        None,
        None,
        ERROR,
        TYPE_MISMATCH,
        result.metadata,
        f"expected a {kind} flag, but variant {result.variant!r} is {type(value).__name__}",
    )
