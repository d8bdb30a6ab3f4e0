"""The watch's hands: undo a release through the control plane, kill a flag, tell people.

Undo goes through ``ControlPlane.command`` like a person's would (so the engine's refusals apply:
only a Succeeded rollout still in its rollback window, i.e. while the previous version is warm, and
the audit row names the watch); a kill goes through the flag repository and is audited and logged as
a change; a notification is an ``incident`` event handed to the configured notifiers.
"""

from __future__ import annotations

import time
from typing import Any

from rollwise.control.plane import ControlPlane
from rollwise.control.principal import Principal, Role
from rollwise.core.model import Event, RolloutRecord
from rollwise.core.protocols import Notifier, WatchStore
from rollwise.watch.changes import ANY_SERVICE, Change
from rollwise.watch.incidents import Incident

WATCH = Principal(name="rollwise-watch", role=Role.releaser, token_id=None)


class PlaneActuator:
    def __init__(self, plane: ControlPlane, watch: WatchStore, notifier: Notifier | None = None,
                 flags: Any = None) -> None:
        self.plane, self.watch, self.notifier, self.flags = plane, watch, notifier, flags

    def undo(self, rollout: str, reason: str) -> str:
        record = self.plane.command(rollout, "undo", WATCH, reason)
        return f"{rollout}: {record.phase}, traffic back to {record.stable_version}"

    def kill_flag(self, flag: str, reason: str) -> str:
        if self.flags is None:
            raise RuntimeError("no flag file is served here (rollwise serve --flags FILE)")
        change = self.flags.kill(flag, WATCH.actor, reason)
        self.plane.audit.append(actor=WATCH.actor, role=WATCH.audit_role, action="flag.kill", target=f"flag:{flag}",
                                before=change.before, after=change.after, reason=reason)
        self.watch.record_change(Change(service=ANY_SERVICE, at=time.time(), kind="flag", scope=f"flag:{flag}",
                                        description=f"kill: {reason}", actor=WATCH.actor, source="rollwise",
                                        data={"flag": flag, "action": "kill"}))
        return f"flag {flag} killed"

    def notify(self, record: RolloutRecord, incident: Incident, message: str) -> None:
        if self.notifier is None:
            return
        culprit = incident.culprit or {}
        self.notifier.notify(record, Event(
            rollout=record.name, at=incident.opened_at, actor=WATCH.actor, type="incident", message=message,
            data={"incident": incident.id, "service": incident.service, "metric": incident.metric,
                  "onset": incident.onset, "culprit": culprit.get("id"),
                  "confidence": incident.attribution.get("confidence")}))
