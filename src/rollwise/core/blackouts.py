"""Blackout windows: weekly wall-clock spans in a region's time zone when no wave may start.

A blackout such as ``Fri 16:00`` to ``Mon 08:00`` in ``Europe/Berlin`` means local wall-clock time,
so it follows daylight saving time: the same blackout ends at 06:00 UTC in summer and 07:00 UTC in
winter. Times are compared on the local clock (``zoneinfo``), never as fixed UTC offsets. Pure: the
caller hands in the epoch seconds it read from its ``Clock``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WEEKLY_PATTERN = r"^\s*(?:[A-Za-z]+\s+)?\d{1,2}:\d{2}\s*$"
_WEEKLY = re.compile(r"^\s*(?:(?P<day>[A-Za-z]+)\s+)?(?P<hour>\d{1,2}):(?P<minute>\d{2})\s*$")
_WEEK = 7 * 24 * 60
_DAY_NAMES = {d[:3]: (d[:3], d) for d in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
                                         "sunday")}


@dataclass(frozen=True)
class WeeklyTime:
    """A wall-clock time in the week (``day`` None: every day at that time)."""

    day: int | None  # 0 = Monday, as datetime.weekday()
    minute: int  # minutes after local midnight

    def of_week(self, day: int) -> int:
        return (self.day if self.day is not None else day) * 24 * 60 + self.minute


def parse_weekly(text: str) -> WeeklyTime:
    """``Fri 16:00`` (or ``16:00`` for every day) as a ``WeeklyTime``; ValueError says what is wrong."""
    match = _WEEKLY.match(str(text))
    if not match:
        raise ValueError(f"invalid time {text!r}: write a weekday and a 24-hour time, e.g. 'Fri 16:00'")
    hour, minute = int(match.group("hour")), int(match.group("minute"))
    if hour > 23 or minute > 59:
        raise ValueError(f"invalid time {text!r}: hours 0-23, minutes 0-59")
    day: int | None = None
    if match.group("day"):
        name = match.group("day").lower()
        if name[:3] not in DAYS or name not in _DAY_NAMES[name[:3]]:
            raise ValueError(f"invalid weekday in {text!r}: use Mon, Tue, Wed, Thu, Fri, Sat or Sun")
        day = DAYS.index(name[:3])
    return WeeklyTime(day=day, minute=hour * 60 + minute)


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; ValueError naming it when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin") from None


@dataclass(frozen=True)
class Blackout:
    """One span ``[start, end)`` on the local clock of ``timezone``: weekly, or daily when no weekday is named."""

    timezone: str
    start: WeeklyTime
    end: WeeklyTime

    def active(self, now: float) -> bool:
        return self.ends_at(now) is not None

    def ends_at(self, now: float) -> float | None:
        """When (epoch seconds) the blackout covering ``now`` ends; None when ``now`` is outside it."""
        local = datetime.fromtimestamp(now, zone(self.timezone))
        day, minute = local.weekday(), local.hour * 60 + local.minute
        if self.start.day is None:  # daily
            period, at, start, end = 24 * 60, minute, self.start.minute, self.end.minute
        else:
            period, at = _WEEK, day * 24 * 60 + minute
            start, end = self.start.of_week(day), self.end.of_week(day)
        length = (end - start) % period
        into = (at - start) % period
        if into >= length:
            return None
        return _local_epoch(local, minutes_ahead=length - into)


def _local_epoch(local: datetime, minutes_ahead: int) -> float:
    """The epoch of the local wall-clock time ``minutes_ahead`` of ``local``'s minute.

    Wall-clock arithmetic (naive datetimes) then re-attached to the zone, so a span that crosses a
    daylight-saving change ends at the written local time, not a fixed number of seconds later.
    """
    naive = local.replace(tzinfo=None, second=0, microsecond=0) + timedelta(minutes=minutes_ahead)
    return naive.replace(tzinfo=local.tzinfo).timestamp()


def describe(end: float, timezone: str) -> str:
    """``Mon 08:00 Europe/Berlin`` for an epoch, on that zone's clock."""
    local = datetime.fromtimestamp(end, zone(timezone))
    return f"{DAYS[local.weekday()].title()} {local:%H:%M} {timezone}"
