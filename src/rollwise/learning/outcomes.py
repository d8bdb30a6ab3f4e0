"""What the store teaches the risk learner: finished rollouts, their change and their outcome.

A rollout teaches when it started with a scored change (its ``plan`` event keeps the features) and
has finished: rolled back or aborted is a failure, succeeded is not. A release undone after it
succeeded (``rollout undo`` inside the rollback window: the incident case) ends RolledBack, so it
counts as a failure too; the store keeps no separate incident records to attribute. Every finished
rollout counts toward its service's recent change failure rate. Reads through the ``Store`` protocol.
"""

from __future__ import annotations

from rollwise.core.evidence import EvidenceError, evidence_of
from rollwise.core.model import Phase
from rollwise.core.protocols import Store
from rollwise.learning.risk import PastRollout

FAILED = (Phase.ROLLED_BACK, Phase.ABORTED)


def past_rollouts(store: Store) -> list[PastRollout]:
    past = []
    for record in store.list():
        if not record.phase.terminal:
            continue
        features = None
        for event in store.events(record.name):
            if event.type != "plan":
                continue
            try:
                plan = evidence_of(event.data).plan
            except (EvidenceError, ValueError):
                continue
            if plan is not None:
                features = {k: float("nan") if v is None else float(v) for k, v in plan.features.items()}
        past.append(PastRollout(record.spec.service, record.finished_at or record.updated_at,
                                record.phase in FAILED, features))
    return past
