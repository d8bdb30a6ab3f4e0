"""Which log templates the RCA calls new in the canary: a split that traffic alone would not explain."""

from __future__ import annotations

from rollwise.core.model import VersionStats, Window
from rollwise.report.logs import log_changes
from rollwise.telemetry.aggregate import LOG_KEY

TEMPLATE = "payment gateway timeout after <*> ms for order <*>"


def _window(canary_requests: int, canary_records: int, baseline_requests: int, baseline_records: int) -> Window:
    def side(requests: int, records: int) -> VersionStats:
        return VersionStats(requests=requests, extra={f"{LOG_KEY}{TEMPLATE}": float(records)} if records else {})
    return Window(0.0, 10.0, side(baseline_requests, baseline_records), side(canary_requests, canary_records))


def test_three_records_on_a_ten_percent_canary_are_new() -> None:
    """A canary rolled back after its third failure still shows the line those failures logged."""
    changes = log_changes([_window(30, 3, 271, 0)])
    assert [(c.template, c.change, c.canary_records) for c in changes] == [(TEMPLATE, "new", 3)]
    assert "never in the baseline" in changes[0].text()


def test_an_even_split_needs_more_records_before_a_template_is_new() -> None:
    """On 50/50 traffic, five records all in the canary happen by chance 3 % of the time: not enough."""
    assert log_changes([_window(500, 5, 500, 0)]) == []
    assert [c.change for c in log_changes([_window(500, 7, 500, 0)])] == ["new"]


def test_two_records_are_too_few_to_name() -> None:
    assert log_changes([_window(30, 2, 10_000, 0)]) == []


def test_a_template_both_versions_log_at_one_rate_did_not_rise() -> None:
    assert log_changes([_window(100, 10, 900, 90)]) == []
    assert [c.change for c in log_changes([_window(100, 10, 900, 3)])] == ["rose"]


def test_a_rise_needs_an_unlikely_split_not_only_a_large_ratio() -> None:
    """4 of 5 records on a 10 % canary: p 0.0005, it rose; 3 of 4: p 0.004, a ratio of 27 is still chance."""
    assert [c.change for c in log_changes([_window(100, 4, 900, 1)])] == ["rose"]
    assert log_changes([_window(100, 3, 900, 1)]) == []
