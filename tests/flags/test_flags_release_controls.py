"""Kill switch, restore, rollout percent, dark launch, schedules and the audited history."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rollwise.core.clock import VirtualClock
from rollwise.flags import FlagRepository, FlagValidationError, set_rollout_percent
from rollwise.flags.controls import ControlError, parse_time

T0 = parse_time("2030-01-03T08:00:00Z")  # a Thursday


def flags_doc() -> dict[str, Any]:
    return {
        "flags": {
            "checkout": {
                "state": "ENABLED",
                "variants": {"on": True, "off": False},
                "defaultVariant": "on",
                "targeting": {"if": [{"==": [{"var": "plan"}, "free"]}, "off", "on"]},
            },
            "theme": {"state": "ENABLED", "variants": {"dark": "dark", "light": "light"}, "defaultVariant": "dark"},
            "legacy": {"state": "ENABLED", "variants": {"yes": True, "nah": False}, "defaultVariant": "yes"},
            "search": {"state": "DISABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"},
        }
    }


@pytest.fixture
def flags_file(tmp_path: Path) -> Path:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(flags_doc()))
    return path


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(T0)


def repo_for(path: Path, clock: VirtualClock, **kw: Any) -> FlagRepository:
    return FlagRepository(path, clock=clock.now, **kw)


def value(repo: FlagRepository, key: str, ctx: dict[str, Any] | None = None) -> Any:
    return repo.flag_set.resolve(key, ctx or {"targetingKey": "u1"}, "code-default").value


def test_kill_serves_off_variant_everywhere_and_restore_brings_back_targeting(
    flags_file: Path, clock: VirtualClock
) -> None:
    repo = repo_for(flags_file, clock)
    assert value(repo, "checkout", {"plan": "pro"}) is True
    record = repo.kill("checkout", "oncall@example.com", "error rate 5x")
    r = repo.flag_set.resolve("checkout", {"plan": "pro"}, None)
    assert (r.value, r.variant, r.reason) == (False, "off", "STATIC")
    assert record.before["targeting"] and record.after["targeting"] == {}
    # The file itself carries the kill: a fresh reader (another server) serves off too.
    assert value(FlagRepository(flags_file, apply_schedules=False), "checkout", {"plan": "pro"}) is False
    with pytest.raises(ControlError, match="already killed"):
        repo.kill("checkout", "oncall@example.com", "again")
    repo.restore("checkout", "oncall@example.com", "fixed by rollback")
    assert value(repo, "checkout", {"plan": "pro"}) is True
    assert value(repo, "checkout", {"plan": "free"}) is False
    history = repo.changes("checkout")
    assert [(h.version, h.action, h.actor, h.reason) for h in history] == [
        (1, "kill", "oncall@example.com", "error rate 5x"),
        (2, "restore", "oncall@example.com", "fixed by rollback"),
    ]
    assert history[0].at == "2030-01-03T08:00:00Z"


def test_kill_picks_the_false_variant_or_disables_when_there_is_no_off(flags_file: Path, clock: VirtualClock) -> None:
    repo = repo_for(flags_file, clock)
    repo.kill("legacy", "a", "r")
    assert repo.flag_set.resolve("legacy", {}, None).variant == "nah"  # boolean false variant
    repo.kill("theme", "a", "r")  # no off/false/disabled variant: the flag is disabled
    r = repo.flag_set.resolve("theme", {}, "code-default")
    assert (r.value, r.reason) == ("code-default", "DISABLED")
    repo.restore("theme", "a", "r")
    assert value(repo, "theme") == "dark"


def test_rollout_percent_creates_and_updates_a_fractional_rule(flags_file: Path, clock: VirtualClock) -> None:
    repo = repo_for(flags_file, clock)
    users = [{"targetingKey": f"user-{i}"} for i in range(4000)]
    repo.set_rollout_percent("legacy", 25, "release-bot", "stage 1")
    at_25 = {u["targetingKey"] for u in users if value(repo, "legacy", u) is True}
    set_rollout_percent(flags_file, "legacy", 60, "release-bot", "stage 2")  # the module-level API
    repo.reload()
    at_60 = {u["targetingKey"] for u in users if value(repo, "legacy", u) is True}
    assert 800 < len(at_25) < 1200 and 2200 < len(at_60) < 2600
    assert at_25 <= at_60
    assert [h.details["percent"] for h in repo.changes("legacy")] == [25, 60]
    with pytest.raises(ControlError, match="without a fractional rule"):
        repo.set_rollout_percent("checkout", 10, "a", "r")
    with pytest.raises(ControlError, match="between 0 and 100"):
        repo.set_rollout_percent("legacy", 101, "a", "r")


def test_dark_launch_serves_only_the_internal_segment(flags_file: Path, clock: VirtualClock) -> None:
    repo = repo_for(flags_file, clock)
    repo.dark_launch("search", {"ends_with": [{"var": "email"}, "@corp.example"]}, "pm", "internal dogfood")
    assert value(repo, "search", {"email": "ana@corp.example"}) is True
    assert value(repo, "search", {"email": "bob@gmail.com"}) is False
    assert value(repo, "search", {}) is False


def test_scheduled_changes_apply_when_due_and_are_audited(flags_file: Path, clock: VirtualClock) -> None:
    repo = repo_for(flags_file, clock)
    thursday_9 = parse_time("2030-01-03T09:00:00Z")
    repo.schedule("search", thursday_9, "enable", "pm", "launch Thursday 09:00 UTC")
    repo.schedule("legacy", thursday_9 + 3600, "set-percent", "pm", "half at 10:00", percent=50)
    repo.tick()
    assert repo.flag_set.resolve("search", {}, "d").reason == "DISABLED"
    clock.set(thursday_9)
    repo.tick()
    assert value(repo, "search") is True
    assert len(repo.schedules()) == 1
    clock.advance(3600)
    repo.tick()
    shares = sum(value(repo, "legacy", {"targetingKey": f"u{i}"}) is True for i in range(2000))
    assert 900 < shares < 1100
    assert repo.schedules() == []
    applied = [(h.action, h.flag, h.actor) for h in repo.changes() if h.actor.startswith("schedule:")]
    assert applied == [("enable", "search", "schedule:pm"), ("set-percent", "legacy", "schedule:pm")]
    on_disk = json.loads(flags_file.read_text())
    assert on_disk["flags"]["search"]["state"] == "ENABLED" and on_disk["$rollwise"]["schedules"] == []


def test_a_reader_applies_due_schedules_in_memory_without_writing(flags_file: Path, clock: VirtualClock) -> None:
    writer = repo_for(flags_file, clock)
    writer.schedule("search", T0 + 60, "enable", "pm", "soon")
    before = flags_file.read_text()
    reader = repo_for(flags_file, clock, apply_schedules=False)
    assert reader.flag_set.resolve("search", {}, "d").reason == "DISABLED"
    clock.advance(61)
    reader.tick()
    assert value(reader, "search") is True
    assert flags_file.read_text() == before


def test_killed_flags_schedules_wait_for_restore(flags_file: Path, clock: VirtualClock) -> None:
    repo = repo_for(flags_file, clock)
    repo.schedule("legacy", T0 + 10, "set-percent", "pm", "ramp", percent=100)
    repo.kill("legacy", "oncall", "incident")
    clock.advance(20)
    repo.tick()
    assert value(repo, "legacy") is False and len(repo.schedules()) == 1
    repo.restore("legacy", "oncall", "resolved")
    repo.tick()
    assert value(repo, "legacy") is True and repo.schedules() == []


def test_invalid_changes_and_files_are_rejected_whole(flags_file: Path, clock: VirtualClock) -> None:
    repo = repo_for(flags_file, clock)
    repo.kill("checkout", "a", "r")
    good_text, version, etag = flags_file.read_text(), repo.version, repo.etag
    bad = flags_doc()
    bad["flags"]["theme"]["defaultVariant"] = "purple"
    with pytest.raises(FlagValidationError, match=r"flags\.theme\.defaultVariant: 'purple' is not one of"):
        repo.replace(bad, "a", "oops")
    with pytest.raises(ControlError):
        repo.restore("theme", "a", "not killed")
    with pytest.raises(ControlError, match="actor"):
        repo.kill("theme", "", "who?")
    assert flags_file.read_text() == good_text and repo.version == version
    # Someone hand-writes a broken file: the served configuration stays as it was.
    flags_file.write_text('{"flags": {"checkout": {"state": "MAYBE"}}}')
    assert repo.reload() is False
    assert repo.etag == etag and value(repo, "checkout") is False
    assert repo.last_error is not None and "flags.checkout.state" in repo.last_error
    with pytest.raises(FlagValidationError):
        repo.kill("legacy", "a", "r")  # changes refuse to build on an invalid file


def test_time_based_targeting_follows_the_repository_clock(tmp_path: Path, clock: VirtualClock) -> None:
    path = tmp_path / "timed.json"
    launch = T0 + 3600
    path.write_text(
        json.dumps(
            {
                "flags": {
                    "promo": {
                        "state": "ENABLED",
                        "variants": {"on": True, "off": False},
                        "defaultVariant": "off",
                        "targeting": {"if": [{">=": [{"var": "$flagd.timestamp"}, launch]}, "on", "off"]},
                    }
                }
            }
        )
    )
    repo = repo_for(path, clock)
    assert value(repo, "promo") is False
    clock.set(launch)
    assert value(repo, "promo") is True
