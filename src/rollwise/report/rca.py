"""Root-cause summary of a rollback or abort, worded to paste into an incident ticket.

It answers the questions an on-call engineer is asked first: what regressed and by how much
(with an interval), when it began relative to the traffic steps, which version/region/labels
were involved, how many bad requests users got, and what the agent did, when.

Onset is found by likelihood-ratio binary segmentation on the canary's per-window counts (errors,
and requests slower than the baseline's p99 frozen over the run): the split that best explains
the series as "rate before, higher rate after". A split counts only if 2·LLR ≥ 13.8 (p ≈ 0.0002
for one split; conservative enough for the max over splits of a short series). If no split is
significant but the canary is worse than the baseline from its first window, the regression came
with the release itself rather than with a later step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from scipy.stats import norm

from rollwise.core.evidence import Evidence, decision_of, parse_evidence
from rollwise.core.model import Event, Phase, RolloutRecord, VersionStats, Window
from rollwise.report.exemplars import TraceExample, trace_examples
from rollwise.report.logs import LogChange, log_changes
from rollwise.report.routes import RouteSplit, route_splits
from rollwise.report.saturation import Saturation, saturation

CHANGE_POINT_LLR2 = 13.8
_FAILED = (Phase.ROLLED_BACK, Phase.ABORTED)


@dataclass(frozen=True)
class Regression:
    """One metric that regressed: the judge's numbers plus a re-computation from the windows."""

    metric: str
    kind: str  # errorRate | latency | kpi | other
    test: str
    canary: float | None  # canary rate (errors, or share of requests slower than the bar)
    baseline: float | None
    difference: float | None
    interval: tuple[float, float] | None  # 95 % Newcombe interval for the difference
    judge_effect: float | None
    judge_interval: tuple[float, float] | None
    statistic: float | None
    threshold: float | None
    summary: str

    def text(self) -> str:
        if self.canary is None or self.baseline is None:
            return f"{self.metric}: {self.summary}"
        what = "slower than the baseline p99" if self.kind == "latency" else "errors" if self.kind == "errorRate" \
            else "bad"
        line = (f"{self.metric}: canary {_pct(self.canary)} {what} vs baseline {_pct(self.baseline)} "
                f"({_pp(self.difference)}")
        if self.interval is not None:
            line += f", 95% CI {_pp(self.interval[0])} to {_pp(self.interval[1])}"
        line += ")"
        if self.statistic is not None and self.threshold is not None:
            line += f"; {self.test} statistic {self.statistic:.4g} vs threshold {self.threshold:.4g}"
        return line


@dataclass(frozen=True)
class Onset:
    series: str  # "error rate" | "latency exceedance"
    at: float | None  # start of the first window of the worse segment; None: from the first window
    before: float
    after: float
    llr2: float
    relative: str  # in words, relative to the traffic steps

    def text(self) -> str:
        return (f"{self.series} went from {_pct(self.before)} to {_pct(self.after)} — {self.relative} "
                f"(2·LLR {self.llr2:.1f})")


