"""Secrets in a spec: which fields hold them, and how they look to anyone who reads a spec back.

Slack and Teams webhook URLs carry their token in the path, a generic webhook URL may carry one in
its query, and ``webhookSecret`` signs deliveries. The store keeps what was given (the controller
needs it to deliver), but every read path (API, audit log, dashboard) shows the redacted form:
the URL's scheme and host, then ``***`` and a short SHA-256 fingerprint, so a reader sees *that*
a secret changed without learning it. Sending a redacted value back (``GET`` then ``PUT``) keeps
the current secret. The better habit is a reference: ``slackEnv: ROLLWISE_NOTIFY_…`` names an
environment variable of the process that delivers, so the secret never enters the spec at all.
"""

from __future__ import annotations

import copy
import hashlib
import re
from typing import Any
from urllib.parse import urlsplit

MARK = "***sha256:"
PLACEHOLDER = re.compile(r"(https?://[^/\s]+/)?\*\*\*sha256:[0-9a-f]{8}")
SECRET_URL_FIELDS = ("slack", "teams", "webhook")
SECRET_FIELDS = (*SECRET_URL_FIELDS, "webhookSecret")


def fingerprint(secret: str) -> str:
    """Eight hex digits of the secret's SHA-256: enough to see a change, not to recover a long token."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()[:8]


def redact(value: str, is_url: bool) -> str:
    """``https://hooks.slack.com/***sha256:1a2b3c4d`` for a URL, ``***sha256:1a2b3c4d`` otherwise."""
    mark = f"{MARK}{fingerprint(value)}"
    if not is_url:
        return mark
    parts = urlsplit(value)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        return mark
    port = f":{parts.port}" if _safe_port(parts) else ""
    return f"{parts.scheme}://{host}{port}/{mark}"


def _safe_port(parts: Any) -> int | None:
    try:
        return parts.port  # type: ignore[no-any-return]
    except ValueError:
        return None


def is_redacted(value: str) -> bool:
    """``value`` is a placeholder as ``redact`` writes it (not merely a secret that contains the mark)."""
    return PLACEHOLDER.fullmatch(value) is not None


def redact_notify(notify: dict[str, Any] | None) -> dict[str, Any] | None:
    """A copy of a dumped ``notify`` section with every literal secret redacted."""
    if not notify:
        return notify
    shown = dict(notify)
    for key in SECRET_FIELDS:
        if isinstance(shown.get(key), str):
            shown[key] = redact(shown[key], key in SECRET_URL_FIELDS)
    return shown


def redact_spec_dict(spec: dict[str, Any]) -> dict[str, Any]:
    """A copy of a dumped spec that can be shown to anyone allowed to read the rollout."""
    shown = copy.deepcopy(spec)
    if isinstance(shown.get("notify"), dict):
        shown["notify"] = redact_notify(shown["notify"])
    return shown


def keep_redacted(new: dict[str, Any] | None, current: dict[str, Any] | None) -> tuple[dict[str, Any] | None,
                                                                                      list[str]]:
    """``new``'s notify section with redacted values replaced by the ``current`` secret they stand for.

    Returns the section and the fields whose redacted value matches no current secret (a problem:
    a placeholder must never be delivered to as if it were the secret).
    """
    if not new:
        return new, []
    merged = dict(new)
    unknown = []
    for key in SECRET_FIELDS:
        value = merged.get(key)
        if not isinstance(value, str) or not is_redacted(value):
            continue
        old = (current or {}).get(key)
        if isinstance(old, str) and redact(old, key in SECRET_URL_FIELDS) == value:
            merged[key] = old
        else:
            unknown.append(key)
    return merged, unknown
