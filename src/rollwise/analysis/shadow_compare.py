"""Did the shadow answer like the primary? One exact test at the end of a shadow run.

The comparator counts mirrored requests it compared and those whose responses differed. At the
end of the shadow's duration the engine asks once — a single look, so a fixed-sample test is
valid — whether the mismatch rate is above the spec's ``maxMismatchRate`` beyond doubt: the
Clopper–Pearson lower bound at level ``alpha`` must exceed it.
"""

from __future__ import annotations

from collections.abc import Iterable

from scipy.stats import beta

from rollwise.core.evidence import JudgeDetails, MetricEvidence, MetricParams, SideCounts
from rollwise.core.model import Action, Verdict, Window
from rollwise.core.units import format_percent


def mismatch_verdict(windows: Iterable[Window], max_rate: float, alpha: float = 0.01) -> Verdict:
    compared = mismatches = 0.0
    for window in windows:
        if window.canary is not None:
            compared += window.canary.extra.get("compared", 0.0)
            mismatches += window.canary.extra.get("mismatches", 0.0)
    n, k = int(compared), int(mismatches)
    if n == 0:
        return Verdict(Action.HOLD, "no compared responses from the shadow", rule="shadow.compare.noData",
                       details=JudgeDetails(compared=0, mismatches=0))
    rate = k / n
    lower = float(beta.ppf(alpha, k, n - k + 1)) if k > 0 else 0.0
    upper = float(beta.ppf(1 - alpha, k + 1, n - k)) if k < n else 1.0
    failed = lower > max_rate
    summary = (f"mismatch rate {format_percent(rate)} ({k} of {n} responses differed; "
               f"{int((1 - 2 * alpha) * 100)}% bounds {format_percent(lower)}–{format_percent(upper)}) "
               f"{'exceeds' if failed else 'within'} maxMismatchRate {format_percent(max_rate)}")
    result = MetricEvidence(
        metric="shadow-mismatch", test="clopper-pearson", action=str(Action.ROLLBACK if failed else Action.EXPAND),
        statistic=lower, threshold=max_rate, canary=SideCounts(compared=n, mismatches=k), effect=rate,
        interval=[lower, upper], params=MetricParams(alpha=alpha, maxMismatchRate=max_rate), summary=summary,
    )
    return Verdict(
        Action.ROLLBACK if failed else Action.EXPAND,
        ("shadow-mismatch: " if failed else "") + summary,
        rule="shadow.maxMismatchRate" if failed else "shadow.compare.pass",
        culprit="shadow-mismatch" if failed else None,
        metrics=(result,),
        details=JudgeDetails(compared=n, mismatches=k),
    )
