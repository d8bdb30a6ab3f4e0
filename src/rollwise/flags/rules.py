"""Static checks on targeting rules: problems that would make a flag fail whenever its rule is reached.

The compiler accepts any JSON (flagd answers PARSE_ERROR or null at evaluation time), so a typo in an
operator, a `$ref` to nothing, a `fractional` whose buckets name no variant or carry no weight, or an
operator given the wrong number of arguments all load and then quietly serve the caller's default. These
checks find them before the file is served; each names the JSON path of the offending node.

Nesting depth is checked here too and is the one *fatal* rule problem: the compiler recurses once per
level, so a rule nested hundreds of levels deep would raise RecursionError on every load.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_RULE_DEPTH = 100
"""How deeply a targeting rule or shared evaluator may nest (objects and arrays both count)."""

MAX_TOTAL_WEIGHT = 2_147_483_647

Loc = tuple[str | int, ...]

# (fewest, most) arguments; None = any number. jsonlogic.com semantics, flagd's custom operators as flagd.
ARITY: dict[str, tuple[int, int | None]] = {
    "var": (0, 2),
    "missing": (0, None),
    "missing_some": (2, 2),
    "if": (2, None),
    "?:": (3, 3),
    "and": (1, None),
    "or": (1, None),
    "!": (1, 1),
    "!!": (1, 1),
    "==": (2, 2),
    "!=": (2, 2),
    "===": (2, 2),
    "!==": (2, 2),
    "<": (2, 3),
    "<=": (2, 3),
    ">": (2, 2),
    ">=": (2, 2),
    "+": (1, None),
    "-": (1, 2),
    "*": (1, None),
    "/": (2, 2),
    "%": (2, 2),
    "min": (1, None),
    "max": (1, None),
    "cat": (1, None),
    "substr": (2, 3),
    "in": (2, 2),
    "merge": (0, None),
    "map": (2, 2),
    "filter": (2, 2),
    "all": (2, 2),
    "some": (2, 2),
    "none": (2, 2),
    "reduce": (2, 3),
    "log": (1, 1),
    "fractional": (1, None),
    "sem_ver": (3, 3),
    "starts_with": (2, 2),
    "ends_with": (2, 2),
}

SEM_VER_OPS = ("=", "!=", "<", "<=", ">", ">=", "^", "~")


@dataclass(frozen=True)
class RuleProblem:
    """One problem in a rule; `loc` is the JSON path from the document root."""

    loc: Loc
    message: str
    fatal: bool = False

    @property
    def path(self) -> str:
        return format_path(self.loc)


def format_path(loc: Loc) -> str:
    """Dotted JSON path; a very long one keeps its start and end, so a 300-level path stays one short line."""
    parts = [str(p) for p in loc]
    if len(parts) > 14:
        parts = [*parts[:6], f"…({len(parts) - 12} more)…", *parts[-6:]]
    return ".".join(parts)


def _is_op(node: Any) -> bool:
    return isinstance(node, dict) and len(node) == 1


def _refs(node: Any, depth: int = 0) -> Iterator[str]:
    """Every `$ref` name inside `node` (bounded by the depth limit; deeper nodes are reported elsewhere)."""
    if depth > MAX_RULE_DEPTH:
        return
    if isinstance(node, dict):
        if len(node) == 1 and isinstance(node.get("$ref"), str):
            yield node["$ref"]
            return
        for v in node.values():
            yield from _refs(v, depth + 1)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v, depth + 1)


def _cycle_from(start: str, graph: Mapping[str, list[str]]) -> list[str] | None:
    """The first `$ref` cycle reachable from `start`, as a list of names ending where it began."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        name, trail = stack.pop()
        for nxt in graph.get(name, []):
            if nxt == start:
                return [*trail, nxt]
            if nxt in graph and nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*trail, nxt]))
    return None


