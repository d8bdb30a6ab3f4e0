"""Similar past incidents: the signature of a rollback (from its RCA) or a watch incident, kept when it ends,
and the three most like it for ``rollwise incidents similar`` and the postmortem.

A rollback is a rollout that ended rolled back or aborted; its signature is read from its RCA
(``report/rca.py``): the regressed metrics with their effect sizes (log of canary over baseline),
the routes that regressed (``report/routes.py``), the change's features (its ``plan`` event, when it
was started with ``--repo``) and how it ended. A watch incident's comes from the incident: its
metric and effect (after over before), the culprit change's kind, and what resolved it (undone, flag
killed, by itself). The scoring is ``learning/incident_memory.py``; the store is an ``IncidentMemory``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from rollwise.core.evidence import EvidenceError, evidence_of
from rollwise.core.model import Event, Phase, RolloutRecord
from rollwise.core.protocols import IncidentMemory, NotFoundError, Store, TextEmbedder, WatchStore
from rollwise.learning.incident_memory import (
    ABORTED,
    ROLLED_BACK,
    Retrieval,
    Signature,
    log_ratio,
    resolution_of_actions,
    similar,
)
from rollwise.report.rca import Rca, build_rca, current_run
from rollwise.watch.incidents import Incident
from rollwise.watch.render import incident_lines

_log = logging.getLogger(__name__)
FAILED = (Phase.ROLLED_BACK, Phase.ABORTED)
_KINDS = {"errorRate": "errorRate", "latency": "latency"}


def rollout_id(record: RolloutRecord) -> str:
    return f"rollout:{record.name}#{record.run}"


def incident_id(incident: Incident) -> str:
    return f"incident:{incident.id}"


def _change_features(record: RolloutRecord, events: Sequence[Event]) -> dict[str, float]:
    kind = "flag" if record.spec.traffic.router == "flag" else "deploy"
    features = {f"kind:{kind}": 1.0}
    for event in events:
        if event.type != "plan":
            continue
        try:
            plan = evidence_of(event.data).plan
        except (EvidenceError, ValueError):
            continue
        if plan is not None:
            features.update({k: float(v) for k, v in plan.features.items() if v is not None})
    return features


def rca_digest(rca: Rca) -> str:
    """The RCA's words about the failure (why, what, where, logs, when), without names, times or the timeline."""
    lines = rca.text().splitlines()[2:]  # the title and "What: v2 replaced v1" name versions, not causes
    cut = next((i for i, line in enumerate(lines) if line.startswith(("Impact:", "When it began:"))), len(lines))
    return "\n".join(lines[:cut])


def rollout_signature(record: RolloutRecord, events: Sequence[Event], rca: Rca) -> Signature:
    metrics: dict[str, float] = {}
    for regression in rca.regressions:
        effect = log_ratio(regression.canary, regression.baseline)
        if effect is None and regression.judge_effect is not None:
            effect = regression.judge_effect
        metrics[_KINDS.get(regression.kind, regression.metric)] = round(effect if effect is not None else 1.0, 4)
    if record.phase == Phase.ROLLED_BACK:
        resolution = ROLLED_BACK if rca.culprit else "rolled back"
    else:
        who = next((e.actor for e in reversed(events) if e.type == "command"), None)
        resolution = f"{ABORTED} by {who}" if who else ABORTED
    reason = rca.reason.splitlines()[0].split("; ")[0] if rca.reason else str(record.phase)
    return Signature(id=rollout_id(record), source="rollback", service=record.spec.service,
                     at=record.finished_at or record.updated_at, metrics=metrics,
                     routes=tuple(r.route for r in rca.routes if r.regressed),
                     change=_change_features(record, events), resolution=resolution, text=rca_digest(rca),
                     title=f"{record.name} {record.canary_version} ({record.spec.service}): {reason}"[:140])


def incident_signature(incident: Incident) -> Signature:
    onset: dict[str, Any] = (incident.attribution or {}).get("onset") or {}
    effect = log_ratio(onset.get("after_mean"), onset.get("before_mean"))
    if effect is not None and incident.metric == "volume":
        effect = -effect  # a drop in requests is the bad side
    culprit = incident.culprit or {}
    change = {f"kind:{culprit['kind']}": 1.0} if culprit.get("kind") else {}
    text = "\n".join(line for line in incident_lines(incident)
                     if not line.startswith(("incident #", "onset:", "detected:", "action:", "resolved:")))
    return Signature(id=incident_id(incident), source="incident", service=incident.service,
                     at=incident.resolved_at or incident.opened_at,
                     metrics={incident.metric: round(effect if effect is not None else 1.0, 4)},
                     change=change,
                     resolution=resolution_of_actions(incident.actions, incident.resolved_at is not None),
                     text=text, title=f"incident #{incident.id} on {incident.service}: {incident.metric}")


def signature_of_rollout(store: Store, record: RolloutRecord) -> Signature:
    events = current_run(store.events(record.name))
    return rollout_signature(record, events, build_rca(record, events, store.windows(record.name)))


def query_signature(store: Store, watch: WatchStore, ident: str) -> Signature:
    """``ident``: a watch incident's number (``12`` or ``incident:12``) or a rollout's name.

    Raises ``NotFoundError`` naming what was looked for.
    """
    number = ident.removeprefix("incident:").removeprefix("#")
    if number.isdigit():
        incident = watch.incident(int(number))
        if incident is None:
            raise NotFoundError(f"no incident #{number}")
        return incident_signature(incident)
    return signature_of_rollout(store, store.get(ident.removeprefix("rollout:").split("#")[0]))


def backfill(store: Store, watch: WatchStore, memory: IncidentMemory) -> int:
    """Remember the store's rollbacks and resolved incidents the memory lacks (kept before it existed, or by a
    controller without LanceDB); returns how many."""
    known = {r.signature.id for r in memory.remembered(None)}
    missing = [signature_of_rollout(store, r) for r in store.list()
               if r.phase in FAILED and rollout_id(r) not in known]
    missing += [incident_signature(i) for i in watch.incidents()
                if i.resolved_at is not None and incident_id(i) not in known]
    memory.remember(missing)
    return len(missing)


def similar_to(memory: IncidentMemory, embedder: TextEmbedder | None, query: Signature, k: int = 3) -> Retrieval:
    """The ``k`` remembered incidents most like ``query`` (hybrid, or signature only without a model)."""
    return similar(memory, embedder, query, k)


class IncidentRecorder:
    """``core.protocols.IncidentRecorder``: a rollback's or resolved incident's signature into the memory.

    The memory opens on the first rollback (``open_memory``: LanceDB is imported only then); a failure
    is logged and the rollout's end stands.
    """

    def __init__(self, store: Store, open_memory: Callable[[], IncidentMemory]) -> None:
        self.store, self.open_memory = store, open_memory
        self._memory: IncidentMemory | None = None

    def _keep(self, build: Callable[[], Signature], what: str) -> None:
        try:
            if self._memory is None:
                self._memory = self.open_memory()
            self._memory.remember([build()])
        except Exception as exc:  # the memory is a help, not a reason to fail a tick
            _log.warning("incident memory: could not keep %s: %s", what, " ".join(str(exc).split())[:300])

    def rollout_ended(self, record: RolloutRecord, events: Sequence[Event]) -> None:
        if record.phase in FAILED:
            self._keep(lambda: signature_of_rollout(self.store, record), record.name)

    def incident_resolved(self, incident: Incident) -> None:
        self._keep(lambda: incident_signature(incident), f"incident #{incident.id}")
