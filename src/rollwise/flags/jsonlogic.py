"""A JsonLogic compiler: a rule becomes a tree of Python closures once, when the configuration changes.

Interpreting the JSON tree on every evaluation costs a dict walk and an operator lookup per node per call;
compiling hoists all of that to load time, so the hot path is only closure calls on the caller's context.
Semantics follow jsonlogic.com (JavaScript-flavoured truthiness and loose equality), which is what flagd
rules are written against.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Rule = Callable[[Any], Any]
"""A compiled rule: takes the evaluation data (usually the context dict) and returns a JSON value."""

OperatorBuilder = Callable[[list[Any], "Compiler"], Rule]
"""Builds the closure for one operator from its raw (uncompiled) arguments."""


class RuleError(Exception):
    """A rule cannot be evaluated (unknown operator, missing `$ref`): flagd reports PARSE_ERROR."""


@dataclass
class Compiler:
    """Compiles the targeting of one flag; knows the flag key so `$flagd.flagKey` becomes a constant."""

    flag_key: str
    operators: dict[str, OperatorBuilder]
    fractional_version: int = 3
    clock: Callable[[], float] | None = None
    problems: list[str] = field(default_factory=list)
    """Rule problems found while compiling (unknown operators, missing refs); evaluation reports them."""

    def compile(self, rule: Any) -> Rule:
        if isinstance(rule, dict):
            if len(rule) != 1:
                value = rule
                return lambda _d: value
            ((op, raw_args),) = rule.items()
            builder = self.operators.get(op)
            if builder is None:
                return self._unknown(op, raw_args)
            args = raw_args if isinstance(raw_args, list) else [raw_args]
            return builder(args, self)
        if isinstance(rule, list):
            if is_literal(rule):
                value_list = rule
                return lambda _d: value_list
            parts = [self.compile(item) for item in rule]
            return lambda d: [p(d) for p in parts]
        value = rule
        return lambda _d: value

    def compile_all(self, raw_args: list[Any]) -> list[Rule]:
        return [self.compile(a) for a in raw_args]

    def _unknown(self, op: str, raw_args: Any) -> Rule:
        message = f"unknown evaluator $ref {raw_args!r}" if op == "$ref" else f"unknown operator {op!r}"
        self.problems.append(message)

        def fail(_d: Any) -> Any:
            raise RuleError(message)

        return fail


def is_literal(raw: Any) -> bool:
    """True when `raw` contains no operator, so it can be evaluated once at compile time."""
    if isinstance(raw, dict):
        return len(raw) != 1
    if isinstance(raw, list):
        return all(is_literal(x) for x in raw)
    return True


# --- JavaScript-flavoured value semantics -------------------------------------------------------------


def truthy(v: Any) -> bool:
    """JsonLogic truthiness: like Python's except that every object (even `{}`) is true and NaN is false."""
    if v.__class__ is dict:
        return True
    if v.__class__ is float and v != v:
        return False
    return bool(v)


def to_number(v: Any) -> float | int:
    """JavaScript `Number(v)`; NaN when there is no sensible number."""
    cls = v.__class__
    if cls is int or cls is float:
        return v  # type: ignore[no-any-return]
    if cls is bool:
        return int(v)
    if v is None:
        return 0
    if cls is str:
        s = v.strip()
        if not s:
            return 0
        try:
            return int(s)
        except ValueError:
            try:
                return float(s)
            except ValueError:
                return math.nan
    if cls is list:
        if not v:
            return 0
        if len(v) == 1:
            return to_number(v[0])
    return math.nan


def js_str(v: Any) -> str:
    """JavaScript `String(v)`, used by `cat` and `in`."""
    cls = v.__class__
    if cls is str:
        return v  # type: ignore[no-any-return]
    if cls is bool:
        return "true" if v else "false"
    if v is None:
        return "null"
    if cls is float:
        if v.is_integer():
            return str(int(v))
        if v != v:
            return "NaN"
        return repr(v)
    if cls is list:
        return ",".join("" if x is None else js_str(x) for x in v)
    if cls is dict:
        return "[object Object]"
    return str(v)


def _is_num(v: Any) -> bool:
    cls = v.__class__
    return cls is int or cls is float


