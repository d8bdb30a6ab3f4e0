"""Generic JSON webhook, signed with HMAC-SHA256 so a receiver can trust and de-duplicate it.

Signature scheme (also in docs/webhooks.md):

* ``X-Rollwise-Timestamp``: Unix seconds when this attempt was sent (integer, as text).
* ``X-Rollwise-Signature``: ``sha256=`` + lowercase hex of HMAC-SHA256(secret, ``<timestamp>.<body>``)
  where ``<body>`` is the exact request body bytes.
* ``X-Rollwise-Delivery``: a stable id for the event (same on every retry) to drop duplicates.

Signing the timestamp together with the body lets a receiver reject replays: it recomputes the
HMAC, compares in constant time, and refuses timestamps more than ``tolerance_s`` (default 5 min)
away from its clock. Each retry is re-signed with a fresh timestamp, so a slow retry stays valid.
Without a secret the body is sent unsigned (and the receiver should treat it as untrusted).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

from rollwise.adapters.notifiers.delivery import DeliveryLog, Notice, RetryPolicy, WebhookNotifierBase

SIGNATURE_HEADER = "X-Rollwise-Signature"
TIMESTAMP_HEADER = "X-Rollwise-Timestamp"
DELIVERY_HEADER = "X-Rollwise-Delivery"
EVENT_HEADER = "X-Rollwise-Event"
PAYLOAD_VERSION = 1


def _bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def sign(secret: str | bytes, body: str | bytes, timestamp: int | str) -> str:
    """``sha256=<hex>`` over ``<timestamp>.<body>``."""
    message = str(timestamp).encode() + b"." + _bytes(body)
    return "sha256=" + hmac.new(_bytes(secret), message, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str | bytes,
    body: str | bytes,
    timestamp: str | int | float | None,
    signature: str | None,
    tolerance_s: float = 300,
    now: float | None = None,
) -> bool:
    """True only if ``signature`` is ours for exactly this body and timestamp, and the timestamp is
    within ``tolerance_s`` of ``now`` (either side, to allow for clock skew). Never raises."""
    if not signature or timestamp is None or not secret:
        return False
    try:
        ts = int(float(timestamp))
    except (TypeError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_s:
        return False
    expected = sign(secret, body, str(timestamp).strip())
    given = signature.strip()
    if not given.startswith("sha256="):
        given = "sha256=" + given
    return hmac.compare_digest(expected.encode(), given.encode())


def webhook_payload(notice: Notice) -> dict[str, Any]:
    event = notice.event
    return {
        "version": PAYLOAD_VERSION,
        "id": delivery_id(notice),
        "kind": notice.kind,
        "rollout": notice.rollout,
        "service": notice.service,
        "stable": notice.stable,
        "canary": notice.canary,
        "region": notice.region,
        "weight": notice.weight,
        "previous_weight": notice.previous_weight,
        "stage": notice.stage,
        "title": notice.title,
        "summary": notice.summary,
        "why": notice.why,
        "rule": notice.rule,
        "culprit": None if notice.culprit is None else {
            "metric": notice.culprit.name, "test": notice.culprit.test, "text": notice.culprit.text,
            "canary": notice.culprit.canary, "baseline": notice.culprit.baseline, "effect": notice.culprit.effect,
        },
        "report_url": notice.report_url,
        "event": event.model_dump(mode="json"),
    }


def delivery_id(notice: Notice) -> str:
    """Stable across retries and processes: the same event always gets the same id."""
    event = notice.event
    digest = hashlib.sha256(f"{event.rollout}|{event.at!r}|{event.type}|{event.message}".encode()).hexdigest()
    return f"{event.rollout}-{digest[:16]}"


class WebhookNotifier(WebhookNotifierBase):
    """POSTs a JSON event to any URL, HMAC-signed when a secret is configured."""

    channel = "webhook"

    def __init__(self, url: str, secret: str | None = None, log: DeliveryLog | None = None,
                 policy: RetryPolicy | None = None, clock: Callable[[], float] = time.time, **kwargs: Any):
        super().__init__(url, log=log, policy=policy, **kwargs)
        self.secret = secret
        self._clock = clock

    def render(self, notice: Notice) -> dict[str, Any]:
        return webhook_payload(notice)

    def headers(self, body: bytes) -> dict[str, str]:
        payload = json.loads(body)
        headers = {DELIVERY_HEADER: str(payload.get("id", "")), EVENT_HEADER: str(payload.get("kind", ""))}
        if self.secret:
            timestamp = str(int(self._clock()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(self.secret, body, timestamp)
        return headers

