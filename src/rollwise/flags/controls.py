"""Release controls as pure transformations of a flag document: kill/restore, rollout percent,
enable/disable, dark launch and scheduled changes.

Kept pure (document in, document out) so the same code serves the CLI, the server and the provider, and
so a schedule is applied identically by whoever notices it is due. rollwise's own state lives under the
top-level `$rollwise` key of the flag file, which flagd ignores, so one file stays the single source.

Kill switch semantics: the flag keeps serving, but statically its "off" variant — the variant named
`off`, `false` or `disabled`, else the variant whose value is boolean `false`. A flag with no such variant
is set to DISABLED instead (callers then get their code default). The definition before the kill is kept
under `$rollwise.killed.<key>` and put back by `restore`. While a flag is killed, its due schedules wait.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from rollwise.flags.definitions import ROLLWISE_KEY

ScheduleAction = Literal["set-percent", "enable", "disable"]
SCHEDULE_ACTIONS: tuple[str, ...] = ("set-percent", "enable", "disable")

OFF_NAMES = ("off", "false", "disabled")
ON_NAMES = ("on", "true", "enabled")
PERCENT_SCALE = 100
"""Rollout weights are in hundredths of a percent, so 12.5 % is exact; bucketing depends only on ratios."""


class ControlError(ValueError):
    """A release control cannot be applied to this flag; the message says why."""


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> float:
    """ISO 8601 to epoch seconds; a time without offset is taken as UTC."""
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise ControlError(f"invalid time {text!r}: expected ISO 8601 such as 2030-01-02T09:00:00Z") from e
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


@dataclass(frozen=True)
class Schedule:
    id: str
    flag: str
    at: float
    action: str
    percent: float | None
    actor: str
    reason: str
    created_at: float

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["at"] = iso(self.at)
        out["created_at"] = iso(self.created_at)
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Schedule:
        return cls(
            id=str(raw["id"]),
            flag=str(raw["flag"]),
            at=parse_time(raw["at"]) if isinstance(raw["at"], str) else float(raw["at"]),
            action=str(raw["action"]),
            percent=None if raw.get("percent") is None else float(raw["percent"]),
            actor=str(raw.get("actor", "")),
            reason=str(raw.get("reason", "")),
            created_at=parse_time(raw["created_at"]) if isinstance(raw.get("created_at"), str) else 0.0,
        )


# --- the $rollwise section ------------------------------------------------------------------------------


def section(raw: dict[str, Any]) -> dict[str, Any]:
    sec = raw.get(ROLLWISE_KEY)
    return sec if isinstance(sec, dict) else {}


def validate_section(raw: dict[str, Any], flag_keys: set[str]) -> list[tuple[tuple[Any, ...], str]]:
    """Problems in the `$rollwise` section (schedules referring to unknown flags, bad actions), each with
    the JSON path it is about."""
    sec = raw.get(ROLLWISE_KEY)
    if sec is None:
        return []
    if not isinstance(sec, dict):
        return [((ROLLWISE_KEY,), "must be an object")]
    problems: list[tuple[tuple[Any, ...], str]] = []
    version = sec.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        problems.append(((ROLLWISE_KEY, "version"), "must be a non-negative integer"))
    for i, s in enumerate(sec.get("schedules", []) or []):
        where = (ROLLWISE_KEY, "schedules", i)
        try:
            sched = Schedule.from_json(s)
        except (KeyError, TypeError, ValueError) as e:
            problems.append((where, str(e)))
            continue
        if sched.flag not in flag_keys:
            problems.append(((*where, "flag"), f"flag {sched.flag!r} is not defined"))
        if sched.action not in SCHEDULE_ACTIONS:
            problems.append(((*where, "action"), f"action {sched.action!r} is not one of {SCHEDULE_ACTIONS}"))
        if sched.action == "set-percent" and (sched.percent is None or not 0 <= sched.percent <= 100):
            problems.append(((*where, "percent"), "set-percent needs a percent between 0 and 100"))
    killed = sec.get("killed", {})
    if not isinstance(killed, dict):
        problems.append(((ROLLWISE_KEY, "killed"), "must be an object"))
    return problems


def doc_version(raw: dict[str, Any]) -> int:
    v = section(raw).get("version", 0)
    return v if isinstance(v, int) else 0


def schedules(raw: dict[str, Any]) -> list[Schedule]:
    return [Schedule.from_json(s) for s in section(raw).get("schedules", []) or []]


def killed(raw: dict[str, Any]) -> dict[str, Any]:
    k = section(raw).get("killed", {})
    return k if isinstance(k, dict) else {}


def _edit_section(raw: dict[str, Any]) -> dict[str, Any]:
    sec = raw.setdefault(ROLLWISE_KEY, {})
    if not isinstance(sec, dict):
        sec = raw[ROLLWISE_KEY] = {}
    return sec


def bump_version(raw: dict[str, Any]) -> int:
    sec = _edit_section(raw)
    sec["version"] = doc_version(raw) + 1
    return int(sec["version"])


# --- variant roles --------------------------------------------------------------------------------------


def _flag(raw: dict[str, Any], key: str) -> dict[str, Any]:
    flag = raw.get("flags", {}).get(key)
    if not isinstance(flag, dict):
        raise ControlError(f"flag {key!r} is not defined")
    return flag


def _named_or_valued(variants: dict[str, Any], names: tuple[str, ...], value: bool) -> str | None:
    """The variant named like ``names`` (first match), else the first whose value is ``value``."""
    for name in names:
        if name in variants:
            return name
    return next((str(name) for name, v in variants.items() if v is value), None)


def off_variant(flag: dict[str, Any]) -> str | None:
    """The variant a kill switch serves: named off/false/disabled, or valued ``false``."""
    return _named_or_valued(flag.get("variants", {}), OFF_NAMES, False)


def on_variant(flag: dict[str, Any]) -> str | None:
    """The variant a rollout raises: named on/true/enabled, valued ``true``, or the only one not off."""
    variants = flag.get("variants", {})
    found = _named_or_valued(variants, ON_NAMES, True)
    if found is not None:
        return found
    off = off_variant(flag)
    others = [n for n in variants if n != off]
    return others[0] if off is not None and len(others) == 1 else None


# --- changes -------------------------------------------------------------------------------------------


def kill(raw: dict[str, Any], key: str, actor: str, reason: str, now: float) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    flag = _flag(out, key)
    if key in killed(out):
        raise ControlError(f"flag {key!r} is already killed")
    before = copy.deepcopy(flag)
    off = off_variant(flag)
    if off is not None:
        flag["state"] = "ENABLED"
        flag["defaultVariant"] = off
        flag["targeting"] = {}
    else:
        flag["state"] = "DISABLED"
    _edit_section(out).setdefault("killed", {})[key] = {
        "before": before,
        "at": iso(now),
        "actor": actor,
        "reason": reason,
        "served": off if off is not None else "DISABLED",
    }
    return out


def restore(raw: dict[str, Any], key: str) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    _flag(out, key)
    record = killed(out).get(key)
    if record is None:
        raise ControlError(f"flag {key!r} is not killed")
    out["flags"][key] = record["before"]
    del _edit_section(out)["killed"][key]
    return out


def _find_fractional(node: Any) -> list[Any] | None:
    if isinstance(node, dict):
        if len(node) == 1 and "fractional" in node and isinstance(node["fractional"], list):
            return node["fractional"]  # type: ignore[no-any-return]
        for v in node.values():
            found = _find_fractional(v)
            if found is not None:
                return found
    elif isinstance(node, list):
        for v in node:
            found = _find_fractional(v)
            if found is not None:
                return found
    return None


def set_percent(raw: dict[str, Any], key: str, percent: float) -> dict[str, Any]:
    """Serve the flag's on variant to `percent` % of targeting keys (monotone: raising it keeps users in)."""
    if not 0 <= percent <= 100:
        raise ControlError(f"percent must be between 0 and 100, not {percent}")
    out = copy.deepcopy(raw)
    flag = _flag(out, key)
    if key in killed(out):
        raise ControlError(f"flag {key!r} is killed; restore it before changing its rollout")
    on, off = on_variant(flag), off_variant(flag)
    if on is None or off is None:
        raise ControlError(
            f"flag {key!r}: cannot tell its on and off variants (name them on/off or use boolean values)"
        )
    targeting = flag.get("targeting") or {}
    node = _find_fractional(targeting)
    if node is None:
        if targeting:
            raise ControlError(f"flag {key!r} has targeting without a fractional rule; add one to control its rollout")
        on_w = round(percent * PERCENT_SCALE)
        flag["targeting"] = {"fractional": [[on, on_w], [off, 100 * PERCENT_SCALE - on_w]]}
    else:
        seed = [] if not node or isinstance(node[0], list) else [node[0]]
        node[:] = seed + _rollout_buckets(node[len(seed):], on, off, percent)
    flag["state"] = "ENABLED"
    return out


