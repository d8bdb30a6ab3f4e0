"""Write a changed flag document back into its file, touching only what changed.

Operators keep comments, ordering and layout in their flag files (they review them in pull requests), so
a kill switch or a rollout step must not reformat the file. YAML goes through ruamel.yaml's round-trip
tree: only the nodes whose values changed are replaced, every comment and flow-style list stays. JSON keeps
its key order and indentation, and short arrays of plain values stay on one line when the file wrote
them that way.
"""

from __future__ import annotations

import io
import itertools
import json
import re
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

_INLINE_SCALAR_ARRAY = re.compile(r"\[\s*(?:[^\[\]{}\n]*?,\s*)*[^\[\]{}\n]*?\]")


def render(path: str | Path, old_text: str, old: Any, new: Any) -> str:
    """The new file text: `old_text` (which parsed to `old`) edited so that it parses to `new`."""
    if str(path).endswith((".yaml", ".yml")):
        return _yaml_edit(old_text, old, new)
    return _json_text(old_text, new)


# --- YAML ------------------------------------------------------------------------------------------------


def _round_trip(text: str) -> YAML:
    rt = YAML(typ="rt")
    rt.preserve_quotes = True
    rt.width = 4096  # never re-wrap a long line
    rt.brace_single_entry_mapping_in_flow_sequence = True  # keep `[{var: email}, ...]` as written
    mapping, offset = _yaml_indents(text)
    rt.indent(mapping=mapping, sequence=offset + 2, offset=offset)
    return rt


def _yaml_indents(text: str) -> tuple[int, int]:
    """(mapping indent, dash offset) the file is written with, so untouched lines keep their columns."""
    mapping, offset = 0, None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    for parent, child in itertools.pairwise(lines):
        if not parent.rstrip().endswith(":"):
            continue
        depth = len(child) - len(child.lstrip(" ")) - (len(parent) - len(parent.lstrip(" ")))
        if child.lstrip().startswith("- "):
            offset = depth if offset is None else offset
        elif depth > 0 and not mapping:
            mapping = depth
    return mapping or 2, offset if offset is not None and offset >= 0 else 0


def _yaml_edit(old_text: str, old: Any, new: Any) -> str:
    rt = _round_trip(old_text)
    tree = rt.load(old_text)
    tree = _patch(tree, old, new)
    out = io.StringIO()
    rt.dump(tree, out)
    return out.getvalue()


def _patch(node: Any, old: Any, new: Any) -> Any:
    """`node` (round-trip) edited from `old` to `new` (plain data): unchanged parts are kept as they are."""
    if type(old) is type(new) and old == new:
        return node
    if isinstance(old, dict) and isinstance(new, dict) and isinstance(node, CommentedMap):
        keys = {_plain_key(k): k for k in node}
        for key in old:
            if key not in new and key in keys:
                del node[keys[key]]
        for key, value in new.items():
            if key in old and key in keys:
                node[keys[key]] = _patch(node[keys[key]], old[key], value)
            else:
                node[key] = _to_yaml(value)
        return node
    if (isinstance(old, list) and isinstance(new, list) and isinstance(node, CommentedSeq)
            and len(old) == len(new) == len(node)):
        for i, (before, after) in enumerate(zip(old, new, strict=True)):
            node[i] = _patch(node[i], before, after)
        return node
    replacement = _to_yaml(new)
    if isinstance(node, CommentedSeq) and isinstance(replacement, CommentedSeq) and node.fa.flow_style():
        replacement.fa.set_flow_style()  # a list written inline stays inline
    return replacement


def _plain_key(key: Any) -> Any:
    """A round-trip key as PyYAML (YAML 1.1, which the loader uses) reads it: `on` is True there."""
    if type(key) is str:  # unquoted; a quoted key is a ScalarString subclass
        return yaml.safe_load(key) if key.lower() in ("on", "off", "yes", "no", "y", "n") else key
    return key


def _to_yaml(value: Any, flow: bool = False) -> Any:
    """Plain data as round-trip nodes; strings PyYAML would read as something else (`off`, `yes`, `1.0`)
    are quoted, because the loader reads YAML 1.1 while ruamel writes 1.2. Short lists of plain values
    (`[{var: email}, "@example.com"]`, `["on", 50]`) are written inline, as flagd files usually have them."""
    if isinstance(value, dict):
        out = CommentedMap()
        for k, v in value.items():
            out[_quoted_if_ambiguous(k)] = _to_yaml(v, flow)
        if flow:
            out.fa.set_flow_style()
        return out
    if isinstance(value, list):
        inline = flow or all(_is_flat(v) for v in value)
        seq = CommentedSeq(_to_yaml(v, inline) for v in value)
        if inline:
            seq.fa.set_flow_style()
        return seq
    return _quoted_if_ambiguous(value)


def _is_flat(value: Any) -> bool:
    """A plain value, or a list/object holding only plain values (and such objects)."""
    if isinstance(value, dict):
        return all(_is_flat(v) for v in value.values())
    if isinstance(value, list):
        return all(not isinstance(v, dict | list) for v in value)
    return True


def _quoted_if_ambiguous(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        plain = yaml.safe_load(f"k: {value}") == {"k": value}
    except yaml.YAMLError:
        plain = False
    return value if plain else DoubleQuotedScalarString(value)


# --- JSON ------------------------------------------------------------------------------------------------


def _json_text(old_text: str, new: Any) -> str:
    indent = _json_indent(old_text)
    text = json.dumps(new, indent=indent, ensure_ascii=False)
    if indent is not None and _INLINE_SCALAR_ARRAY.search(_strip_strings(old_text)):
        text = _inline_scalar_arrays(text)
    return text + ("\n" if old_text.endswith("\n") or indent is not None else "")


def _json_indent(text: str) -> int | str | None:
    """The indentation the file uses (None: written on one line)."""
    for line in text.splitlines()[1:]:
        stripped = line.lstrip(" \t")
        if stripped and len(stripped) < len(line):
            lead = line[: len(line) - len(stripped)]
            return "\t" if lead.startswith("\t") else len(lead)
    return None


def _strip_strings(text: str) -> str:
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)


def _inline_scalar_arrays(text: str) -> str:
    """Put arrays of plain values (`["on", 50]`) back on one line, as hand-written flag files have them."""
    item = r'(?:"(?:\\.|[^"\\])*"|[-\w.+]+)'
    pattern = re.compile(rf"\[\n\s*((?:{item},\n\s*)*{item})\n\s*\]")

    def one_line(m: re.Match[str]) -> str:
        items = [item.strip() for item in re.split(r",\n\s*", m.group(1))]
        return "[" + ", ".join(items) + "]"

    return pattern.sub(one_line, text)