@dataclass
class _Checker:
    evaluators: Mapping[str, Any]
    graph: Mapping[str, list[str]]
    in_evaluator: str | None = None
    variants: frozenset[str] | None = None
    problems: list[RuleProblem] = field(default_factory=list)
    too_deep: bool = False

    def add(self, loc: Loc, message: str, fatal: bool = False) -> None:
        self.problems.append(RuleProblem(loc, message, fatal))

    def walk(self, node: Any, loc: Loc, depth: int, result: bool) -> None:
        """`result`: this node's value is the flag's answer, so a fractional here must name variants."""
        if depth > MAX_RULE_DEPTH:
            self._too_deep(loc)
            return
        if isinstance(node, list):
            for i, item in enumerate(node):
                self.walk(item, (*loc, i), depth + 1, False)
            return
        if not isinstance(node, dict):
            return
        if len(node) != 1:  # a literal object: not evaluated, but its depth still counts
            for k, v in node.items():
                self._depth_only(v, (*loc, k), depth + 1)
            return
        ((op, raw_args),) = node.items()
        if op == "$ref":
            self._check_ref(raw_args, loc)
            return
        args = raw_args if isinstance(raw_args, list) else [raw_args]
        arg_loc = (*loc, op)
        if op not in ARITY:
            self.add(arg_loc, f"unknown operator {op!r}")
        else:
            self._check_arity(op, args, arg_loc)
        if op == "fractional":
            self._check_fractional(args, arg_loc, result)
        if op == "sem_ver" and len(args) == 3 and isinstance(args[1], str) and args[1] not in SEM_VER_OPS:
            self.add((*arg_loc, 1), f"sem_ver operator {args[1]!r} is not one of {' '.join(SEM_VER_OPS)}")
        for i, arg in enumerate(args):
            sub = (*arg_loc, i) if isinstance(raw_args, list) else arg_loc
            self.walk(arg, sub, depth + 1, result and op in ("if", "?:") and _is_branch(i, len(args)))

    def _too_deep(self, loc: Loc) -> None:
        if not self.too_deep:  # once per rule: the first branch that goes too deep names the place
            self.too_deep = True
            self.add(loc, f"rule nested more than {MAX_RULE_DEPTH} levels deep (the limit is {MAX_RULE_DEPTH})", True)

    def _depth_only(self, node: Any, loc: Loc, depth: int) -> None:
        if depth > MAX_RULE_DEPTH:
            self._too_deep(loc)
            return
        children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for k, v in children:
            self._depth_only(v, (*loc, k), depth + 1)

    def _check_ref(self, name: Any, loc: Loc) -> None:
        ref_loc = (*loc, "$ref")
        if not isinstance(name, str):
            self.add(ref_loc, f"$ref must name an evaluator, not {name!r}")
        elif name not in self.evaluators:
            known = ", ".join(sorted(self.evaluators)) or "none defined"
            self.add(ref_loc, f"unknown evaluator $ref {name!r} (evaluators: {known})")
        elif self.in_evaluator is not None:
            cycle = _cycle_from(self.in_evaluator, self.graph)
            if cycle is not None and name in cycle:
                self.add(ref_loc, f"$ref cycle: {' -> '.join(cycle)}")
            else:
                self.add(ref_loc, f"$ref {name!r} inside evaluator {self.in_evaluator!r} is never expanded "
                                  "(flagd substitutes one level)")

    def _check_arity(self, op: str, args: list[Any], loc: Loc) -> None:
        low, high = ARITY[op]
        n = len(args)
        if low <= n and (high is None or n <= high):
            return
        if high is None:
            want = f"at least {low}"
        elif low == high:
            want = f"exactly {low}"
        else:
            want = f"{low} to {high}"
        self.add(loc, f"{op!r} takes {want} argument{'s' if (high or low) != 1 else ''}, got {n}")

    def _check_fractional(self, args: list[Any], loc: Loc, result: bool) -> None:
        if not args:
            return
        start = 0 if isinstance(args[0], list) else 1
        first = args[0]
        if start == 0 and len(args) > 1 and len(first) == 1 and _is_op(first[0]):
            self.add((*loc, 0), "a bucket with a computed variant and no weight: a bucketing seed is written "
                                "without brackets, e.g. fractional: [{cat: [...]}, [variant, weight], ...]")
        buckets = args[start:]
        if not buckets:
            self.add(loc, "fractional needs at least one bucket [variant, weight]")
            return
        total = 0
        literal_weights = True
        for i, bucket in enumerate(buckets, start):
            where = (*loc, i)
            if _is_op(bucket):
                literal_weights = False
                continue
            if not isinstance(bucket, list) or not 1 <= len(bucket) <= 2:
                self.add(where, "a fractional bucket must be [variant] or [variant, weight]")
                literal_weights = False
                continue
            if result:
                self._check_bucket_variant(bucket[0], (*where, 0))
            weight = bucket[1] if len(bucket) == 2 else 1
            ok = self._check_weight(weight, (*where, 1))
            if ok is None:
                literal_weights = False
            else:
                total += ok
        if literal_weights and total == 0:
            self.add(loc, "every fractional weight is zero: no bucket can ever be chosen")
        elif literal_weights and total > MAX_TOTAL_WEIGHT:
            self.add(loc, f"fractional weights add up to {total}, more than {MAX_TOTAL_WEIGHT}")

    def _check_bucket_variant(self, variant: Any, loc: Loc) -> None:
        if self.variants is None or _is_op(variant):
            return
        name = str(variant).lower() if isinstance(variant, bool) else variant
        if not isinstance(name, str) or name not in self.variants:
            known = ", ".join(sorted(self.variants))
            self.add(loc, f"fractional bucket names {variant!r}, which is not a variant of this flag ({known})")

    def _check_weight(self, weight: Any, loc: Loc) -> int | None:
        """The weight as an int, or None (a problem was reported, or the weight is computed)."""
        if _is_op(weight):
            return None
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            self.add(loc, f"fractional weight must be a whole number, not {weight!r}")
            return None
        if isinstance(weight, float) and not math.isfinite(weight):
            self.add(loc, f"fractional weight must be finite, not {weight!r}")
            return None
        if weight < 0:
            self.add(loc, f"fractional weight must not be negative, got {weight!r}")
            return None
        if isinstance(weight, float) and not weight.is_integer():
            self.add(loc, f"fractional weight must be a whole number, not {weight!r}")
            return None
        return int(weight)


