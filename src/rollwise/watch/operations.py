"""The watch's writes as control-plane operations: each a store change plus its audit row.

The CLI (acting on the store directly, audited with role ``local``) and the API's routes (a token's
role) both call these, so a change recorded either way leaves the same trace.
"""

from __future__ import annotations

from rollwise.core.protocols import AuditLog, WatchStore
from rollwise.watch.changes import Change


def record_change(watch: WatchStore, audit: AuditLog, change: Change, *, role: str) -> Change:
    """Store ``change`` and audit it as ``change.record`` on ``service:<service>``."""
    stored = watch.record_change(change)
    audit.append(actor=change.actor, role=role, action="change.record", target=f"service:{change.service}",
                 after=stored.to_json(), reason=change.description or None, at=change.at)
    return stored
