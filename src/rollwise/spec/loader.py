"""Load a spec from YAML and report every problem as ``FILE:LINE: field.path: message``.

PyYAML's node tree keeps each value's position, so a pydantic error location can be mapped
back to the line a user has to fix. The whole spec is rejected if any part is invalid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from rollwise.spec.models import RolloutSpec

_NAMED_PATH = re.compile(r"^([A-Za-z][\w]*(?:\.[\w]+)+): ")


@dataclass(frozen=True)
class SpecProblem:
    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.path}: {self.message}"


class SpecError(Exception):
    """An invalid spec; ``problems`` lists every one found, in file order."""

    def __init__(self, problems: list[SpecProblem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int:
    """The 1-based line of the deepest node that ``loc`` reaches in the YAML tree."""
    node = root
    line = (node.start_mark.line + 1) if node is not None else 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == part:
                    node = value_node
                    line = key_node.start_mark.line + 1
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _clean_message(error: dict[str, Any]) -> str:
    message = str(error.get("msg", "invalid"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    return message


def parse_yaml_document(text: str, file: str) -> tuple[Any, yaml.Node | None]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else _reader_line(text, exc)
        message = str(getattr(exc, "problem", None) or exc).splitlines()[0]
        raise SpecError([SpecProblem(file, line, "(yaml)", message)]) from None
    except RecursionError:
        raise SpecError([SpecProblem(file, 1, "(yaml)", "nested too deeply to be a rollout spec")]) from None
    return data, root


def _reader_line(text: str, exc: yaml.YAMLError) -> int:
    """The line of a reader error (a NUL or other control character), which carries only a position."""
    position = getattr(exc, "position", None)
    return text.count("\n", 0, position) + 1 if isinstance(position, int) else 1


def problems_from_validation(exc: ValidationError, root: yaml.Node | None, file: str) -> list[SpecProblem]:
    problems = []
    for error in exc.errors():
        loc = tuple(part for part in error["loc"] if not (isinstance(part, str) and part.startswith("function-")))
        message = _clean_message(dict(error))
        named = _NAMED_PATH.match(message)
        if named:  # a cross-field rule names the field it is about: "versions.stable: …"
            loc = (*loc, *(int(p) if p.isdigit() else p for p in named.group(1).split(".")))
            message = message[named.end():]
        path = ".".join(str(p) for p in loc) or "(document)"
        problems.append(SpecProblem(file, _line_of(root, loc), path, message))
    problems.sort(key=lambda p: (p.line, p.path))
    return problems


def load_spec_text(text: str, file: str = "<spec>") -> RolloutSpec:
    data, root = parse_yaml_document(text, file)
    if not isinstance(data, dict):
        raise SpecError([SpecProblem(file, 1, "(document)", "a rollout spec must be a YAML mapping")])
    try:
        return RolloutSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(problems_from_validation(exc, root, file)) from None
    except RecursionError:
        raise SpecError([SpecProblem(file, 1, "(document)", "nested too deeply to be a rollout spec")]) from None


MAX_SPEC_BYTES = 1024 * 1024
"""A rollout spec is a page of YAML; anything past this is refused before it is parsed (PyYAML is
pure Python: a 5 MB file takes tens of seconds and hundreds of MB to compose)."""


def read_spec_text(path: Path) -> str:
    """The file as UTF-8 text, or a ``SpecError`` naming the file (and line) that cannot be read."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise SpecError([SpecProblem(str(path), 0, "(file)", exc.strerror or str(exc))]) from None
    if len(raw) > MAX_SPEC_BYTES:
        message = f"larger than {MAX_SPEC_BYTES // 1024} KiB; a rollout spec is a short YAML file"
        raise SpecError([SpecProblem(str(path), 0, "(file)", message)])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        message = f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); save the file as UTF-8"
        raise SpecError([SpecProblem(str(path), line, "(file)", message)]) from None


def load_spec(path: str | Path) -> RolloutSpec:
    path = Path(path)
    return load_spec_text(read_spec_text(path), str(path))