def loose_eq(a: Any, b: Any) -> bool:
    """JavaScript `==` for JSON values."""
    if a is None or b is None:
        return a is None and b is None
    ca, cb = a.__class__, b.__class__
    if ca is cb:
        return a == b  # type: ignore[no-any-return]
    if _is_num(a) and _is_num(b):
        return a == b  # type: ignore[no-any-return]
    if ca is list or ca is dict or cb is list or cb is dict:
        if (ca is list or ca is dict) and (cb is list or cb is dict):
            return False  # distinct objects are never equal in JS
        prim, obj = (b, a) if (ca is list or ca is dict) else (a, b)
        return loose_eq(prim, js_str(obj))
    return to_number(a) == to_number(b)


def strict_eq(a: Any, b: Any) -> bool:
    if _is_num(a) and _is_num(b):
        return a == b  # type: ignore[no-any-return]
    return a.__class__ is b.__class__ and a == b  # type: ignore[no-any-return]


def less(a: Any, b: Any) -> bool:
    """JavaScript `<`: strings compare as strings, everything else as numbers."""
    if _is_num(a) and _is_num(b):
        return a < b  # type: ignore[no-any-return]
    if a.__class__ is str and b.__class__ is str:
        return a < b  # type: ignore[no-any-return]
    x, y = to_number(a), to_number(b)
    return x < y


def less_eq(a: Any, b: Any) -> bool:
    if _is_num(a) and _is_num(b):
        return a <= b  # type: ignore[no-any-return]
    if a.__class__ is str and b.__class__ is str:
        return a <= b  # type: ignore[no-any-return]
    x, y = to_number(a), to_number(b)
    return x <= y


# --- data access ----------------------------------------------------------------------------------------


def lookup(data: Any, path: Any) -> Any:
    """Walk a dotted path (or an index) into dicts and lists; None when any step is missing."""
    if path is None or path == "" or path == []:
        return data
    parts = str(path if path.__class__ is not float or not path.is_integer() else int(path)).split(".")
    for part in parts:
        if data is None:
            return None
        if data.__class__ is dict:
            data = data.get(part)
        elif data.__class__ is list:
            try:
                data = data[int(part)]
            except (ValueError, IndexError):
                return None
        else:
            return None
    return data


def _flagd_lookup(compiler: Compiler, path: str) -> Rule | None:
    """`$flagd.*` is injected by the evaluator; resolving it at compile time avoids copying the context."""
    if path != "$flagd" and not path.startswith("$flagd."):
        return None
    key = compiler.flag_key
    clock = compiler.clock

    def now() -> int:
        import time

        return int(clock() if clock is not None else time.time())

    if path == "$flagd.flagKey":
        return lambda _d: key
    if path == "$flagd.timestamp":
        return lambda _d: now()
    if path == "$flagd":
        return lambda _d: {"flagKey": key, "timestamp": now()}
    return lambda _d: None


def _build_var(args: list[Any], c: Compiler) -> Rule:
    if not args:
        return lambda d: d
    raw_path = args[0]
    default_rule = c.compile(args[1]) if len(args) > 1 else None
    if not is_literal(raw_path):
        path_rule = c.compile(raw_path)

        def dynamic(d: Any) -> Any:
            path = path_rule(d)
            special = _flagd_lookup(c, path) if isinstance(path, str) else None
            v = special(d) if special is not None else lookup(d, path)
            if v is None and default_rule is not None:
                return default_rule(d)
            return v

        return dynamic
    if isinstance(raw_path, str):
        special = _flagd_lookup(c, raw_path)
        if special is not None:
            return special
    if raw_path is None or raw_path == "" or raw_path == []:
        return lambda d: d
    if isinstance(raw_path, str) and "." not in raw_path and default_rule is None:
        key = raw_path

        def plain(d: Any) -> Any:
            try:
                return d.get(key)
            except AttributeError:
                return lookup(d, key)

        return plain
    path = raw_path

    def nested(d: Any) -> Any:
        v = lookup(d, path)
        if v is None and default_rule is not None:
            return default_rule(d)
        return v

    return nested


def _build_missing(args: list[Any], c: Compiler) -> Rule:
    parts = c.compile_all(args)

    def missing(d: Any) -> Any:
        keys: list[Any] = []
        for p in parts:
            v = p(d)
            keys.extend(v if isinstance(v, list) else [v])
        return [k for k in keys if lookup(d, k) in (None, "")]

    return missing


def _build_missing_some(args: list[Any], c: Compiler) -> Rule:
    need_rule, keys_rule = c.compile(args[0]), c.compile(args[1] if len(args) > 1 else [])

    def missing_some(d: Any) -> Any:
        need, keys = need_rule(d), keys_rule(d)
        missing = [k for k in keys if lookup(d, k) in (None, "")]
        return [] if len(keys) - len(missing) >= to_number(need) else missing

    return missing_some


