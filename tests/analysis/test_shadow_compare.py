from __future__ import annotations

from scipy.stats import binomtest

from rollwise.analysis.shadow_compare import mismatch_verdict
from rollwise.core.model import Action, VersionStats, Window


def windows(compared: int, mismatches: int, parts: int = 4) -> list[Window]:
    out = []
    for i in range(parts):
        c = compared // parts + (compared % parts if i == 0 else 0)
        m = mismatches // parts + (mismatches % parts if i == 0 else 0)
        stats = VersionStats(requests=c, extra={"compared": float(c), "mismatches": float(m)})
        out.append(Window(i * 10.0, (i + 1) * 10.0, VersionStats(requests=c), stats))
    return out


def test_clear_excess_of_mismatches_rolls_back_with_numbers() -> None:
    verdict = mismatch_verdict(windows(2000, 100), max_rate=0.01)
    assert verdict.action == Action.ROLLBACK and verdict.culprit == "shadow-mismatch"
    metric = verdict.metrics[0]
    assert metric.canary == {"compared": 2000, "mismatches": 100}
    assert metric.interval is not None and metric.interval[0] > 0.01
    assert "5%" in verdict.reason and "100 of 2000" in verdict.reason
    # the bound agrees with scipy's exact binomial interval
    exact = binomtest(100, 2000).proportion_ci(confidence_level=0.98, method="exact")
    assert abs(metric.interval[0] - exact.low) < 1e-9


def test_noise_at_the_limit_is_not_a_failure() -> None:
    assert mismatch_verdict(windows(500, 7), max_rate=0.01).action == Action.EXPAND  # 1.4% observed, not beyond doubt


def test_nothing_compared_is_unknown() -> None:
    assert mismatch_verdict([Window(0, 10, None, None)], max_rate=0.01).action == Action.HOLD