@dataclass
class Rca:
    rollout: str
    service: str
    outcome: str
    failed: bool
    stable: str
    canary: str
    region: str | None
    labels: dict[str, str]
    started_at: float
    ended_at: float | None
    reason: str
    culprit: str | None
    rule: str | None
    regressions: list[Regression] = field(default_factory=list)
    onset: list[Onset] = field(default_factory=list)
    canary_requests: int = 0
    canary_errors: int = 0
    canary_slow: int = 0
    excess_errors: float = 0.0
    peak_weight: float = 0.0
    detection_s: float | None = None  # first canary traffic -> decision
    actions: list[tuple[float, str, str]] = field(default_factory=list)  # (at, actor, what)
    routes: list[RouteSplit] = field(default_factory=list)  # per http.route, when the source split it
    logs: list[LogChange] = field(default_factory=list)  # log templates new or rising in the canary
    traces: list[TraceExample] = field(default_factory=list)  # exemplar traces of the canary (OTLP)
    saturation: list[Saturation] = field(default_factory=list)  # CPU, memory, pool usage when reported

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["regressions"] = [asdict(r) for r in self.regressions]
        data["onset"] = [asdict(o) for o in self.onset]
        data["text"] = self.text()
        return data

    def text(self) -> str:
        when = _utc(self.ended_at) if self.ended_at else "still running"
        where = f" in {self.region}" if self.region else ""
        lines = [
            f"RCA — {self.service} {self.canary} ({self.rollout}): {self.outcome} at {when}",
            f"What: {self.canary} replaced {self.stable}{where}; peak canary traffic {self.peak_weight:g}%."
            + (f" Labels: {', '.join(f'{k}={v}' for k, v in sorted(self.labels.items()))}." if self.labels else ""),
            f"Why: {self.reason}" + (f" (rule {self.rule})" if self.rule else ""),
        ]
        if self.regressions:
            lines.append("Regressed:")
            lines += [f"  - {r.text()}" for r in self.regressions]
        elif self.failed:
            lines.append("Regressed: no metric regression in the evidence (ended by a person or by missing data).")
        if self.routes:
            lines.append("Where (per route, canary vs baseline):")
            lines += [f"  - {r.text()}" for r in self.routes]
        if self.saturation:
            lines.append("Saturation (mean per window, canary vs baseline):")
            lines += [f"  - {s.text()}" for s in self.saturation]
        if self.logs:
            lines.append("Logs (templates new or rising in the canary):")
            lines += [f"  - {c.text()}" for c in self.logs]
        if self.traces:
            lines.append("Exemplar traces (canary; spans at rollwise serve):")
            lines += [f"  - {t.text()}" for t in self.traces]
        if self.onset:
            lines.append("When it began:")
            lines += [f"  - {o.text()}" for o in self.onset]
        impact = (f"Impact: {self.canary_requests} requests served by {self.canary}, {self.canary_errors} failed "
                  f"(~{self.excess_errors:.0f} more than at the baseline's rate)")
        if self.canary_slow:
            impact += f", {self.canary_slow} slower than the baseline p99"
        lines.append(impact + ".")
        if self.detection_s is not None:
            lines.append(f"Detection: {self.detection_s:.0f} s after {self.canary} first got user traffic.")
        if self.actions:
            lines.append("What the agent did:")
            for at, actor, what in self.actions:
                lines.append(f"  {_clock(at - self.started_at)}  {_utc(at)}  [{actor}] {what}")
        return "\n".join(lines)


# ---------------------------------------------------------------- building


def current_run(events: Sequence[Event]) -> list[Event]:
    """The events of the latest run: a re-created rollout keeps its older runs' history."""
    starts = [i for i, e in enumerate(events) if e.type == "created"]
    return list(events[starts[-1]:]) if starts else list(events)


def build_rca(record: RolloutRecord, events: Sequence[Event], windows: Sequence[tuple[int, Window]] | Sequence[Window],
              ) -> Rca:
    events = current_run(events)
    plain = [w[1] if isinstance(w, tuple) else w for w in windows]
    with_data = [w for w in plain if w.has_data and w.canary is not None and w.canary.requests > 0]
    failed = record.phase in _FAILED
    ending = next((e for e in reversed(events) if e.type == "phase" and e.data.get("phase") == str(record.phase)),
                  None)
    decisive = _decisive_decision(events)
    # the ending's own evidence when it has some, else the decisive decision's
    evidence = parse_evidence((ending.data.get("evidence") if ending is not None else None) or (
        decisive.data.get("evidence") if decisive is not None else None))
    reason = ending.message if ending is not None else (record.paused_reason or str(record.phase))
    if ": " in reason and ending is not None:
        reason = reason.split(": ", 1)[1]
    types = _metric_types(record)
    bar = _latency_bar(with_data)
    regressions = _regressions(evidence, types, with_data, bar)
    onset = _onsets(with_data, events, bar, record.created_at) if with_data else []
    canary = VersionStats.merge([w.canary for w in with_data if w.canary is not None])
    baseline = VersionStats.merge([w.baseline for w in with_data if w.baseline is not None])
    base_rate = baseline.error_rate
    slow = sum(w.canary.count_above(bar) for w in with_data if w.canary is not None) if bar is not None else 0
    first_traffic = _first_traffic(events)
    detection = None
    if decisive is not None and first_traffic is not None and decision_of(decisive.data).action == "rollback":
        detection = max(0.0, decisive.at - first_traffic)
    return Rca(
        rollout=record.name, service=record.spec.service, outcome=str(record.phase), failed=failed,
        stable=record.stable_version, canary=record.canary_version, region=record.spec.region,
        labels=dict(record.spec.labels), started_at=record.created_at, ended_at=record.finished_at,
        reason=reason, culprit=evidence.culprit, rule=evidence.rule, regressions=regressions,
        onset=onset, canary_requests=canary.requests, canary_errors=canary.errors, canary_slow=slow,
        excess_errors=max(0.0, canary.errors - canary.requests * base_rate),
        peak_weight=max([float(e.data["weight"]) for e in events if e.type == "step" and "weight" in e.data],
                        default=record.route.canary_weight),
        detection_s=detection, actions=_actions(events), routes=route_splits(with_data),
        logs=log_changes(with_data), traces=trace_examples(with_data), saturation=saturation(with_data),
    )


