"""Flag definitions in flagd's format (JSON or YAML): parsing and validation.

Every problem in a file is collected and reported together, each naming the flag and field, so an
operator fixes a bad file in one pass; any problem rejects the whole file.
"""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass, field
from json.decoder import scanstring as _scanstring  # type: ignore[attr-defined]
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
    rule_problems: list[str] = field(default_factory=list)
    """Rule problems (`FILE:LINE: path: message`): the file loads, but these rules fail when reached."""
    rule_keys: frozenset[str] = frozenset()
    """The same problems without line numbers, to tell a new problem from one the served file already had."""


Loc = tuple[Any, ...]


def _loc(loc: tuple[Any, ...]) -> str:
    from rollwise.flags.rules import format_path

    return format_path(loc)


def parse_text(text: str, source: str = "<flags>", fmt: str | None = None) -> Any:
    """JSON or YAML text to data; syntax errors name the line and column."""
    fmt = fmt or _format_of(source)
    if fmt == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise FlagValidationError([f"{source}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}"], source) from e
        except RecursionError as e:
            raise FlagValidationError([f"{source}: invalid JSON: nested too deeply to read"], source) from e
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
        raise FlagValidationError([f"{where}: invalid YAML: {getattr(e, 'problem', e)}"], source) from e
    except RecursionError as e:
        raise FlagValidationError([f"{source}: invalid YAML: nested too deeply to read"], source) from e


def _format_of(source: str) -> str:
    return "yaml" if source.endswith((".yaml", ".yml")) else "json"


class _Problems:
    """Problems found in one document, each `FILE:LINE: path: message` once the file's text is known."""

    def __init__(self, source: str, text: str | None, fmt: str | None):
        self.source = source
        self.items: list[tuple[Loc, str]] = []
        self._lines = _LineIndex(text, fmt or _format_of(source)) if text is not None else None

    def add(self, loc: Loc, message: str) -> None:
        self.items.append((loc, message))

    def format(self, loc: Loc, message: str) -> str:
        path = _loc(loc) or "(document)"
        if self._lines is None:
            return f"{self.source}: {path}: {message}"
        return f"{self.source}:{self._lines.line_of(loc)}: {path}: {message}"

    def lines(self) -> list[str]:
        return [self.format(loc, msg) for loc, msg in self.items]


class _LineIndex:
    """Maps a JSON path to the line it is written on, for JSON (a small position-keeping scan) and YAML
    (PyYAML's node tree); built only when a problem is reported."""

    def __init__(self, text: str, fmt: str):
        self.text = text
        self.fmt = fmt
        self._map: dict[Loc, int] | None = None

    def line_of(self, loc: Loc) -> int:
        if self._map is None:
            try:
                self._map = _json_lines(self.text) if self.fmt == "json" else _yaml_lines(self.text)
            except (ValueError, IndexError, RecursionError, yaml.YAMLError):
                self._map = {}
        for end in range(len(loc), -1, -1):
            line = self._map.get(tuple(str(p) for p in loc[:end]))
            if line is not None:
                return line
        return 1


def _json_lines(text: str) -> dict[Loc, int]:
    starts = [i for i, ch in enumerate(text) if ch == "\n"]
    lines: dict[Loc, int] = {}
    decoder = json.JSONDecoder()
    ws = re.compile(r"[ \t\n\r]*")

    def line_at(pos: int) -> int:
        return bisect.bisect_left(starts, pos) + 1

    def value(pos: int, loc: Loc) -> int:
        pos = ws.match(text, pos).end()  # type: ignore[union-attr]
        lines.setdefault(loc, line_at(pos))
        opener = text[pos]
        if opener not in "{[":
            return int(decoder.raw_decode(text, pos)[1])
        closer = "}" if opener == "{" else "]"
        pos = ws.match(text, pos + 1).end()  # type: ignore[union-attr]
        index = 0
        while text[pos] != closer:
            if opener == "{":
                key_line = line_at(pos)
                key, pos = _scanstring(text, pos + 1)
                child: Loc = (*loc, key)
                lines[child] = key_line
                pos = ws.match(text, pos).end() + 1  # type: ignore[union-attr]  # past ':'
            else:
                child = (*loc, str(index))
                index += 1
            pos = ws.match(text, value(pos, child)).end()  # type: ignore[union-attr]
            if text[pos] == ",":
                pos = ws.match(text, pos + 1).end()  # type: ignore[union-attr]
        return pos + 1

    value(0, ())
    return lines


def _yaml_lines(text: str) -> dict[Loc, int]:
    lines: dict[Loc, int] = {}

    def walk(node: yaml.Node, loc: Loc) -> None:
        lines.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                child = (*loc, str(key_node.value))
                lines[child] = key_node.start_mark.line + 1
                walk(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*loc, str(i)))

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is not None:
        walk(root, ())
    return lines


