"""Change attribution over simulated service-days: is the culprit named, and is nothing done without one?

    python bench/watch_attribution.py [--days 240] [--out bench/results/watch_attribution.md]

Each service-day (``rollwise.simulate.change_days``) is a minute-by-minute error-rate series of one
service with diurnal and weekly traffic and a change log. Injected days: one change (a release of the
service, a flag it reads, its config, its dependency's deploy) regresses the service as a step, a
time bomb (10-30 min later) or an hour-long drift. Pre-change days: the anomaly begins before any
change, and a release lands 2-10 min after its onset. Quiet days: changes that change nothing.

The live watch's path is replayed: the detector (``watch/detector.py``) scores every point; an
incident opens on two consecutive alarming points; attribution (``watch/attribution.py``) gets the
last two hours of points and the changes recorded so far (and a per-variant split when a partial flag
rollout splits traffic); the policy (``watch/policy.py``: notify, undo, killFlag, minConfidence 0.5)
plans the actions. Counted: the injected culprit named, corrective actions taken on each kind of day.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from rollwise.simulate.change_days import FLAGS, ServiceDay, service_day
from rollwise.spec.models import WatchSpec
from rollwise.watch.attribution import attribute, estimate_onset
from rollwise.watch.detector import ALARM_SCORE, SeriesDetector
from rollwise.watch.policy import plan_actions
from rollwise.watch.series import FLOORS, RECENT

POLICY = WatchSpec(actions=["notify", "undo", "killFlag"], minConfidence=0.5, flags=list(FLAGS), dependsOn=["db"])
CONFIRM = 2
COOLDOWN_S = 3600.0
WINDOW_S = 7200.0


def alarms(day: ServiceDay) -> list[float]:
    detector = SeriesDetector(direction="up")
    found: list[float] = []
    streak = 0
    for k, (at, value) in enumerate(day.points):
        score = detector.score(at, value)
        if found and at - found[-1] < COOLDOWN_S:
            continue
        alarm = score >= ALARM_SCORE and FLOORS["errorRate"].material(day.points[max(0, k - RECENT):k], value, "up")
        streak = streak + 1 if alarm else 0
        if streak >= CONFIRM:
            found.append(at)
            streak = 0
    return found


def investigate(day: ServiceDay, at: float) -> tuple[str | None, float, int]:
    """(culprit id, confidence, corrective actions allowed) for an incident opened at ``at``."""
    points = [(t, v) for t, v in day.points if at - WINDOW_S <= t <= at]
    onset = estimate_onset(points)
    split = day.split(onset.at, at) if onset is not None else None
    result = attribute(points, [c for c in day.changes if c.at <= at], service="web", depends_on=["db"],
                       region="eu", flags=FLAGS, split=split)
    acted = sum(1 for p in plan_actions(result, POLICY) if p.allowed and p.kind != "notify")
    return (result.culprit.id if result.culprit else None), result.confidence, acted


def run(days: int) -> dict[str, object]:
    kinds = ["injected"] * (days * 5 // 12) + ["pre_change"] * (days // 4)
    kinds += ["quiet"] * (days - len(kinds))
    tally: Counter[str] = Counter()
    by_shape: Counter[str] = Counter()
    named_shape: Counter[str] = Counter()
    delays: list[float] = []
    confidences: list[float] = []
    for seed, kind in enumerate(kinds):
        day = service_day(seed, kind)
        tally[f"{kind}_days"] += 1
        for at in alarms(day):
            real = day.anomaly_at is not None and day.anomaly_at - 120 <= at <= day.anomaly_at + WINDOW_S
            culprit, confidence, acted = investigate(day, at)
            if not real:
                tally["false_alarms"] += 1
                tally["actions_on_false_alarms"] += acted
                continue
            tally[f"{kind}_detected"] += 1
            delays.append(at - (day.anomaly_at or at))
            if kind == "injected":
                by_shape[day.shape] += 1
                hit = culprit == day.culprit_id
                tally["culprit_named"] += hit
                named_shape[day.shape] += hit
                tally["injected_acted"] += acted
                if hit:
                    confidences.append(confidence)
            else:
                tally["pre_change_named"] += culprit is not None
                tally["pre_change_actions"] += acted
        if day.anomaly_at is not None:  # attribution alone: as if any detector alarmed a little after onset
            at = day.anomaly_at + (1800.0 if day.shape == "drift" else 180.0)
            culprit, _confidence, acted = investigate(day, at)
            tally[f"oracle_{kind}"] += 1
            if kind == "injected":
                tally["oracle_named"] += culprit == day.culprit_id
                named_shape[f"oracle {day.shape}"] += culprit == day.culprit_id
                by_shape[f"oracle {day.shape}"] += 1
            else:
                tally["oracle_pre_change_actions"] += acted
                tally["oracle_pre_change_named"] += culprit is not None
    return {"tally": tally, "by_shape": by_shape, "named_shape": named_shape, "delays": delays,
            "confidences": confidences}


def render(days: int, result: dict[str, object], seconds: float) -> str:
    t: Counter[str] = result["tally"]  # type: ignore[assignment]
    shapes: Counter[str] = result["by_shape"]  # type: ignore[assignment]
    named_shape: Counter[str] = result["named_shape"]  # type: ignore[assignment]
    delays: list[float] = result["delays"]  # type: ignore[assignment]
    conf: list[float] = result["confidences"]  # type: ignore[assignment]
    detected = t["injected_detected"]
    weeks = days / 7
    lines = [
        "# Change attribution on simulated service-days",
        "",
        f"    python bench/watch_attribution.py --days {days}",
        "",
        f"{days} service-days ({t['injected_days']} with an injected regression, {t['pre_change_days']} with an "
        f"anomaly that began before any change, {t['quiet_days']} quiet), {seconds:.1f} s on one core.",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| injected incidents detected | {detected} / {t['injected_days']} | |",
        f"| culprit named (of detected injected incidents) | {t['culprit_named']} / {detected} = "
        f"{100 * t['culprit_named'] / max(1, detected):.1f} % | >= 95 % |",
        f"| corrective actions on anomalies that began before any change | {t['pre_change_actions']} "
        f"(of {t['pre_change_detected']} detected; a culprit named in {t['pre_change_named']}) | 0 |",
        f"| false alarms (no anomaly) | {t['false_alarms']} = {t['false_alarms'] / weeks:.2f} per service-week | |",
        f"| corrective actions on false alarms | {t['actions_on_false_alarms']} | |",
        f"| injected incidents with a corrective action (undo / kill flag) | {t['injected_acted']} | |",
        f"| attribution alone (incident opened 3 min after a step's onset, 30 min into a drift): culprit "
        f"named | {t['oracle_named']} / {t['oracle_injected']} = "
        f"{100 * t['oracle_named'] / max(1, t['oracle_injected']):.1f} % | >= 95 % |",
        f"| attribution alone: corrective actions on anomalies that began before any change | "
        f"{t['oracle_pre_change_actions']} of {t['oracle_pre_change']} (a culprit named in "
        f"{t['oracle_pre_change_named']}) | 0 |",
        f"| median detection delay | {statistics.median(delays) if delays else float('nan'):.0f} s | |",
        f"| median confidence when the culprit is named | {statistics.median(conf) if conf else float('nan'):.2f} "
        "| |",
        "",
        "Culprit named, by regression shape (detected by the watch; and attribution alone): "
        + ", ".join(f"{s} {named_shape[s]}/{n}" for s, n in sorted(shapes.items())),
        "",
        "Corrective actions need a rollwise release (undo) or a flag the service reads (kill switch) named with",
        "confidence >= 0.5; a config or a dependency's deploy is named and people are notified, nothing is undone.",
        "Detection here is the minimal EWMA z-score detector (``watch/detector.py``), so the delay and false",
        "alarms measure it, not attribution; the detector's own benchmark is ``bench/watch.py``.",
        "",
        "What misses: this detector does not see the hour-long drifts at all (an EWMA follows a slow ramp), so the",
        "watch-path rows cover steps and time bombs only. The attribution-alone rows cover drifts too and fall",
        "short of the targets there: 30 min into a drift its start cannot be placed to the minute (the first",
        "minutes of a ramp hide in the noise), so a release landing 2-10 min after the true start can look like it",
        "came first. Attribution scales a change within 30 min of a drift's (or drift-like) onset down (x0.6),",
        "which keeps most such cases below the action threshold at the cost of fewer undos of real drifts.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=240)
    parser.add_argument("--out", type=Path, default=Path("bench/results/watch_attribution.md"))
    args = parser.parse_args()
    began = time.process_time()
    result = run(args.days)
    text = render(args.days, result, time.process_time() - began)
    args.out.write_text(text, encoding="utf-8")
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