def _decisive_decision(events: Sequence[Event]) -> Event | None:
    decisions = [e for e in events if e.type == "decision"]
    for action in ("rollback", "inconclusive"):
        chosen = next((e for e in reversed(decisions) if decision_of(e.data).action == action), None)
        if chosen is not None:
            return chosen
    return decisions[-1] if decisions else None


def _metric_types(record: RolloutRecord) -> dict[str, str]:
    analysis = record.spec.analysis()
    return {m.name: m.type for m in analysis.metrics} if analysis is not None else {}


def _latency_bar(windows: Sequence[Window]) -> float | None:
    """The baseline's p99 over the run, moved up to the next bucket bound so counts above it are exact."""
    baseline = VersionStats.merge([w.baseline for w in windows if w.baseline is not None])
    p99 = baseline.quantile(0.99)
    if p99 is None:
        return None
    bounds = [b for b, _ in baseline.latency_buckets if math.isfinite(b) and b >= p99]
    return bounds[0] if bounds else p99


def newcombe_interval(k1: int, n1: int, k2: int, n2: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Newcombe's hybrid score interval for p1 - p2 (Wilson intervals combined): sane at 0 events."""
    if n1 <= 0 or n2 <= 0:
        return None
    z = float(norm.ppf(0.5 + confidence / 2))

    def wilson(k: int, n: int) -> tuple[float, float]:
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return max(0.0, centre - half), min(1.0, centre + half)

    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1)
    l2, u2 = wilson(k2, n2)
    d = p1 - p2
    return d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def _counts(window: Window, kind: str, bar: float | None) -> tuple[int, int, int, int] | None:
    """(canary bad, canary n, baseline bad, baseline n) for one window."""
    c, b = window.canary, window.baseline
    if c is None or b is None:
        return None
    if kind == "latency":
        if bar is None or not c.latency_buckets or not b.latency_buckets:
            return None
        return c.count_above(bar), c.latency_buckets[-1][1], b.count_above(bar), b.latency_buckets[-1][1]
    return c.errors, c.requests, b.errors, b.requests


def _regressions(evidence: Evidence, types: Mapping[str, str], windows: Sequence[Window],
                 bar: float | None) -> list[Regression]:
    chosen = [m for m in evidence.metrics if m.action == "rollback" or m.metric == evidence.culprit]
    out = []
    for m in chosen:
        name = m.metric
        kind = types.get(name, "other")
        canary = baseline = diff = None
        interval = None
        if kind in ("errorRate", "latency") and windows:
            totals = [0, 0, 0, 0]
            for w in windows:
                counts = _counts(w, kind, bar)
                if counts is not None:
                    totals = [a + b for a, b in zip(totals, counts, strict=True)]
            k1, n1, k2, n2 = totals
            if n1 and n2:
                canary, baseline = k1 / n1, k2 / n2
                diff = canary - baseline
                interval = newcombe_interval(k1, n1, k2, n2)
        judge_interval = m.interval
        out.append(Regression(
            metric=name, kind=kind, test=m.test, canary=canary, baseline=baseline,
            difference=diff, interval=interval, judge_effect=m.effect,
            judge_interval=tuple(judge_interval) if judge_interval else None,  # type: ignore[arg-type]
            statistic=m.statistic, threshold=m.threshold, summary=m.summary,
        ))
    return out