def _rollout_buckets(written: list[Any], on: str, off: str, percent: float) -> list[list[Any]]:
    """The on/off buckets for `percent`, in the file's own terms: the buckets' order and their total weight
    as written (25/75 stays a split of 100) whenever that total can express `percent` exactly; otherwise
    hundredths of a percent."""
    weights = [b[1] if len(b) == 2 else 1 for b in written if isinstance(b, list) and b]
    total = sum(w for w in weights if isinstance(w, int) and not isinstance(w, bool))
    on_w_exact = percent * total / 100
    if len(weights) != len(written) or total <= 0 or on_w_exact != round(on_w_exact):
        total, on_w_exact = 100 * PERCENT_SCALE, round(percent * PERCENT_SCALE)
    on_w = round(on_w_exact)
    by_name = {on: on_w, off: total - on_w}
    order = [b[0] for b in written if isinstance(b, list) and b and b[0] in by_name]
    names = order if sorted(order) == sorted(by_name) else [on, off]
    return [[name, by_name[name]] for name in names]


def set_state(raw: dict[str, Any], key: str, enabled: bool) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    flag = _flag(out, key)
    if key in killed(out):
        raise ControlError(f"flag {key!r} is killed; restore it first")
    flag["state"] = "ENABLED" if enabled else "DISABLED"
    return out


