"""Flag definitions in flagd's format (JSON or YAML): parsing and validation.

Every problem in a file is collected and reported together, each naming the flag and field, so an
operator fixes a bad file in one pass; any problem rejects the whole file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

MetadataValue = StrictStr | StrictBool | StrictInt | StrictFloat

ROLLWISE_KEY = "$rollwise"
"""Top-level key for rollwise's own state (schedules, kill records); flagd ignores unknown top-level keys."""

_TOP_LEVEL_KEYS = {"flags", "$evaluators", "metadata", "$schema", ROLLWISE_KEY}


class FlagValidationError(ValueError):
    """A flag document is invalid; `problems` lists every problem, one line each."""

    def __init__(self, problems: list[str], source: str = ""):
        self.problems = problems
        self.source = source
        super().__init__("\n".join(problems))


class FlagDefinition(BaseModel):
    """One flag as flagd defines it (schema 0.2.x)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    state: Literal["ENABLED", "DISABLED"]
    variants: dict[str, Any] = Field(min_length=1)
    default_variant: StrictStr | None = Field(default=None, alias="defaultVariant")
    targeting: dict[str, Any] | None = None
    metadata: dict[str, MetadataValue] = Field(default_factory=dict)
    source: str | None = None
    selector: str | None = None


class FlagSetMetadata(BaseModel):
    model_config = ConfigDict(extra="allow")

    fractional_version: Literal[1, 2, 3] | None = Field(default=None, alias="fractionalVersion")


def variant_kind(value: Any) -> str | None:
    """The OpenFeature type family of a variant value ('number' covers integer and float)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, dict | list):
        return "object"
    return None


@dataclass
class FlagDocument:
    """A validated flag file. `raw` is the document as written, kept so changes can be written back."""

    raw: dict[str, Any]
    flags: dict[str, FlagDefinition]
    evaluators: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    fractional_version: int | None = None


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc)


def parse_text(text: str, source: str = "<flags>", fmt: str | None = None) -> Any:
    """JSON or YAML text to data; syntax errors name the line and column."""
    if fmt is None:
        fmt = "yaml" if source.endswith((".yaml", ".yml")) else "json"
    if fmt == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise FlagValidationError([f"{source}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}"], source) from e
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
        raise FlagValidationError([f"{where}: invalid YAML: {getattr(e, 'problem', e)}"], source) from e


def validate_document(data: Any, source: str = "<flags>") -> FlagDocument:
    """Check a parsed document; raises FlagValidationError listing every problem."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise FlagValidationError([f"{source}: the document must be an object with a 'flags' object"], source)
    for key in data:
        if key not in _TOP_LEVEL_KEYS:
            problems.append(f"{source}: unknown top-level field {key!r} (expected one of {sorted(_TOP_LEVEL_KEYS)})")
    raw_flags = data.get("flags")
    if not isinstance(raw_flags, dict):
        problems.append(f"{source}: field 'flags' is required and must be an object of flag definitions")
        raw_flags = {}
    evaluators = data.get("$evaluators", {})
    if not isinstance(evaluators, dict):
        problems.append(f"{source}: field '$evaluators' must be an object of named rules")
        evaluators = {}
    set_metadata = data.get("metadata", {})
    fractional_version: int | None = None
    try:
        meta = FlagSetMetadata.model_validate(set_metadata if set_metadata is not None else {})
        fractional_version = meta.fractional_version
        for k, v in (set_metadata or {}).items():
            if variant_kind(v) not in ("boolean", "string", "number"):
                problems.append(f"{source}: flag-set metadata: field {k!r}: must be a string, number or boolean")
    except ValidationError as e:
        for err in e.errors():
            problems.append(f"{source}: flag-set metadata: field {_loc(err['loc']) or 'metadata'}: {err['msg']}")
    flags: dict[str, FlagDefinition] = {}
    for key, raw in raw_flags.items():
        prefix = f"{source}: flag {key!r}"
        if not key:
            problems.append(f"{source}: a flag key must not be empty")
            continue
        try:
            flag = FlagDefinition.model_validate(raw)
        except ValidationError as e:
            for err in e.errors():
                problems.append(f"{prefix}: field {_loc(err['loc']) or '(flag)'}: {err['msg']}")
            if isinstance(raw, dict) and isinstance(raw.get("variants"), dict):
                problems.extend(_check_variants(prefix, raw["variants"], raw.get("defaultVariant")))
            continue
        problems.extend(_check_variants(prefix, flag.variants, flag.default_variant))
        flags[key] = flag
    from rollwise.flags.controls import validate_section  # controls builds on this module

    problems.extend(f"{source}: {p}" for p in validate_section(data, set(raw_flags)))
    if problems:
        raise FlagValidationError(problems, source)
    return FlagDocument(
        raw=data,
        flags=flags,
        evaluators=evaluators,
        metadata=dict(set_metadata or {}),
        fractional_version=fractional_version,
    )


def _check_variants(prefix: str, variants: dict[str, Any], default_variant: Any) -> list[str]:
    problems = []
    kinds = {name: variant_kind(v) for name, v in variants.items()}
    for name, kind in kinds.items():
        if kind is None:
            problems.append(f"{prefix}: field variants.{name}: a variant value must not be null")
    distinct = {k for k in kinds.values() if k is not None}
    if len(distinct) > 1:
        listing = ", ".join(f"{n}={k}" for n, k in kinds.items())
        problems.append(f"{prefix}: field variants: all variants must have one type, found {listing}")
    if isinstance(default_variant, str) and default_variant and default_variant not in variants:
        problems.append(
            f"{prefix}: field defaultVariant: {default_variant!r} is not one of the variants {sorted(variants)}"
        )
    return problems


def load_document(path: str | Path) -> FlagDocument:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise FlagValidationError([f"{p}: cannot read: {e.strerror or e}"], str(p)) from e
    return validate_document(parse_text(text, str(p)), str(p))


def dump_document(data: dict[str, Any], path: str | Path) -> str:
    """Serialise in the file's own format (YAML stays YAML)."""
    if str(path).endswith((".yaml", ".yml")):
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
