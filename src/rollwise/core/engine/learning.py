"""Learning across releases: the priors a rollout begins with, and what it leaves for the next.

When a rollout begins, the engine reads the past releases' effects once through its
``ReleaseHistory`` and fits each metric's mixture prior (``rollwise.learning.priors``); the priors
are kept in ``carry.priors`` and never refitted, so the judge's e-values stay valid. When a rollout
ends, what its metrics measured (``core.releases.effects_of``) goes back to the same history,
after the ending is committed: the rollout's own decision never waits on it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rollwise.core.carry import PriorsRead
from rollwise.core.engine.change import Change
from rollwise.core.engine.observation import failure
from rollwise.core.model import Event, RolloutRecord
from rollwise.core.protocols import ReleaseHistory
from rollwise.core.releases import effects_of

if TYPE_CHECKING:
    from rollwise.core.engine.reconciler import RolloutEngine

_log = logging.getLogger(__name__)


def with_priors(engine: RolloutEngine, record: RolloutRecord, change: Change) -> RolloutRecord:
    """``record`` with the priors fitted on past releases (once; an unreadable history leaves flat ones)."""
    from rollwise.learning.priors import LEARNABLE, fit_priors

    analysis = record.spec.analysis()
    if engine.releases is None or record.carry.priors is not None or analysis is None:
        return record
    kinds = sorted({m.type for m in analysis.metrics if m.type in LEARNABLE and m.minEffect is None})
    if not kinds:
        return record
    try:
        effects = engine.releases.past_effects(kinds)
    except Exception as exc:  # no history is no prior, not a reason to stop; but say why there is none
        error = failure(exc)
        change.events.append(engine.event(record, "learning-error", f"past releases unavailable: {error} "
                                          "(judging with flat mixtures)", error=error))
        return record.model_copy(update={"carry": record.carry.but(priors=PriorsRead(error=error))})
    priors = fit_priors(record.spec.service, analysis.metrics, effects)
    read = PriorsRead(metrics={name: p.to_dict() for name, p in priors.items()}, releases=len(effects))
    if priors:
        said = ", ".join(f"{name}: ratio ~{p.centre:.3g} from {p.source} ({p.service_releases} own, "
                         f"{p.pooled_releases} all)" for name, p in priors.items())
        change.events.append(engine.event(record, "priors", f"mixture priors from past releases: {said}",
                                          priors=read.metrics, releases=len(effects)))
    return record.model_copy(update={"carry": record.carry.but(priors=read)})


def remember(releases: ReleaseHistory, record: RolloutRecord, events: Sequence[Event]) -> None:
    """Keep what an ended rollout measured. After the commit: a failure here is logged, the end stands."""
    try:
        releases.record_effects(effects_of(record, events))
    except Exception as exc:  # the rollout has ended either way; the next one just learns less
        _log.warning("could not keep %s's effects for later priors: %s", record.name, failure(exc))