# --- logic ------------------------------------------------------------------------------------------------


def _build_if(args: list[Any], c: Compiler) -> Rule:
    parts = c.compile_all(args)
    if not parts:
        return lambda _d: None
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        cond, then = parts

        def if2(d: Any) -> Any:
            return then(d) if truthy(cond(d)) else None

        return if2
    if len(parts) == 3:
        cond, then, other = parts

        def if3(d: Any) -> Any:
            c = cond(d)
            if c is True or (c is not False and c is not None and truthy(c)):
                return then(d)
            return other(d)

        return if3
    pairs = [(parts[i], parts[i + 1]) for i in range(0, len(parts) - 1, 2)]
    fallback = parts[-1] if len(parts) % 2 else None

    def if_chain(d: Any) -> Any:
        for cond, then in pairs:
            if truthy(cond(d)):
                return then(d)
        return fallback(d) if fallback is not None else None

    return if_chain


def _build_and(args: list[Any], c: Compiler) -> Rule:
    parts = c.compile_all(args)

    def and_(d: Any) -> Any:
        v: Any = None
        for p in parts:
            v = p(d)
            if not truthy(v):
                return v
        return v

    return and_


def _build_or(args: list[Any], c: Compiler) -> Rule:
    parts = c.compile_all(args)

    def or_(d: Any) -> Any:
        v: Any = None
        for p in parts:
            v = p(d)
            if truthy(v):
                return v
        return v

    return or_


def _build_not(args: list[Any], c: Compiler) -> Rule:
    arg = c.compile(args[0]) if args else (lambda _d: None)
    return lambda d: not truthy(arg(d))


def _build_truthy(args: list[Any], c: Compiler) -> Rule:
    arg = c.compile(args[0]) if args else (lambda _d: None)
    return lambda d: truthy(arg(d))


def _eq_const(other: Rule, const: str, negate: bool) -> Rule:
    """`==` against a constant string, the commonest targeting shape: compare directly when both are str."""
    if negate:

        def ne_const(d: Any) -> bool:
            v = other(d)
            return not (v == const if v.__class__ is str else loose_eq(v, const))

        return ne_const

    def eq_const(d: Any) -> bool:
        v = other(d)
        return v == const if v.__class__ is str else loose_eq(v, const)

    return eq_const


def _binary(test: Callable[[Any, Any], bool], negate: bool = False) -> OperatorBuilder:
    def build(args: list[Any], c: Compiler) -> Rule:
        a, b = (c.compile_all(args) + [lambda _d: None] * 2)[:2]
        if test is loose_eq and len(args) == 2:
            if isinstance(args[1], str):
                return _eq_const(a, args[1], negate)
            if isinstance(args[0], str):
                return _eq_const(b, args[0], negate)
        if negate:
            return lambda d: not test(a(d), b(d))
        return lambda d: test(a(d), b(d))

    return build


def _comparison(test: Callable[[Any, Any], bool]) -> OperatorBuilder:
    def build(args: list[Any], c: Compiler) -> Rule:
        parts = c.compile_all(args)
        if len(parts) == 2:
            a, b = parts

            def cmp2(d: Any) -> bool:
                return test(a(d), b(d))

            return cmp2
        if len(parts) == 3:
            a, b, m = parts

            def between(d: Any) -> bool:
                x, y, z = a(d), b(d), m(d)
                return test(x, y) and test(y, z)

            return between
        return lambda _d: False

    return build


# --- numbers -----------------------------------------------------------------------------------------------


def _build_arith(name: str) -> OperatorBuilder:
    def build(args: list[Any], c: Compiler) -> Rule:
        parts = c.compile_all(args)

        def plus(d: Any) -> Any:
            return sum(to_number(p(d)) for p in parts)

        def times(d: Any) -> Any:
            out: Any = 1
            for p in parts:
                out *= to_number(p(d))
            return out

        def minus(d: Any) -> Any:
            if len(parts) == 1:
                return -to_number(parts[0](d))
            return to_number(parts[0](d)) - to_number(parts[1](d))

        def divide(d: Any) -> Any:
            x, y = to_number(parts[0](d)), to_number(parts[1](d))
            if y == 0:
                return None
            return x / y

        def modulo(d: Any) -> Any:
            x, y = to_number(parts[0](d)), to_number(parts[1](d))
            if y == 0:
                return None
            return math.fmod(x, y) if isinstance(x, float) or isinstance(y, float) else int(math.fmod(x, y))

        def minimum(d: Any) -> Any:
            values = [to_number(p(d)) for p in parts]
            return min(values) if values else None

        def maximum(d: Any) -> Any:
            values = [to_number(p(d)) for p in parts]
            return max(values) if values else None

        return {"+": plus, "*": times, "-": minus, "/": divide, "%": modulo, "min": minimum, "max": maximum}[name]

    return build


