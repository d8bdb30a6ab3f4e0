"""Blackout windows are local wall-clock time in the region's zone, daylight saving included."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from rollwise.core.blackouts import Blackout, describe, parse_weekly

UTC = ZoneInfo("UTC")
WEEKEND = Blackout("Europe/Berlin", parse_weekly("Fri 16:00"), parse_weekly("Mon 08:00"))


def at(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(("when", "inside"), [
    (at(2026, 1, 9, 14, 59), False),  # Fri 15:59 CET
    (at(2026, 1, 9, 15, 0), True),  # Fri 16:00 CET: the start is inside
    (at(2026, 1, 11, 12, 0), True),  # Sunday
    (at(2026, 1, 12, 6, 59), True),  # Mon 07:59 CET
    (at(2026, 1, 12, 7, 0), False),  # Mon 08:00 CET: the end is outside
    (at(2026, 7, 13, 6, 0), False),  # Mon 08:00 CEST is 06:00 UTC in summer
    (at(2026, 7, 13, 5, 59), True),
    (at(2026, 7, 10, 14, 0), True),  # Fri 16:00 CEST is 14:00 UTC
    (at(2026, 1, 14, 12, 0), False),  # a Wednesday
])
def test_a_weekly_blackout_follows_the_local_clock(when: float, inside: bool) -> None:
    assert WEEKEND.active(when) is inside


def test_the_end_across_a_daylight_saving_change_is_the_written_local_time() -> None:
    # Spring forward in Berlin on Sunday 29 March 2026: the blackout starts in CET, ends in CEST.
    start = at(2026, 3, 27, 15, 30)  # Fri 16:30 CET
    assert WEEKEND.ends_at(start) == at(2026, 3, 30, 6, 0)  # Mon 08:00 CEST
    # Fall back on Sunday 25 October 2026: starts in CEST, ends in CET.
    assert WEEKEND.ends_at(at(2026, 10, 23, 14, 30)) == at(2026, 10, 26, 7, 0)
    assert describe(at(2026, 3, 30, 6, 0), "Europe/Berlin") == "Mon 08:00 Europe/Berlin"


def test_another_zone_sees_another_instant() -> None:
    new_york = Blackout("America/New_York", parse_weekly("Fri 16:00"), parse_weekly("Mon 08:00"))
    friday_berlin_evening = at(2026, 1, 9, 17, 0)  # 18:00 Berlin, 12:00 New York
    assert WEEKEND.active(friday_berlin_evening) and not new_york.active(friday_berlin_evening)


def test_a_daily_blackout_spans_midnight() -> None:
    nightly = Blackout("Asia/Tokyo", parse_weekly("22:00"), parse_weekly("06:00"))
    assert nightly.active(at(2026, 1, 14, 13, 30))  # 22:30 in Tokyo
    assert nightly.active(at(2026, 1, 14, 20, 59))  # 05:59
    assert not nightly.active(at(2026, 1, 14, 21, 0))  # 06:00
    assert nightly.ends_at(at(2026, 1, 14, 13, 30)) == at(2026, 1, 14, 21, 0)


@pytest.mark.parametrize("text", ["Friday 16:00", "fri 16:00", "FRI 16:00"])
def test_weekday_spellings(text: str) -> None:
    assert parse_weekly(text).day == 4 and parse_weekly(text).minute == 16 * 60


@pytest.mark.parametrize("text", ["Fry 16:00", "Fri 24:00", "Fri 16:60", "16h", "Frisday 10:00"])
def test_bad_times_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_weekly(text)
