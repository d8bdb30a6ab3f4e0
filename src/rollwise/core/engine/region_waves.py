"""Region waves: the canary's steps run wave by wave over groups of regions.

The spec is a canary with ``strategy.canary.waves`` (see ``CanaryStrategy``): each wave runs the
same steps and analysis on its regions, so this strategy reuses the canary's step handlers
(``walk_steps``) and only decides what lies between them. Per wave:

1. **Due**: a ``gate: {untilApproved: true}`` pauses for a person (``Hold.WAVE``); a blackout
   window covering any of its regions (on their local clock) makes it wait, with one event saying
   until when. A wave already running is never stopped by a blackout.
2. **Start**: its first group of ``parallelism`` regions gets ``region_weights`` at the canary
   weight (earlier waves stay at 100 %, later ones at 0), a new stage, and windows read from those
   regions only (``WindowQuery.regions``, see ``observation.judged_regions``). When every earlier
   wave's evidence was clean, ``carryForward`` lets it start at a higher weight and bake shorter;
   the ``wave`` event keeps the earlier waves' evidence that allowed it (or why not).
3. **Steps**, then **bake**: the last stage goes on being judged for ``bake`` at its weight; then
   the group's regions go to 100 % and the next group or wave is due. After the last wave the
   rollout is promoted fully (every region, named or not, on the canary).

A regression halts everything: ``onFailure: rollback`` rolls back every wave already updated
(``finish`` sends every region to stable); ``hold`` sends only the failing group back to stable,
keeps earlier waves, and pauses for a person: resume retries the wave, abort rolls back all.
The strategy does no I/O; what it remembers is ``carry.waves`` (``core/carry.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rollwise.core.carry import Hold, WaveProgress, Waves, WaveStatus
from rollwise.core.engine.canary import StepsDone, walk_steps
from rollwise.core.engine.change import Change, evidence_of, if_changed
from rollwise.core.engine.gates import new_stage
from rollwise.core.engine.observation import batch_regions, close_window
from rollwise.core.engine.transitions import approval, credit, pause, promote_full
from rollwise.core.evidence import Evidence, WaveEvidence, WaveSummary, dump_evidence
from rollwise.core.model import Action, Event, Phase, RolloutRecord, Verdict
from rollwise.core.units import format_duration
from rollwise.spec.models import CanaryStrategy, WaveSpec

if TYPE_CHECKING:
    from rollwise.core.engine.reconciler import RolloutEngine

CLEAN_ACTIONS = frozenset({str(Action.EXPAND), str(Action.CONTINUE)})


class RegionWaves:
    kind = "regionWaves"

    def advance(self, engine: RolloutEngine, record: RolloutRecord, change: Change,
                now: float) -> RolloutRecord | None:
        canary = _canary(record)
        state = record.carry.waves or initial_waves(canary)
        if record.carry.waves is None:
            record = _with_waves(record, state)
        if not state.started:
            return _start(engine, record, change, now, state)
        regressed = _hold if canary.onFailure == "hold" else None
        updated = walk_steps(engine, record, change, now, _steps_done, regressed)
        return _after_tick(engine, record, updated, change, now)


def initial_waves(canary: CanaryStrategy) -> Waves:
    assert canary.waves is not None
    return Waves(waves=[WaveProgress(name=w.name, regions=list(w.regions)) for w in canary.waves])


# ------------------------------------------------------------------ a wave becomes due and starts


def _start(engine: RolloutEngine, record: RolloutRecord, change: Change, now: float,
           state: Waves) -> RolloutRecord | None:
    canary = _canary(record)
    wave, spec = state.wave, _wave_spec(canary, state.current)
    assert wave is not None
    regions = batch_regions(record, state.current, wave.batch)
    if wave.started_at is None and spec.gate is not None and spec.gate.untilApproved:
        held, gated = _gate(engine, record, change, state, regions)
        if held:
            return gated
        approved = approval(record, Hold.WAVE) or (credit(record.carry.promotion, "promoted")
                                                   if record.carry.promotion is not None else None)
        assert approved is not None
        change.decided_by = approved
    held, waiting = _blackout(engine, record, change, now, state, regions)
    if held:
        return waiting
    return _begin_batch(engine, record, change, now, state, regions)


def _gate(engine: RolloutEngine, record: RolloutRecord, change: Change, state: Waves,
          regions: list[str]) -> tuple[bool, RolloutRecord | None]:
    """(False, None) once a person approved (or promoted) the wave; else (True, the record paused for it).

    A ``resume`` is not an approval: the wave pauses again, as an untilApproved step does.
    """
    if approval(record, Hold.WAVE) is not None or record.carry.promotion is not None:
        return False, None
    wave = state.wave
    assert wave is not None
    if wave.status == WaveStatus.GATED:
        return True, pause(engine, record, change, f"wave {wave.name!r}: waiting for approval", actor="engine",
                           hold=Hold.WAVE)
    state = state.but_wave(status=WaveStatus.GATED)
    evidence = WaveEvidence(wave=wave.name, index=state.current, regions=regions, action="approval",
                            reason="gate: untilApproved")
    change.events.append(_event(engine, record, f"wave {wave.name!r} ({', '.join(regions)}) is due: "
                                "waiting for approval", evidence))
    return True, pause(engine, _with_waves(record, state), change, f"wave {wave.name!r}: waiting for approval",
                       actor="engine", hold=Hold.WAVE)


def _blackout(engine: RolloutEngine, record: RolloutRecord, change: Change, now: float, state: Waves,
              regions: list[str]) -> tuple[bool, RolloutRecord | None]:
    """(True, the record waiting out a blackout over ``regions``: one event per blackout), or (False, None)."""
    canary = _canary(record)
    covering = [(b, end) for b in canary.blackouts if b.applies_to(regions)
                for end in [b.window().ends_at(now)] if end is not None]
    if not covering:
        return False, None
    blackout, until = max(covering, key=lambda pair: pair[1])
    wave = state.wave
    assert wave is not None
    if state.blackout_until == until and wave.status == WaveStatus.BLACKOUT:
        return True, if_changed(record, change)
    from rollwise.core.blackouts import describe

    written = f"{blackout.start} to {blackout.end} {blackout.timezone}"
    evidence = WaveEvidence(wave=wave.name, index=state.current, regions=regions, action="blackout",
                            blackoutUntil=until, blackout=written, reason="a wave due in a blackout waits")
    change.events.append(_event(engine, record, f"wave {wave.name!r} ({', '.join(regions)}) is due but waits: "
                                f"blackout {written} until {describe(until, blackout.timezone)}", evidence))
    state = state.but_wave(status=WaveStatus.BLACKOUT).model_copy(update={"blackout_until": until})
    return True, _with_waves(record, state).model_copy(update={"updated_at": now})


def _begin_batch(engine: RolloutEngine, record: RolloutRecord, change: Change, now: float, state: Waves,
                 regions: list[str]) -> RolloutRecord:
    canary = _canary(record)
    wave, spec = state.wave, _wave_spec(canary, state.current)
    assert wave is not None
    plan = carry_forward(canary, state)
    start_step, start_weight = plan.start_step, plan.start_weight
    bake = spec.bake * plan.bake_factor
    state = state.but_wave(status=WaveStatus.RUNNING, started_at=wave.started_at or now, baking_since=None,
                           start_weight=start_weight, bake=bake, carried=plan.reason, failure=None)
    state = state.model_copy(update={"started": True, "blackout_until": None})
    stage = new_stage(record, None, now)
    updated = record.model_copy(update={
        # Judged afresh: the judges' running state (cumulative tests) covered other regions' traffic.
        **stage, "carry": stage["carry"].but(waves=state, promotion=None, approval=None, judges={}),
        "step_index": start_step, "step_started_at": now, "approved_step": None, "last_window_end": now,
        "updated_at": now,
    })
    updated = engine.set_route(updated, change, canary_weight=start_weight)
    updated = _sync_regions(updated)
    group = f" group {wave.batch + 1}/{len(spec.batches())}" if len(spec.batches()) > 1 else ""
    how = f": {change.decided_by[0]}" if change.decided_by else ""
    message = (f"wave {wave.name!r}{group} started in {', '.join(regions)} at {start_weight:g}%, "
               f"bake {format_duration(bake)}{how}")
    if plan.reason:
        message += f" ({plan.reason})"
    evidence = WaveEvidence(wave=wave.name, index=state.current, regions=regions, action="start",
                            startWeight=start_weight, startStep=start_step, bake=bake, plannedBake=spec.bake,
                            carriedForward=plan.applied if plan.considered else None,
                            minRequests=canary.carryForward.minRequests if canary.carryForward else None,
                            earlier=plan.earlier if plan.considered else None, reason=plan.reason)
    actor = change.decided_by[1] if change.decided_by else "engine"
    change.events.append(_event(engine, updated, message, evidence, actor=actor))
    return updated


class CarryPlan:
    """How a wave starts: at which step and weight, with what share of its bake, and why."""

    def __init__(self, start_step: int = 0, start_weight: float = 0.0, bake_factor: float = 1.0,
                 reason: str | None = None, applied: bool = False, considered: bool = False,
                 earlier: list[WaveSummary] | None = None):
        self.start_step, self.start_weight, self.bake_factor = start_step, start_weight, bake_factor
        self.reason, self.applied, self.considered, self.earlier = reason, applied, considered, earlier or []


def carry_forward(canary: CanaryStrategy, state: Waves) -> CarryPlan:
    """Whether earlier waves' evidence lets the current wave start higher and bake shorter."""
    rule = canary.carryForward
    if rule is None or state.current == 0:
        return CarryPlan()
    earlier = [summary(w, rule.minRequests) for w in state.waves[:state.current]]
    dirty = [s for s in earlier if not s.clean]
    if dirty:
        return CarryPlan(reason=f"no carry-forward: wave {dirty[0].wave!r} {why_not(dirty[0], rule.minRequests)}",
                         considered=True, earlier=earlier)
    start_step, start_weight = 0, 0.0
    if rule.startWeight is not None:
        for index, step in enumerate(canary.steps):
            if step.setWeight is not None and step.setWeight >= rule.startWeight:
                start_step, start_weight = index + 1, float(step.setWeight)
                break
    requests = sum(s.canaryRequests for s in earlier)
    expands = sum(s.verdicts.get(str(Action.EXPAND), 0) for s in earlier)
    parts = []
    if start_weight:
        parts.append(f"starts at {start_weight:g}%")
    if rule.bakeFactor < 1:
        parts.append(f"bakes {rule.bakeFactor:g}x")
    reason = (f"carried forward: {' and '.join(parts) or 'nothing to skip'} because "
              f"{len(earlier)} earlier wave(s) were clean ({expands} expand verdict(s), no regression, "
              f"{requests} canary requests)")
    return CarryPlan(start_step, start_weight, rule.bakeFactor, reason, applied=True, considered=True,
                     earlier=earlier)