# --- strings and arrays ----------------------------------------------------------------------------------


def _build_cat(args: list[Any], c: Compiler) -> Rule:
    parts = c.compile_all(args)
    return lambda d: "".join([js_str(p(d)) for p in parts])


def _build_substr(args: list[Any], c: Compiler) -> Rule:
    parts = c.compile_all(args)

    def substr(d: Any) -> Any:
        s = js_str(parts[0](d))
        start = int(to_number(parts[1](d))) if len(parts) > 1 else 0
        if start < 0:
            start = max(len(s) + start, 0)
        if len(parts) > 2:
            length = int(to_number(parts[2](d)))
            end = start + length if length >= 0 else len(s) + length
            return s[start:end]
        return s[start:]

    return substr


def _build_in(args: list[Any], c: Compiler) -> Rule:
    needle, haystack = (c.compile_all(args) + [lambda _d: None] * 2)[:2]

    def in_(d: Any) -> bool:
        n, h = needle(d), haystack(d)
        if isinstance(h, str):
            return isinstance(n, str) and n in h
        if isinstance(h, list):
            return any(strict_eq(n, x) for x in h)
        return False

    return in_


def _build_merge(args: list[Any], c: Compiler) -> Rule:
    parts = c.compile_all(args)

    def merge(d: Any) -> list[Any]:
        out: list[Any] = []
        for p in parts:
            v = p(d)
            if isinstance(v, list):
                out.extend(v)
            else:
                out.append(v)
        return out

    return merge


def _iterating(kind: str) -> OperatorBuilder:
    def build(args: list[Any], c: Compiler) -> Rule:
        items = c.compile(args[0]) if args else (lambda _d: [])
        body = c.compile(args[1]) if len(args) > 1 else (lambda _d: None)
        initial = c.compile(args[2]) if len(args) > 2 else (lambda _d: None)

        def values(d: Any) -> list[Any]:
            v = items(d)
            return v if isinstance(v, list) else []

        if kind == "map":
            return lambda d: [body(x) for x in values(d)]
        if kind == "filter":
            return lambda d: [x for x in values(d) if truthy(body(x))]
        if kind == "all":
            return lambda d: bool(vs := values(d)) and all(truthy(body(x)) for x in vs)
        if kind == "some":
            return lambda d: any(truthy(body(x)) for x in values(d))
        if kind == "none":
            return lambda d: not any(truthy(body(x)) for x in values(d))

        def reduce(d: Any) -> Any:
            acc = initial(d)
            for x in values(d):
                acc = body({"current": x, "accumulator": acc})
            return acc

        return reduce

    return build


def _build_log(args: list[Any], c: Compiler) -> Rule:
    return c.compile(args[0]) if args else (lambda _d: None)


STANDARD_OPERATORS: dict[str, OperatorBuilder] = {
    "var": _build_var,
    "missing": _build_missing,
    "missing_some": _build_missing_some,
    "if": _build_if,
    "?:": _build_if,
    "and": _build_and,
    "or": _build_or,
    "!": _build_not,
    "!!": _build_truthy,
    "==": _binary(loose_eq),
    "!=": _binary(loose_eq, negate=True),
    "===": _binary(strict_eq),
    "!==": _binary(strict_eq, negate=True),
    "<": _comparison(less),
    "<=": _comparison(less_eq),
    ">": _comparison(lambda a, b: less(b, a)),
    ">=": _comparison(lambda a, b: less_eq(b, a)),
    "+": _build_arith("+"),
    "-": _build_arith("-"),
    "*": _build_arith("*"),
    "/": _build_arith("/"),
    "%": _build_arith("%"),
    "min": _build_arith("min"),
    "max": _build_arith("max"),
    "cat": _build_cat,
    "substr": _build_substr,
    "in": _build_in,
    "merge": _build_merge,
    "map": _iterating("map"),
    "filter": _iterating("filter"),
    "all": _iterating("all"),
    "some": _iterating("some"),
    "none": _iterating("none"),
    "reduce": _iterating("reduce"),
    "log": _build_log,
}
