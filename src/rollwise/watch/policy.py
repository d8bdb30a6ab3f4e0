"""What the watch may do about an incident, decided from the attribution and the service's policy.

Pure: returns the planned actions, each with the rule that allowed or refused it and the numbers, so
what was *not* done is on the record too. The rules: ``notify`` whenever the policy says so; ``undo``
only for a rollwise release of this service, ``killFlag`` only for a flag change the service reads,
and either only when the attribution names a culprit with at least ``minConfidence``. An anomaly with
no attributable change never leads to an undo or a kill.
"""

from __future__ import annotations

from dataclasses import dataclass

from rollwise.spec.models import WatchSpec
from rollwise.watch.attribution import Attribution

RELEASE_KINDS = ("rollout-start", "rollout-step", "promotion")


@dataclass(frozen=True)
class Planned:
    kind: str  # notify | undo | kill-flag
    target: str
    allowed: bool
    rule: str


def plan_actions(attribution: Attribution, policy: WatchSpec) -> list[Planned]:
    planned: list[Planned] = []
    if "notify" in policy.actions:
        planned.append(Planned("notify", "service", True, "policy notifies on every incident"))
    culprit = attribution.culprit
    corrective = [a for a in policy.actions if a in ("undo", "killFlag")]
    if not corrective:
        return planned
    if culprit is None:
        return [*planned, Planned("undo/kill-flag", "-", False,
                                  f"no attributable change ({attribution.reason}): nothing is undone")]
    bar = f"confidence {attribution.confidence:.2f} {'>=' if attribution.confidence >= policy.minConfidence else '<'}"
    bar += f" minConfidence {policy.minConfidence:.2f}"
    if attribution.confidence < policy.minConfidence:
        return [*planned, Planned("undo/kill-flag", culprit.id, False, bar)]
    rollout = culprit.data.get("rollout") if culprit.source == "rollwise" else None
    if culprit.kind in RELEASE_KINDS and rollout:
        allowed = "undo" in policy.actions
        planned.append(Planned("undo", f"rollout:{rollout}", allowed,
                               f"{bar}; culprit {culprit.kind} of {culprit.version}"
                               + ("" if allowed else "; undo not in the policy's actions")))
    elif culprit.kind == "flag" and culprit.scope and culprit.scope.startswith("flag:"):
        flag = culprit.scope[5:]
        allowed = "killFlag" in policy.actions and flag in policy.flags
        why = "" if allowed else "; killFlag not in actions or the flag not in watch.flags"
        planned.append(Planned("kill-flag", f"flag:{flag}", allowed, f"{bar}; culprit flag change{why}"))
    else:
        planned.append(Planned("undo/kill-flag", culprit.id, False,
                               f"{bar}; the culprit ({culprit.kind} from {culprit.source}) is not a rollwise "
                               "release or flag: people are told, nothing is undone"))
    return planned