def summary(wave: WaveProgress, min_requests: int = 0) -> WaveSummary:
    """A wave's evidence for later waves; clean: promoted on expand verdicts alone, no person forcing it."""
    clean = (wave.status == WaveStatus.PROMOTED and not wave.forced and wave.metrics_errors == 0
             and wave.verdicts.get(str(Action.EXPAND), 0) > 0
             and all(action in CLEAN_ACTIONS for action in wave.verdicts)
             and wave.canary_requests >= min_requests)
    return WaveSummary(wave=wave.name, regions=list(wave.regions), status=str(wave.status),
                       canaryRequests=wave.canary_requests, canaryErrors=wave.canary_errors,
                       baselineRequests=wave.baseline_requests, verdicts=dict(wave.verdicts),
                       metricsErrors=wave.metrics_errors, forced=wave.forced, clean=clean)


def why_not(wave: WaveSummary, min_requests: int) -> str:
    if wave.forced:
        return "was promoted by a person past its judging"
    if wave.metricsErrors:
        return f"had {wave.metricsErrors} metrics error(s)"
    bad = sorted(a for a in wave.verdicts if a not in CLEAN_ACTIONS)
    if bad:
        return f"had {', '.join(bad)} verdict(s)"
    if not wave.verdicts.get(str(Action.EXPAND)):
        return "was never judged to expand"
    if wave.canaryRequests < min_requests:
        return f"judged {wave.canaryRequests} canary requests (< minRequests {min_requests})"
    return f"is {wave.status}"


