"""flagd's custom JsonLogic operators: `fractional` (three bucketing versions), `sem_ver`, `starts_with`,
`ends_with`.

`fractional` is compiled into a closure specialised for its shape: literal buckets become a precomputed
threshold table and, for v3, the CBOR framing of `[flagKey, targetingKey]` is built by hand because a
generic CBOR encoder costs more than the whole rest of an evaluation.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import cbor2
import mmh3

from rollwise.flags.jsonlogic import Compiler, OperatorBuilder, Rule, is_literal

MAX_TOTAL_WEIGHT = 2_147_483_647
FRACTIONAL_VERSIONS = (1, 2, 3)

_hash = mmh3.hash


# --- fractional ------------------------------------------------------------------------------------------


def _cbor_text(data: bytes) -> bytes:
    """CBOR major type 3 (text string) header + payload, shortest length form (RFC 8949 §4.2.1)."""
    n = len(data)
    if n < 24:
        head = bytes((0x60 + n,))
    elif n < 0x100:
        head = bytes((0x78, n))
    elif n < 0x10000:
        head = b"\x79" + n.to_bytes(2, "big")
    elif n < 0x100000000:
        head = b"\x7a" + n.to_bytes(4, "big")
    else:
        head = b"\x7b" + n.to_bytes(8, "big")
    return head + data


_TEXT_HEADS = tuple(bytes((0x60 + n,)) for n in range(24))


def _normalize_numbers(value: Any) -> Any:
    """Whole-number floats hash as integers (so 1.0, 1 and -0.0/0 land in the same bucket)."""
    if isinstance(value, dict):
        return {k: _normalize_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalize_numbers(v) for v in value]
    if value.__class__ is float and value.is_integer() and -(2**63) <= value <= 2**64 - 1:
        return int(value)
    return value


def cbor_hash_input(value: Any) -> bytes:
    """The bytes fractional v3 hashes: canonical CBOR of the (number-normalised) seed value."""
    if value.__class__ is str:
        return _cbor_text(value.encode("utf-8", "surrogatepass"))
    return cbor2.dumps(_normalize_numbers(value), canonical=True)


def _parse_bucket(raw: Any) -> tuple[Any, int] | None:
    if not isinstance(raw, list) or not raw or len(raw) > 2:
        return None
    weight: Any = 1
    if len(raw) == 2:
        weight = raw[1]
        if weight.__class__ is float and weight.is_integer():
            weight = int(weight)
        if weight.__class__ is not int:
            return None
    return raw[0], max(0, weight)


def _parse_buckets(raws: list[Any]) -> list[tuple[Any, int]] | None:
    buckets = []
    for raw in raws:
        bucket = _parse_bucket(raw)
        if bucket is None:
            return None
        buckets.append(bucket)
    total = sum(w for _, w in buckets)
    if total <= 0 or total > MAX_TOTAL_WEIGHT:
        return None
    return buckets


Chooser = Callable[[int], Any]


def _chooser(version: int, buckets: list[tuple[Any, int]]) -> Chooser:
    """Maps a hash to a variant; v1 works in float percentages of a signed hash, v2/v3 in integer weights."""
    total = sum(w for _, w in buckets)
    if version == 1:
        ends_f: list[tuple[float, Any]] = []
        end_f = 0.0
        for variant, w in buckets:
            end_f += 100 * w / total
            ends_f.append((end_f, variant))

        def choose_v1(h: int) -> Any:
            point = abs(h) / 2147483647 * 100
            for end, variant in ends_f:
                if point < end:
                    return variant
            return None

        return choose_v1
    ends: list[tuple[int, Any]] = []
    end = 0
    for variant, w in buckets:
        end += w
        ends.append((end, variant))
    if len(ends) == 2:
        (first_end, first), (_, second) = ends

        def choose_two(h: int) -> Any:
            return first if (h * total) >> 32 < first_end else second

        return choose_two

    def choose(h: int) -> Any:
        point = (h * total) >> 32
        for end, variant in ends:
            if point < end:
                return variant
        return None

    return choose


def _seed_hasher(version: int) -> Callable[[Any], int | None]:
    """Hash of an explicit seed value; None when the seed is unusable for this version."""
    if version == 3:

        def hash_v3(seed: Any) -> int | None:
            if seed is None:
                return None
            if seed.__class__ is str:
                data = seed.encode("utf-8", "surrogatepass")
                n = len(data)
                return _hash(_TEXT_HEADS[n] + data if n < 24 else _cbor_text(data), 0, False)  # type: ignore[no-any-return]
            try:
                return _hash(cbor_hash_input(seed), 0, False)  # type: ignore[no-any-return]
            except (TypeError, ValueError, cbor2.CBOREncodeError):
                return None

        return hash_v3
    signed = version == 1

    def hash_v12(seed: Any) -> int | None:
        if seed.__class__ is not str:
            return None
        return _hash(seed, 0, signed)  # type: ignore[no-any-return]

    return hash_v12


def _shorthand_hasher(version: int, flag_key: str) -> Callable[[Any], int | None]:
    """Hash for the shorthand form, which buckets by flag key + targeting key."""
    if version == 3:
        prefix = b"\x82" + _cbor_text(flag_key.encode("utf-8", "surrogatepass"))

        def hash_v3(d: Any) -> int | None:
            tk = d.get("targetingKey") if d.__class__ is dict else None
            if tk.__class__ is not str or not tk:
                return None
            data = tk.encode("utf-8", "surrogatepass")
            n = len(data)
            tail = _TEXT_HEADS[n] + data if n < 24 else _cbor_text(data)
            return _hash(prefix + tail, 0, False)  # type: ignore[no-any-return]

        return hash_v3
    signed = version == 1

    def hash_v12(d: Any) -> int | None:
        tk = d.get("targetingKey") if d.__class__ is dict else None
        if tk.__class__ is not str:
            return None
        return _hash(flag_key + tk, 0, signed)  # type: ignore[no-any-return]

    return hash_v12


def build_fractional(args: list[Any], c: Compiler) -> Rule:
    version = c.fractional_version
    if not args:
        return lambda _d: None
    first = args[0]
    if isinstance(first, list):
        return _fractional_rule(c, version, None, args)
    if is_literal(first) and (version == 3 or isinstance(first, str)):
        seed_const = first
        if seed_const is None:
            return lambda _d: None
        return _fractional_rule(c, version, lambda _d: seed_const, args[1:])
    if is_literal(first):
        # v1/v2: a non-string seed means "shorthand"; the seed itself then fails to parse as a bucket.
        return _fractional_rule(c, version, None, args)
    seed_rule = c.compile(first)
    explicit = _fractional_rule(c, version, seed_rule, args[1:])
    everything = [c.compile(a) for a in args]
    shorthand_hash = _shorthand_hasher(version, c.flag_key)

    def dynamic_seed(d: Any) -> Any:
        seed = seed_rule(d)
        is_seed = isinstance(seed, str) if version != 3 else not isinstance(seed, list)
        if is_seed:
            return explicit(d)
        # The first argument turned out to be a bucket: the whole list is buckets, shorthand hashing.
        buckets = _parse_buckets([e(d) for e in everything])
        h = shorthand_hash(d)
        if buckets is None or h is None:
            return None
        return _chooser(version, buckets)(h)

    return dynamic_seed


def _fractional_rule(c: Compiler, version: int, seed_rule: Rule | None, raw_buckets: list[Any]) -> Rule:
    if seed_rule is None:
        hasher = _shorthand_hasher(version, c.flag_key)
    else:
        seed_hash = _seed_hasher(version)
        seed = seed_rule

        def hasher(d: Any) -> int | None:
            return seed_hash(seed(d))

    if all(is_literal(b) for b in raw_buckets):
        buckets = _parse_buckets(raw_buckets)
        if buckets is None:
            return lambda _d: None
        choose = _chooser(version, buckets)

        def fractional(d: Any) -> Any:
            h = hasher(d)
            return None if h is None else choose(h)

        return fractional
    compiled = [c.compile(b) for b in raw_buckets]

    def fractional_nested(d: Any) -> Any:
        h = hasher(d)
        if h is None:
            return None
        buckets = _parse_buckets([b(d) for b in compiled])
        return None if buckets is None else _chooser(version, buckets)(h)

    return fractional_nested


# --- sem_ver ----------------------------------------------------------------------------------------------

_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)


class _PrereleasePart:
    """Orders prerelease identifiers per SemVer §11: numbers before text, numbers numerically."""

    __slots__ = ("key",)

    def __init__(self, text: str):
        self.key = (0, int(text), "") if text.isdigit() else (1, 0, text)

    def __lt__(self, other: _PrereleasePart) -> bool:
        return self.key < other.key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _PrereleasePart) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)


def parse_semver(value: Any) -> tuple[Any, ...] | None:
    """A sortable key for a version, or None; accepts a v/V prefix and pads partial versions."""
    if value is None or isinstance(value, bool | dict | list):
        return None
    text = str(value)
    if text[:1] in ("v", "V"):
        text = text[1:]
    numeric = text.split("-", 1)[0].split("+", 1)[0]
    dots = numeric.count(".")
    if dots < 2:
        text = numeric + ".0" * (2 - dots) + text[len(numeric) :]
    m = _SEMVER.match(text)
    if m is None:
        return None
    major, minor, patch = int(m.group(1)), int(m.group(2)), int(m.group(3))
    pre = m.group(4)
    # A release sorts after all of its prereleases: (1,) > (0, ...).
    pre_key: tuple[Any, ...] = (1,) if pre is None else (0, tuple(_PrereleasePart(p) for p in pre.split(".")))
    return (major, minor, patch, pre_key)


_SEMVER_OPS: dict[str, Callable[[tuple[Any, ...], tuple[Any, ...]], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "^": lambda a, b: a[0] == b[0],
    "~": lambda a, b: a[0] == b[0] and a[1] == b[1],
}


def build_sem_ver(args: list[Any], c: Compiler) -> Rule:
    if len(args) != 3:
        return lambda _d: None
    left, op_rule, right = c.compile_all(args)
    right_const = parse_semver(args[2]) if is_literal(args[2]) else None

    def sem_ver(d: Any) -> bool | None:
        test = _SEMVER_OPS.get(op_rule(d))
        if test is None:
            return None
        a = parse_semver(left(d))
        b = right_const if right_const is not None else parse_semver(right(d))
        if a is None or b is None:
            return None
        return test(a, b)

    return sem_ver


# --- starts_with / ends_with ----------------------------------------------------------------------------


def _string_test(test: Callable[[str, str], bool]) -> OperatorBuilder:
    def build(args: list[Any], c: Compiler) -> Rule:
        if len(args) != 2:
            return lambda _d: None
        subject, affix = c.compile_all(args)
        if isinstance(args[1], str):
            const = args[1]

            def test_const(d: Any) -> bool | None:
                s = subject(d)
                return test(s, const) if s.__class__ is str else None

            return test_const

        def test_any(d: Any) -> bool | None:
            s, a = subject(d), affix(d)
            if s.__class__ is not str or a.__class__ is not str:
                return None
            return test(s, a)

        return test_any

    return build


FLAGD_OPERATORS: dict[str, OperatorBuilder] = {
    "fractional": build_fractional,
    "sem_ver": build_sem_ver,
    "starts_with": _string_test(str.startswith),
    "ends_with": _string_test(str.endswith),
}


# --- whole-flag fast path -------------------------------------------------------------------------------


def direct_fractional(
    args: list[Any],
    c: Compiler,
    outcome: Callable[[Any], Any],
    on_null: Callable[[Any], Any],
    fallback: Callable[[Any, Any], Any],
) -> Callable[[Any, Any], Any] | None:
    """For a flag whose whole targeting is one `fractional` with literal buckets, a single closure
    `(context, default) -> outcome` that goes from context to the bucket's precomputed outcome without
    intermediate calls; None when the shape needs the general path (nested rules, v1, computed seeds).

    This is the rollout hot path, so hashing, bucketing and the result lookup are inlined here.
    """
    version = c.fractional_version
    if version == 1 or not args:
        return None
    first = args[0]
    if isinstance(first, list):
        seed_key, raw_buckets = None, args
    elif (
        isinstance(first, dict)
        and list(first) == ["var"]
        and isinstance(first["var"], str)
        and first["var"]
        and "." not in first["var"]
        and not first["var"].startswith("$flagd")
    ):
        seed_key, raw_buckets = first["var"], args[1:]
    else:
        return None
    if not all(is_literal(b) for b in raw_buckets):
        return None
    buckets = _parse_buckets(raw_buckets)
    if buckets is None or any(outcome(v) is None for v, _ in buckets):
        return None
    total = sum(w for _, w in buckets)
    ends = []
    end = 0
    for variant, w in buckets:
        end += w
        ends.append((end, outcome(variant)))
    hash_, cbor_text = _hash, _cbor_text
    first_end, first_out = ends[0]
    second_out = ends[1][1] if len(ends) > 1 else None
    two = len(ends) == 2
    # floor(h * total / 2**32) < first_end  <=>  h < ceil(first_end * 2**32 / total): one comparison.
    threshold = -(-(first_end << 32) // total)

    def pick(h: int, default: Any) -> Any:
        if two:
            return first_out if h < threshold else second_out
        point = (h * total) >> 32
        for e, out in ends:
            if point < e:
                return out
        return on_null(default)

    if seed_key is None and version == 3:
        prefix = b"\x82" + _cbor_text(c.flag_key.encode("utf-8", "surrogatepass"))
        framed = tuple(prefix + head for head in _TEXT_HEADS)

        def slow_key(tk: str) -> bytes:
            data = tk.encode("utf-8", "surrogatepass")
            n = len(data)
            return framed[n] + data if n < 24 else prefix + cbor_text(data)

        if two:

            def shorthand_v3_two(ctx: Any, default: Any) -> Any:
                tk = ctx.get("targetingKey")
                if tk.__class__ is not str or not tk:
                    return on_null(default)
                try:
                    data = tk.encode()
                    key = framed[len(data)] + data
                except (IndexError, UnicodeEncodeError):
                    key = slow_key(tk)
                return first_out if hash_(key, 0, False) < threshold else second_out

            return shorthand_v3_two

        def shorthand_v3(ctx: Any, default: Any) -> Any:
            tk = ctx.get("targetingKey")
            if tk.__class__ is not str or not tk:
                return on_null(default)
            return pick(hash_(slow_key(tk), 0, False), default)

        return shorthand_v3
    if seed_key is None:
        flag_key = c.flag_key

        def shorthand_v2(ctx: Any, default: Any) -> Any:
            tk = ctx.get("targetingKey")
            if tk.__class__ is not str:
                return on_null(default)
            return pick(hash_(flag_key + tk, 0, False), default)

        return shorthand_v2
    seed_hash = _seed_hasher(version)
    name = seed_key

    def seeded(ctx: Any, default: Any) -> Any:
        seed = ctx.get(name)
        if version == 3 and seed.__class__ is list:
            return fallback(ctx, default)  # a list seed means "these are buckets": general semantics
        h = seed_hash(seed)
        if h is None:
            return on_null(default)
        return pick(h, default)

    return seeded
