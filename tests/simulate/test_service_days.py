"""The service-day simulator: deterministic per seed, regressions where the ground truth says."""

from __future__ import annotations

import numpy as np

from rollwise.simulate.service_days import DAY, METRIC_OF, METRICS, simulate_service


def test_same_seed_same_days() -> None:
    a, b = simulate_service(4, days=2.0), simulate_service(4, days=2.0)
    assert a.releases == b.releases
    assert all(np.array_equal(a.series[m], b.series[m]) for m in METRICS)


def test_daily_traffic_and_quiet_weekends() -> None:
    week = simulate_service(1, days=7.0, interval=60.0)
    hour = (week.timestamps % DAY) / 3600
    requests = week.series["requests"]
    assert requests[(hour > 13) & (hour < 17)].mean() > 2 * requests[(hour > 1) & (hour < 5)].mean()
    weekday = ((week.timestamps - week.timestamps[0]) // DAY).astype(int)
    assert requests[weekday >= 5].mean() < 0.85 * requests[weekday < 5].mean()


def test_each_regression_shows_in_its_metric_after_the_onset_only() -> None:
    expected = {"errors": (1.3, None), "latency": (1.15, None), "memory_leak": (1.05, None), "kpi": (None, 0.98)}
    for k, kind in enumerate(METRIC_OF):
        days = simulate_service(50 + k, days=3.0, releases=1, regress=kind)  # type: ignore[arg-type]
        assert days.regression is not None and days.regression.onset == days.releases[-1]
        t, values = days.timestamps, days.series[METRIC_OF[kind]]
        onset = days.regression.onset
        before = values[(t < onset) & (t > onset - 6 * 3600)].mean()
        after = values[(t > onset + 3600) & (t < onset + 4 * 3600)].mean()
        more, less = expected[kind]
        assert after > more * before if more else after < less * before


def test_healthy_blips_are_marked() -> None:
    days = simulate_service(9, days=7.0)
    assert days.regression is None and len(days.releases) == 3
    assert 0 < days.blips.sum() < 0.01 * len(days.blips)
