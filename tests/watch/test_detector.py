"""The streaming detector in-process: what it must notice, what it must let pass, and its promises."""

from __future__ import annotations

import json
import math
import random

from rollwise.watch.detector import ALARM_SCORE, DetectorConfig, SeriesDetector

START = 1_700_000_000.0


def diurnal(n: int, *, step: float = 15.0, seed: int = 1, noise: float = 3.0) -> tuple[list[float], list[float]]:
    rng = random.Random(seed)
    times = [START + step * i for i in range(n)]
    return times, [100.0 + 40.0 * math.sin(2 * math.pi * t / 86400.0) + rng.gauss(0.0, noise) for t in times]


def scores(detector: SeriesDetector, times: list[float], values: list[float]) -> list[float]:
    return [detector.score(t, v) for t, v in zip(times, values, strict=True)]


def alarms(values: list[float], start: int = 0) -> list[int]:
    return [i for i, s in enumerate(values) if s >= ALARM_SCORE and i >= start]


def test_scores_are_in_unit_interval_and_low_while_warming_up() -> None:
    times, values = diurnal(2000)
    values[5] = 1e6  # even an absurd point during warm-up does not alarm
    out = scores(SeriesDetector(), times, values)
    assert all(0.0 <= s <= 1.0 for s in out)
    assert max(out[: DetectorConfig().warmup]) < ALARM_SCORE


def test_a_healthy_seasonal_series_rarely_alarms() -> None:
    times, values = diurnal(3 * 5760)  # three days of 15-s scrapes
    out = scores(SeriesDetector(), times, values)
    assert len(alarms(out, start=5760)) <= 2


def test_a_step_is_detected_within_minutes_and_alarms_once() -> None:
    times, values = diurnal(2 * 5760)
    onset = 5760 + 1000
    shifted = [v + (12.0 if i >= onset else 0.0) for i, v in enumerate(values)]  # 4 noise sds
    out = scores(SeriesDetector(), times, shifted)
    hits = alarms(out, start=5760)
    assert hits and onset <= hits[0] <= onset + 8  # within two minutes at 15-s scrapes
    later = [i for i in hits if i > onset + 60]
    assert len(later) <= 1  # the new level becomes normal: one burst, not an alarm for ever


def test_a_single_spike_alarms_without_moving_the_baseline() -> None:
    times, values = diurnal(2 * 5760)
    at = 7000
    values[at] += 200.0
    out = scores(SeriesDetector(), times, values)
    assert at in alarms(out)
    assert not alarms(out, start=at + 5)


def test_direction_up_ignores_drops() -> None:
    times, values = diurnal(2 * 5760)
    onset = 7000
    dropped = [v - (30.0 if i >= onset else 0.0) for i, v in enumerate(values)]
    up = scores(SeriesDetector(direction="up"), times, dropped)
    both = scores(SeriesDetector(direction="both"), times, dropped)
    assert not alarms(up, start=onset)
    assert alarms(both, start=onset)[0] < onset + 5


def test_a_slow_leak_is_detected() -> None:
    rng = random.Random(3)
    times = [START + 15.0 * i for i in range(4 * 5760)]
    onset = 2 * 5760
    memory = [1000.0 + rng.gauss(0.0, 4.0) + max(0.0, (t - times[onset]) / 3600.0) * 50.0 for t in times]
    out = scores(SeriesDetector(direction="up"), times, memory)
    hits = alarms(out, start=5760)
    assert hits and onset <= hits[0] <= onset + 240  # within an hour of a leak of 5 %/h


def test_irregular_sampling_and_repeated_timestamps_are_accepted() -> None:
    rng = random.Random(5)
    detector = SeriesDetector()
    t = START
    for _ in range(3000):
        t += rng.choice([0.0, 5.0, 300.0, 3600.0])
        assert 0.0 <= detector.score(t, rng.gauss(10.0, 1.0)) <= 1.0


def test_state_round_trips_through_json() -> None:
    times, values = diurnal(4000)
    first = SeriesDetector(direction="up")
    scores(first, times[:3000], values[:3000])
    copy = SeriesDetector.from_state(json.loads(json.dumps(first.to_state())))
    assert scores(copy, times[3000:], values[3000:]) == scores(first, times[3000:], values[3000:])


def test_memory_is_bounded() -> None:
    detector = SeriesDetector()
    times, values = diurnal(1000)
    scores(detector, times, values)
    before = detector.memory_bytes
    times, values = diurnal(20000, seed=2)
    scores(detector, [t + 1e6 for t in times], values)
    assert detector.memory_bytes == before < 4096


def test_expected_band_contains_normal_points() -> None:
    times, values = diurnal(3 * 5760)
    detector = SeriesDetector()
    scores(detector, times, values)
    forecast, low, high = detector.expected(times[-1] + 15.0)
    assert low < forecast < high
    assert abs(forecast - (100.0 + 40.0 * math.sin(2 * math.pi * (times[-1] + 15.0) / 86400.0))) < 6.0