def dark_launch(raw: dict[str, Any], key: str, segment_rule: Any) -> dict[str, Any]:
    """Serve the on variant only where `segment_rule` (JsonLogic) is true, the off variant elsewhere."""
    out = copy.deepcopy(raw)
    flag = _flag(out, key)
    on, off = on_variant(flag), off_variant(flag)
    if on is None or off is None:
        raise ControlError(f"flag {key!r}: cannot tell its on and off variants")
    flag["state"] = "ENABLED"
    flag["targeting"] = {"if": [segment_rule, on, off]}
    flag["defaultVariant"] = off
    return out


def add_schedule(
    raw: dict[str, Any],
    key: str,
    at: float,
    action: str,
    percent: float | None,
    actor: str,
    reason: str,
    now: float,
) -> tuple[dict[str, Any], Schedule]:
    if action not in SCHEDULE_ACTIONS:
        raise ControlError(f"action must be one of {SCHEDULE_ACTIONS}, not {action!r}")
    if action == "set-percent" and (percent is None or not 0 <= percent <= 100):
        raise ControlError("set-percent needs a percent between 0 and 100")
    out = copy.deepcopy(raw)
    _flag(out, key)
    sched = Schedule(uuid.uuid4().hex[:12], key, at, action, percent, actor, reason, now)
    _edit_section(out).setdefault("schedules", []).append(sched.to_json())
    return out, sched


def remove_schedule(raw: dict[str, Any], schedule_id: str) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    sec = _edit_section(out)
    before = sec.get("schedules", []) or []
    after = [s for s in before if s.get("id") != schedule_id]
    if len(after) == len(before):
        raise ControlError(f"no schedule with id {schedule_id!r}")
    sec["schedules"] = after
    return out


def apply_schedule(raw: dict[str, Any], sched: Schedule) -> dict[str, Any]:
    if sched.action == "set-percent":
        assert sched.percent is not None
        out = set_percent(raw, sched.flag, sched.percent)
    else:
        out = set_state(raw, sched.flag, sched.action == "enable")
    sec = _edit_section(out)
    sec["schedules"] = [s for s in sec.get("schedules", []) if s.get("id") != sched.id]
    return out


def due_schedules(raw: dict[str, Any], now: float) -> list[Schedule]:
    """Schedules whose time has come, oldest first; a killed flag's schedules wait for its restore."""
    dead = killed(raw)
    return sorted((s for s in schedules(raw) if s.at <= now and s.flag not in dead), key=lambda s: s.at)


def materialize(raw: dict[str, Any], now: float) -> tuple[dict[str, Any], list[Schedule]]:
    """The document as it should be served at `now`: every due schedule applied (those that fail are
    dropped from the served view, never half-applied)."""
    applied = []
    for sched in due_schedules(raw, now):
        try:
            raw = apply_schedule(raw, sched)
            applied.append(sched)
        except ControlError:
            continue
    return raw, applied


def next_due(raw: dict[str, Any]) -> float | None:
    pending = [s.at for s in schedules(raw) if s.flag not in killed(raw)]
    return min(pending) if pending else None
