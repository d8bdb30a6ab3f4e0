"""Microsoft Teams notifier for a Workflows ("When a Teams webhook request is received") webhook.

Office 365 connectors and their MessageCards are retired; a Workflows webhook takes a ``message``
whose attachment is an Adaptive Card. Version 1.4 is what every Teams client renders, so the card
sticks to 1.4 elements: TextBlock, FactSet, Container and Action.OpenUrl.
"""

from __future__ import annotations

from typing import Any

from rollwise.adapters.notifiers.delivery import Notice, WebhookNotifierBase, clip

ADAPTIVE_CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
ADAPTIVE_CARD_VERSION = "1.4"
CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
_COLOR = {"good": "Good", "warn": "Warning", "bad": "Attention"}


def _text(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": clip(text, 2000), "wrap": True, **style}


def adaptive_card(notice: Notice) -> dict[str, Any]:
    facts = [
        {"title": "Service", "value": notice.service},
        {"title": "Versions", "value": f"{notice.stable} → {notice.canary}"},
        {"title": "Rollout", "value": notice.rollout},
    ]
    if notice.weight is not None:
        moved = f"{notice.previous_weight:g}% → " if notice.previous_weight is not None else ""
        facts.append({"title": "Canary traffic", "value": f"{moved}{notice.weight:g}%"})
    if notice.region:
        facts.append({"title": "Region", "value": notice.region})
    if notice.rule:
        facts.append({"title": "Rule", "value": notice.rule})
    body: list[dict[str, Any]] = [
        _text(notice.title, size="Large", weight="Bolder", color=_COLOR[notice.severity]),
        _text(notice.summary, isSubtle=True),
        {"type": "FactSet", "facts": facts},
    ]
    if notice.culprit is not None:
        body.append({
            "type": "Container", "style": "attention",
            "items": [_text(f"Culprit metric: {notice.culprit.name} ({notice.culprit.test} test)", weight="Bolder"),
                      _text(notice.culprit.text)],
        })
    if notice.why:
        body.append(_text(f"**Why:** {notice.why}"))
    for metric in notice.metrics:
        if notice.culprit is None or metric.name != notice.culprit.name:
            body.append(_text(f"- {metric.text}", spacing="None"))
    if notice.report_hint and not notice.report_url:
        body.append(_text(f"Report: `{notice.report_hint}`", isSubtle=True))
    card: dict[str, Any] = {
        "$schema": ADAPTIVE_CARD_SCHEMA,
        "type": "AdaptiveCard",
        "version": ADAPTIVE_CARD_VERSION,
        "body": body,
        "msteams": {"width": "Full"},
    }
    if notice.report_url:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open the report", "url": notice.report_url}]
    return card


def teams_message(notice: Notice) -> dict[str, Any]:
    return {
        "type": "message",
        "attachments": [{"contentType": CONTENT_TYPE, "contentUrl": None, "content": adaptive_card(notice)}],
    }


class TeamsNotifier(WebhookNotifierBase):
    """Posts an Adaptive Card to a Teams Workflows webhook URL in the background."""

    channel = "teams"

    def render(self, notice: Notice) -> dict[str, Any]:
        return teams_message(notice)