def _is_branch(i: int, n: int) -> bool:
    """In `if [c1, r1, c2, r2, ..., else]`, the result positions: odd indices and a trailing else."""
    return i % 2 == 1 or (i == n - 1 and n % 2 == 1)


def check_rules(document: Mapping[str, Any]) -> list[RuleProblem]:
    """Every rule problem in a flag document's targeting and `$evaluators`, in document order."""
    raw_evaluators = document.get("$evaluators")
    evaluators: Mapping[str, Any] = raw_evaluators if isinstance(raw_evaluators, dict) else {}
    graph = {name: list(_refs(body)) for name, body in evaluators.items()}
    problems: list[RuleProblem] = []
    for name, body in evaluators.items():
        checker = _Checker(evaluators, graph, in_evaluator=name)
        checker.walk(body, ("$evaluators", name), 1, False)
        problems.extend(checker.problems)
    flags = document.get("flags")
    for key, flag in (flags if isinstance(flags, dict) else {}).items():
        if not isinstance(flag, dict) or not flag.get("targeting"):
            continue
        variants = flag.get("variants")
        names = frozenset(str(v) for v in variants) if isinstance(variants, dict) else None
        checker = _Checker(evaluators, graph, variants=names)
        checker.walk(flag["targeting"], ("flags", key, "targeting"), 1, True)
        problems.extend(checker.problems)
    return problems