def validate_document(
    data: Any, source: str = "<flags>", text: str | None = None, fmt: str | None = None
) -> FlagDocument:
    """Check a parsed document; raises FlagValidationError listing every problem.

    With the file's `text`, each problem names its line. Rule problems (see `rules.check_rules`) do not
    reject the document, except a rule nested too deeply to compile; they are kept in `rule_problems`.
    """
    problems = _Problems(source, text, fmt)
    if not isinstance(data, dict):
        problems.add((), "the document must be an object with a 'flags' object")
        raise FlagValidationError(problems.lines(), source)
    for key in data:
        if key not in _TOP_LEVEL_KEYS:
            problems.add((key,), f"unknown top-level field (expected one of {sorted(_TOP_LEVEL_KEYS)})")
    raw_flags = data.get("flags")
    if not isinstance(raw_flags, dict):
        problems.add(("flags",), "field 'flags' is required and must be an object of flag definitions")
        raw_flags = {}
    evaluators = data.get("$evaluators", {})
    if not isinstance(evaluators, dict):
        problems.add(("$evaluators",), "must be an object of named rules")
        evaluators = {}
    set_metadata = data.get("metadata", {})
    fractional_version: int | None = None
    try:
        meta = FlagSetMetadata.model_validate(set_metadata if set_metadata is not None else {})
        fractional_version = meta.fractional_version
        for k, v in (set_metadata or {}).items():
            if variant_kind(v) not in ("boolean", "string", "number"):
                problems.add(("metadata", k), "flag-set metadata must be a string, number or boolean")
    except ValidationError as e:
        for err in e.errors():
            problems.add(("metadata", *err["loc"]), f"flag-set metadata: {err['msg']}")
    flags = _validate_flags(raw_flags, problems)
    from rollwise.flags.controls import validate_section  # controls builds on this module
    from rollwise.flags.rules import check_rules

    for loc, message in validate_section(data, set(raw_flags)):
        problems.add(loc, message)
    rule_problems = check_rules(data)
    for p in rule_problems:
        if p.fatal:
            problems.add(p.loc, p.message)
    if problems.items:
        raise FlagValidationError(problems.lines(), source)
    return FlagDocument(
        raw=data,
        flags=flags,
        evaluators=evaluators,
        metadata=dict(set_metadata or {}),
        fractional_version=fractional_version,
        rule_problems=[problems.format(p.loc, p.message) for p in rule_problems],
        rule_keys=frozenset(f"{p.path}: {p.message}" for p in rule_problems),
    )


def _validate_flags(raw_flags: dict[str, Any], problems: _Problems) -> dict[str, FlagDefinition]:
    flags: dict[str, FlagDefinition] = {}
    for key, raw in raw_flags.items():
        loc: Loc = ("flags", key)
        if not key:
            problems.add(loc, "a flag key must not be empty")
            continue
        try:
            flag = FlagDefinition.model_validate(raw)
        except ValidationError as e:
            for err in e.errors():
                problems.add((*loc, *err["loc"]), err["msg"])
            if isinstance(raw, dict) and isinstance(raw.get("variants"), dict):
                _check_variants(loc, raw["variants"], raw.get("defaultVariant"), problems)
            continue
        _check_variants(loc, flag.variants, flag.default_variant, problems)
        flags[key] = flag
    return flags


def _check_variants(loc: Loc, variants: dict[str, Any], default_variant: Any, problems: _Problems) -> None:
    kinds = {name: variant_kind(v) for name, v in variants.items()}
    for name, kind in kinds.items():
        if kind is None:
            problems.add((*loc, "variants", name), "a variant value must not be null")
    distinct = {k for k in kinds.values() if k is not None}
    if len(distinct) > 1:
        listing = ", ".join(f"{n}={k}" for n, k in kinds.items())
        problems.add((*loc, "variants"), f"all variants must have one type, found {listing}")
    if isinstance(default_variant, str) and default_variant and default_variant not in variants:
        problems.add((*loc, "defaultVariant"), f"{default_variant!r} is not one of the variants {sorted(variants)}")


def read_text(path: str | Path) -> str:
    """A flag file's text; unreadable, binary and non-UTF-8 files are one clear problem naming the file."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise FlagValidationError([f"{p}: cannot read: {e.strerror or e}"], str(p)) from e
    if b"\x00" in data:
        raise FlagValidationError([f"{p}: not a text file (contains NUL bytes); expected flagd JSON or YAML"], str(p))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise FlagValidationError(
            [f"{p}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); save the file as UTF-8"],
            str(p),
        ) from e


def load_document(path: str | Path) -> FlagDocument:
    text = read_text(path)
    return validate_document(parse_text(text, str(path)), str(path), text)


def dump_document(data: dict[str, Any], path: str | Path) -> str:
    """Serialise in the file's own format (YAML stays YAML)."""
    if str(path).endswith((".yaml", ".yml")):
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
