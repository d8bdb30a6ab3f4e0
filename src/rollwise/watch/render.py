"""Incidents as text for people: ``rollwise incidents show`` and the postmortem report."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rollwise.watch.incidents import Incident


def _when(at: float | None) -> str:
    return "-" if at is None else datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def incident_lines(incident: Incident) -> list[str]:
    attribution: dict[str, Any] = incident.attribution or {}
    onset = attribution.get("onset") or {}
    culprit = incident.culprit
    lines = [
        f"incident #{incident.id} on {incident.service} ({incident.status})",
        f"metric: {incident.metric}",
        f"onset: {_when(incident.onset)}"
        + (f" (95% interval {_when(onset.get('low'))} .. {_when(onset.get('high'))})" if onset else ""),
        f"detected: {_when(incident.opened_at)}",
    ]
    if onset:
        lines.append(f"effect: {onset['before_mean']:.4g} -> {onset['after_mean']:.4g} "
                     f"(difference {onset['effect']:.4g}, 95% CI {onset['effect_low']:.4g} .. "
                     f"{onset['effect_high']:.4g})")
    if culprit:
        lines.append(f"culprit: {culprit.get('id')} {culprit.get('kind')} of {culprit.get('service')} "
                     f"version {culprit.get('version')} at {_when(culprit.get('at'))} "
                     f"(confidence {attribution.get('confidence', 0):.2f})")
    else:
        lines.append(f"culprit: no change ({attribution.get('reason', 'none attributable')})")
    if attribution.get("reason") and culprit:
        lines.append(f"why: {attribution['reason']}")
    split = attribution.get("split") or {}
    if split:
        lines.append(f"split: {split['version']} bad rate {split['rate']:.4f} vs others {split['others_rate']:.4f} "
                     f"(difference 95% CI {split['low']:.4f} .. {split['high']:.4f})")
    for action in incident.actions:
        lines.append(f"action: {_when(action.get('at'))} {action.get('kind')} {action.get('target')} "
                     f"-> {action.get('outcome')} [{action.get('rule')}] {action.get('detail', '')}".rstrip())
    if incident.resolved_at is not None:
        lines.append(f"resolved: {_when(incident.resolved_at)} (recovery {incident.recovery_s:.0f}s)")
    return lines


def incident_text(incident: Incident) -> str:
    return "\n".join(incident_lines(incident))