# ------------------------------------------------------------------ steps done: bake, then promote the group


def _steps_done(turn: StepsDone) -> RolloutRecord | None:
    engine, record, change, now = turn.engine, turn.record, turn.change, turn.now
    state = _waves(record)
    wave = state.wave
    assert wave is not None
    if not turn.ready:
        return if_changed(record, change)
    regions = batch_regions(record, state.current, wave.batch)
    bake = wave.bake or 0.0
    if wave.baking_since is None and bake > 0 and not turn.forced:
        state = state.but_wave(status=WaveStatus.BAKING, baking_since=now)
        evidence = WaveEvidence(wave=wave.name, index=state.current, regions=regions, action="baking", bake=bake,
                                startWeight=record.route.canary_weight)
        change.events.append(_event(engine, record, f"wave {wave.name!r} steps done: baking "
                                    f"{format_duration(bake)} at {record.route.canary_weight:g}% in "
                                    f"{', '.join(regions)}", evidence))
        return _with_waves(record, state).model_copy(update={"updated_at": now})
    if not turn.forced and now - (wave.baking_since or now) < bake:
        return if_changed(record, change)
    return _promote_group(turn, state, regions)


def _promote_group(turn: StepsDone, state: Waves, regions: list[str]) -> RolloutRecord:
    engine, record, change, now = turn.engine, turn.record, turn.change, turn.now
    canary = _canary(record)
    wave, spec = state.wave, _wave_spec(canary, state.current)
    assert wave is not None
    if turn.judged:
        record = close_window(engine, record, change, now)
    last_group = wave.batch + 1 >= len(spec.batches())
    forced = wave.forced or turn.forced
    if last_group:
        done = state.but_wave(status=WaveStatus.PROMOTED, finished_at=now, forced=forced)
        state = done.model_copy(update={"current": state.current + 1, "started": False})
    else:
        state = state.but_wave(batch=wave.batch + 1, forced=forced).model_copy(update={"started": False})
    how, actor = change.decided_by or ("bake passed" if (wave.bake or 0) > 0 else "steps passed", "engine")
    evidence = WaveEvidence(wave=wave.name, index=state.current - (1 if last_group else 0), regions=regions,
                            action="promoted", reason=how, bake=wave.bake,
                            earlier=[summary(w) for w in state.waves[:state.current]] if last_group else None)
    updated = record.model_copy(update={"carry": record.carry.but(waves=state, promotion=None),
                                        "updated_at": now})
    what = f"wave {wave.name!r}" if last_group else f"wave {wave.name!r} group {wave.batch + 1}"
    change.events.append(_event(engine, updated, f"{what} promoted: {', '.join(regions)} on "
                                f"{record.canary_version} (100%): {how}", evidence, actor=actor,
                                verdict=evidence_of(turn.verdict)))
    if state.wave is None:  # every wave promoted
        return promote_full(engine, updated, change, f"all {len(state.waves)} waves promoted",
                            evidence=evidence_of(turn.verdict), actor=actor)
    updated = engine.set_route(updated, change, canary_weight=0.0)
    return _sync_regions(updated)


