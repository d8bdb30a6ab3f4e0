"""What a person sees of a rollout's region waves: one row per wave, for status, the API, the dashboard
and the reports. Pure: read from the record (``carry.waves``) and its route, never from a data plane."""

from __future__ import annotations

from pydantic import BaseModel, Field

from rollwise.core.carry import WaveStatus
from rollwise.core.model import Phase, RolloutRecord

_UPDATED = (WaveStatus.RUNNING, WaveStatus.BAKING, WaveStatus.PROMOTED)


class WaveRow(BaseModel):
    """One wave as status shows it."""

    name: str
    regions: list[str]
    status: str = Field(description="pending, blackout, waiting-approval, running, baking, promoted, held or "
                        "rolled-back.")
    weight: float = Field(description="The canary's percent in the wave's regions now (the highest of them).")
    started_at: float | None = None
    finished_at: float | None = None
    bake: float | None = Field(None, description="Seconds the wave bakes (shorter when carried forward).")
    start_weight: float | None = None
    carried: str | None = Field(None, description="Why it started higher or baked shorter, or why not.")
    canary_requests: int = 0
    canary_errors: int = 0
    verdicts: dict[str, int] = Field(default_factory=dict)
    failure: str | None = None


def wave_rows(record: RolloutRecord) -> list[WaveRow] | None:
    """The rollout's waves, or None when its spec has none. A rollout aborted by a person shows every wave
    it had updated as rolled back, since ``finish`` sent every region to stable."""
    canary = record.spec.strategy.canary
    if canary is None or not canary.waves:
        return None
    state = record.carry.waves
    progress = {w.name: w for w in state.waves} if state is not None else {}
    undone = record.phase in (Phase.ROLLED_BACK, Phase.ABORTED)
    rows = []
    for spec in canary.waves:
        wave = progress.get(spec.name)
        status = wave.status if wave is not None else WaveStatus.PENDING
        if undone and status in _UPDATED:
            status = WaveStatus.ROLLED_BACK
        weight = max(record.route.weight_in(region) for region in spec.regions) if record.route.canary else 0.0
        if wave is None:
            rows.append(WaveRow(name=spec.name, regions=list(spec.regions), status=str(status), weight=weight))
            continue
        rows.append(WaveRow(
            name=spec.name, regions=list(spec.regions), status=str(status), weight=weight,
            started_at=wave.started_at, finished_at=wave.finished_at, bake=wave.bake,
            start_weight=wave.start_weight, carried=wave.carried, canary_requests=wave.canary_requests,
            canary_errors=wave.canary_errors, verdicts=dict(wave.verdicts), failure=wave.failure,
        ))
    return rows


def wave_lines(rows: list[WaveRow]) -> list[str]:
    """A small text table of the waves (``rollwise rollout status``, the Markdown postmortem)."""
    lines = [f"{'wave':<16} {'regions':<20} {'status':<17} {'canary':>7} {'requests':>9}  note"]
    for row in rows:
        note = row.failure or row.carried or ""
        lines.append(f"{row.name:<16} {','.join(row.regions):<20} {row.status:<17} {row.weight:>6g}% "
                     f"{row.canary_requests:>9}  {note}".rstrip())
    return lines