def change_point(bad: Sequence[int], total: Sequence[int]) -> tuple[int, float, float, float] | None:
    """Best single split of a binomial series into (before, after) with a higher rate after.

    Returns (index of the first "after" element, rate before, rate after, 2·LLR) or None if the
    series is too short or the best split makes the rate go down.
    """
    n = len(total)
    if n < 2:
        return None

    def ll(k: float, m: float) -> float:
        if m <= 0:
            return 0.0
        p = k / m
        return (k * math.log(p) if k > 0 else 0.0) + ((m - k) * math.log(1 - p) if m - k > 0 else 0.0)

    k_all, n_all = sum(bad), sum(total)
    whole = ll(k_all, n_all)
    best: tuple[int, float, float, float] | None = None
    k_before = n_before = 0
    for split in range(1, n):
        k_before += bad[split - 1]
        n_before += total[split - 1]
        k_after, n_after = k_all - k_before, n_all - n_before
        if n_before == 0 or n_after == 0:
            continue
        before, after = k_before / n_before, k_after / n_after
        if after <= before:
            continue
        llr2 = 2 * (ll(k_before, n_before) + ll(k_after, n_after) - whole)
        if best is None or llr2 > best[3]:
            best = (split, before, after, llr2)
    return best


def _onsets(windows: Sequence[Window], events: Sequence[Event], bar: float | None, t0: float) -> list[Onset]:
    steps = [(e.at, e.data.get("previous_weight"), e.data.get("weight")) for e in events
             if e.type == "step" and e.data.get("weight") is not None]
    out = []
    for label, kind in (("error rate", "errorRate"), ("latency exceedance", "latency")):
        rows = [c for c in (_counts(w, kind, bar) for w in windows) if c is not None]
        if not rows:
            continue
        bad, total = [r[0] for r in rows], [r[1] for r in rows]
        base_bad, base_total = sum(r[2] for r in rows), sum(r[3] for r in rows)
        base_rate = base_bad / base_total if base_total else 0.0
        split = change_point(bad, total)
        if split is not None and split[3] >= CHANGE_POINT_LLR2:
            index, before, after, llr2 = split
            at = windows[index].start
            out.append(Onset(label, at, before, after, llr2, _relative(at, steps, t0)))
            continue
        k, n = sum(bad), sum(total)
        if n and base_total:
            low, _ = newcombe_interval(k, n, base_bad, base_total) or (0.0, 0.0)
            if low > 0:
                first = windows[0].start
                out.append(Onset(label, None, base_rate, k / n, 0.0,
                                 f"present from the first canary window ({_clock(first - t0)} in): it came with "
                                 "the release, not with a later traffic step"))
    return out


def _relative(at: float, steps: Sequence[tuple[float, Any, Any]], t0: float) -> str:
    previous = [s for s in steps if s[0] <= at]
    if not previous:
        return f"began at {_clock(at - t0)}, before any traffic step"
    step_at, old, new = previous[-1]
    moved = f"{old:g}% → {new:g}%" if old is not None else f"to {new:g}%"
    return f"began at {_clock(at - t0)}, {at - step_at:.0f} s after the canary weight moved {moved}"


def _first_traffic(events: Sequence[Event]) -> float | None:
    for e in events:
        if e.type == "step" and float(e.data.get("weight") or 0) > 0:
            return e.at
        if e.type == "step" and e.data.get("kind") in ("setMirror", "preview", "cutover"):
            return e.at
    return None


def _actions(events: Sequence[Event]) -> list[tuple[float, str, str]]:
    out = []
    for e in events:
        if e.type == "decision" and decision_of(e.data).action in ("continue", "hold"):
            continue
        if e.type in ("step", "decision", "phase", "command", "created", "spec-updated", "run", "wave"):
            out.append((e.at, e.actor, f"{e.type}: {e.message}"))
    return out


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.2f}%"


def _pp(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.2f} pp"


def _clock(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return f"+{int(seconds // 3600):d}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"


def _utc(at: float | None) -> str:
    if at is None:
        return "-"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