# ------------------------------------------------------------------ failure


def _hold(engine: RolloutEngine, record: RolloutRecord, change: Change, verdict: Verdict) -> RolloutRecord:
    """``onFailure: hold``: the failing group back to stable, earlier waves kept, a person decides."""
    state = _waves(record)
    wave = state.wave
    assert wave is not None
    regions = batch_regions(record, state.current, wave.batch)
    state = state.but_wave(status=WaveStatus.HELD, failure=verdict.reason, baking_since=None)
    state = state.model_copy(update={"started": False})
    updated = engine.set_route(record, change, canary_weight=0.0)
    updated = _sync_regions(_with_waves(updated, state))
    evidence = Evidence(rule="wave-held", culprit=verdict.culprit, metrics=list(verdict.metrics),
                        wave=WaveEvidence(wave=wave.name, index=state.current, regions=regions, action="held",
                                          rolledBack=regions, reason=verdict.reason))
    change.events.append(engine.event(updated, "wave", f"wave {wave.name!r} failed: {verdict.reason}; "
                                      f"{', '.join(regions)} back on {record.stable_version}, earlier waves "
                                      "kept (onFailure: hold)", wave=wave.name, action="held",
                                      evidence=dump_evidence(evidence)))
    return pause(engine, updated, change, f"wave {wave.name!r} failed ({verdict.reason}): holding; resume "
                 "retries the wave, abort rolls back every wave", actor="engine")


def _after_tick(engine: RolloutEngine, before: RolloutRecord, updated: RolloutRecord | None, change: Change,
                now: float) -> RolloutRecord | None:
    """Count this tick's evidence into the wave, keep region weights in step, and mark a rollback."""
    if updated is None:
        return None
    state, was = updated.carry.waves, before.carry.waves
    if state is None or was is None:
        return updated
    if was.started:  # the evidence belongs to the wave that was running when the tick began
        state = _tallied(state, was.current, before, updated, change)
    if state.wave is None:
        return _with_waves(updated, state)
    if updated.phase in (Phase.ROLLED_BACK, Phase.ABORTED):
        return _rolled_back(engine, before, updated, state, change)
    updated = _with_waves(updated, state)
    if updated.route.revision != before.route.revision:
        updated = _sync_regions(updated)
    return updated


