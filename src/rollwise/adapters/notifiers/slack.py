"""Slack incoming-webhook notifier: one Block Kit message per stage change, ending or hold.

Why Block Kit rather than plain text: the header names the service and the move (v1 → v2, 10% →
25%), fields put stage/versions side by side, and the "why" section carries the canary vs
baseline numbers of the test that decided, so the channel reads as an audit trail. Slack rejects
a whole message that breaks its limits (50 blocks, 150-character headers, 3,000-character
section text, 10 fields of 2,000 characters), so every string is clipped before it is sent.
"""

from __future__ import annotations

from typing import Any

from rollwise.adapters.notifiers.delivery import Notice, WebhookNotifierBase, clip

MAX_BLOCKS = 50
MAX_HEADER = 150
MAX_SECTION = 3000
MAX_FIELD = 2000
MAX_FIELDS = 10
MAX_CONTEXT_ELEMENTS = 10
MAX_FALLBACK = 3000

_EMOJI = {"good": ":large_green_circle:", "warn": ":large_yellow_circle:", "bad": ":red_circle:"}


def escape(text: str) -> str:
    """Slack mrkdwn control characters: only &, < and > need escaping."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_clip(text: str, limit: int) -> str:
    """Escape for mrkdwn and clip to ``limit`` characters without cutting an entity in half."""
    escaped = escape(text)
    if len(escaped) <= limit:
        return escaped
    out, size = [], 0
    for char in text:
        piece = escape(char)
        if size + len(piece) > limit - 1:
            break
        out.append(piece)
        size += len(piece)
    return "".join(out) + "…"


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, MAX_SECTION)}}


def slack_message(notice: Notice) -> dict[str, Any]:
    """The webhook payload for ``notice``: a fallback ``text`` plus Block Kit ``blocks``."""
    header = f"{_EMOJI[notice.severity]} {notice.title}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": clip(header, MAX_HEADER), "emoji": True}},
    ]
    stage = f"{notice.weight:g}% canary" if notice.weight is not None else "—"
    if notice.previous_weight is not None and notice.weight is not None:
        stage = f"{notice.previous_weight:g}% → {notice.weight:g}%"
    fields = [
        f"*Service*\n{escape(notice.service)}",
        f"*Versions*\n{escape(notice.stable)} → {escape(notice.canary)}",
        f"*Stage*\n{stage} (stage {notice.stage})" if notice.stage is not None else f"*Stage*\n{stage}",
        f"*Rollout*\n{escape(notice.rollout)}",
    ]
    if notice.region:
        fields.append(f"*Region*\n{escape(notice.region)}")
    blocks.append({"type": "section",
                   "fields": [{"type": "mrkdwn", "text": clip(f, MAX_FIELD)} for f in fields[:MAX_FIELDS]]})
    blocks.append(_section(escape_clip(notice.summary, MAX_SECTION)))
    if notice.culprit is not None:
        culprit = notice.culprit
        lines = [f"*Culprit metric: {escape(culprit.name)}* ({escape(culprit.test)} test)"]
        if culprit.canary or culprit.baseline:
            lines.append(f"canary {escape(culprit.canary or 'n/a')} vs baseline {escape(culprit.baseline or 'n/a')}")
        lines.append(escape(culprit.text))
        blocks.append(_section("\n".join(lines)))
    if notice.why:
        blocks.append(_section(f"*Why:* {escape(notice.why)}"))
    others = [m for m in notice.metrics if notice.culprit is None or m.name != notice.culprit.name]
    if others:
        blocks.append(_section("\n".join(f"• {escape(m.text)}" for m in others)))
    if notice.report_url:
        blocks.append(_section(f"<{notice.report_url}|Open the report> for the timeline, charts and RCA"))
    elif notice.report_hint:
        blocks.append(_section(f"Report: `{escape(notice.report_hint)}`"))
    when = f"<!date^{int(notice.event.at)}^{{date_short_pretty}} {{time_secs}}|{notice.event.at:.0f}>"
    context = [f"{when} · by {escape(notice.event.actor)} · event {notice.event.type}"]
    if notice.rule:
        context.append(f"rule `{escape(notice.rule)}`")
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": clip(c, MAX_FIELD)}
                                                   for c in context[:MAX_CONTEXT_ELEMENTS]]})
    if len(blocks) > MAX_BLOCKS:
        blocks = [*blocks[: MAX_BLOCKS - 1], _section("… more in the report")]
    fallback = notice.title + (f" — {notice.why}" if notice.why else "")
    return {"text": clip(fallback, MAX_FALLBACK), "blocks": blocks}


class SlackNotifier(WebhookNotifierBase):
    """Posts to a Slack incoming webhook (``https://hooks.slack.com/services/…``) in the background."""

    channel = "slack"

    def render(self, notice: Notice) -> dict[str, Any]:
        return slack_message(notice)