def _tallied(state: Waves, index: int, before: RolloutRecord, updated: RolloutRecord, change: Change) -> Waves:
    wave = state.waves[index]
    verdicts = dict(wave.verdicts)
    for event in change.events:
        if event.type == "decision" and event.data.get("action"):
            action = str(event.data["action"])
            verdicts[action] = verdicts.get(action, 0) + 1
    windows = [w for _, w in change.windows]
    forced = before.carry.promotion is not None and updated.carry.promotion is None and change.decided_by is not None
    return state.but_wave_at(
        index,
        verdicts=verdicts,
        canary_requests=wave.canary_requests + sum(w.canary.requests for w in windows if w.canary),
        canary_errors=wave.canary_errors + sum(w.canary.errors for w in windows if w.canary),
        baseline_requests=wave.baseline_requests + sum(w.baseline.requests for w in windows if w.baseline),
        metrics_errors=wave.metrics_errors + sum(1 for w in windows if w.error),
        forced=wave.forced or forced,
    )


def _rolled_back(engine: RolloutEngine, before: RolloutRecord, record: RolloutRecord, state: Waves,
                 change: Change) -> RolloutRecord:
    """A failure ended the rollout: every wave already updated is back on stable (``finish`` routed it)."""
    wave = state.wave
    assert wave is not None
    touched = [w for w in state.waves if w.status in (WaveStatus.PROMOTED, WaveStatus.RUNNING, WaveStatus.BAKING)]
    regions = [r for r, weight in before.route.region_weights.items() if weight > 0]
    failed = next((e for e in change.events if e.type == "phase"), None)
    reason = failed.message if failed is not None else str(record.phase)
    earlier = [summary(w) for w in state.waves[:state.current]]  # what they were before this failure
    waves = [w.model_copy(update={"status": WaveStatus.ROLLED_BACK, "failure": reason if w is wave else None})
             if w in touched else w for w in state.waves]
    state = state.model_copy(update={"waves": waves})
    evidence = WaveEvidence(wave=wave.name, index=state.current, regions=list(wave.regions), action="rolled-back",
                            rolledBack=regions, reason=reason, earlier=earlier)
    updated = _with_waves(record, state)
    names = ", ".join(repr(w.name) for w in touched)
    change.events.append(_event(engine, updated, f"wave {wave.name!r} failed: rolled back wave(s) {names} "
                                f"({', '.join(regions) or 'none'}) to {record.stable_version}", evidence))
    return updated


# ------------------------------------------------------------------ helpers


def region_weights(record: RolloutRecord, state: Waves) -> dict[str, float]:
    """Every wave's regions with their canary percent: promoted 100, the changing group the canary weight."""
    canary = _canary(record)
    assert canary.waves is not None
    weights: dict[str, float] = {}
    for index, (spec, wave) in enumerate(zip(canary.waves, state.waves, strict=True)):
        for batch, regions in enumerate(spec.batches()):
            done = index < state.current or (index == state.current and batch < wave.batch)
            changing = index == state.current and batch == wave.batch and state.started
            for region in regions:
                weights[region] = 100.0 if done else record.route.canary_weight if changing else 0.0
    return weights


def _sync_regions(record: RolloutRecord) -> RolloutRecord:
    """The route's region weights in step with the waves (same revision: part of the same change)."""
    route = record.route.model_copy(update={"region_weights": region_weights(record, _waves(record))})
    return record.model_copy(update={"route": route})


def _event(engine: RolloutEngine, record: RolloutRecord, message: str, evidence: WaveEvidence,
           actor: str = "engine", **data: Any) -> Event:
    rule = f"wave-{evidence.action}"
    return engine.event(record, "wave", message, actor=actor, wave=evidence.wave, action=evidence.action,
                        evidence=dump_evidence(Evidence(rule=rule, wave=evidence)), **data)


def _canary(record: RolloutRecord) -> CanaryStrategy:
    canary = record.spec.strategy.canary
    assert canary is not None and canary.waves is not None
    return canary


def _wave_spec(canary: CanaryStrategy, index: int) -> WaveSpec:
    assert canary.waves is not None
    return canary.waves[index]


def _waves(record: RolloutRecord) -> Waves:
    assert record.carry.waves is not None
    return record.carry.waves


def _with_waves(record: RolloutRecord, state: Waves) -> RolloutRecord:
    return record.model_copy(update={"carry": record.carry.but(waves=state)})
