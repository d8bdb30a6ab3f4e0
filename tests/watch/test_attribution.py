"""Attribution: onset by change point, culprit by time, scope and version split, and "no change"."""

from __future__ import annotations

import random

from rollwise.watch.attribution import attribute, estimate_onset
from rollwise.watch.changes import ANY_SERVICE, Change

T0 = 1_700_000_000.0


def series(onset_min: int, minutes: int = 120, base: float = 0.005, step: float = 0.005, ramp_min: int = 0,
           seed: int = 1) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    out = []
    for m in range(minutes):
        lift = 0.0 if m < onset_min else step * (min(1.0, (m - onset_min + 1) / ramp_min) if ramp_min else 1.0)
        out.append((T0 + 60 * m, base + lift + rng.gauss(0, 0.0012)))
    return out


def deploy(minute: float, service: str = "web", version: str = "v2", **kw: object) -> Change:
    return Change(service=service, at=T0 + 60 * minute, kind="deploy", version=version, id=f"c{minute:g}",
                  **kw)  # type: ignore[arg-type]


def test_onset_of_a_step_is_found_with_an_interval_around_it() -> None:
    onset = estimate_onset(series(90))
    assert onset is not None
    assert abs(onset.at - (T0 + 90 * 60)) <= 120
    assert onset.low <= T0 + 90 * 60 <= onset.high
    assert onset.effect_low > 0.003 and onset.effect_high < 0.007


def test_onset_of_a_ramp_is_where_it_starts_not_half_way() -> None:
    onset = estimate_onset(series(60, ramp_min=40, step=0.02))
    assert onset is not None and abs(onset.at - (T0 + 60 * 60)) <= 5 * 60


def test_the_release_before_the_onset_is_named_not_older_or_other_changes() -> None:
    changes = [deploy(10, version="v1"), deploy(85, service="db", version="d9"), deploy(88, version="v2"),
               Change(service="web", at=T0 + 60 * 70, kind="config", id="cfg", region="us")]
    result = attribute(series(90), changes, service="web", region="eu")
    assert result.culprit is not None and result.culprit.version == "v2"
    assert result.confidence > 0.5 and result.onset is not None
    assert result.candidates[0].change_id == result.culprit.id
    assert "cfg" not in [c.change_id for c in result.candidates]  # another region


def test_a_dependency_change_is_a_candidate_with_less_weight() -> None:
    result = attribute(series(90), [deploy(88, service="db", version="d9")], service="web", depends_on=["db"])
    assert result.culprit is not None and result.culprit.service == "db"
    alone = attribute(series(90), [deploy(88, version="v2")], service="web")
    assert result.confidence < alone.confidence


def test_an_anomaly_that_began_before_any_change_has_no_culprit() -> None:
    result = attribute(series(60), [deploy(75, version="v3")], service="web")
    assert result.culprit is None and result.confidence == 0.0
    assert result.reason == "the anomaly began before any change"


def test_a_change_no_worse_than_the_rest_is_not_blamed_when_traffic_is_split() -> None:
    split_bad = {"v2": (60.0, 2000.0), "v1": (40.0, 8000.0)}
    split_same = {"v2": (20.0, 2000.0), "v1": (80.0, 8000.0)}
    blamed = attribute(series(90), [deploy(88)], service="web", split=split_bad)
    assert blamed.culprit is not None and blamed.split["low"] > 0 and blamed.confidence > 0.8
    spared = attribute(series(90), [deploy(88)], service="web", split=split_same)
    assert spared.culprit is None and "specific" in spared.reason


def test_a_reverted_release_and_undos_are_not_candidates() -> None:
    undo = Change(service="web", at=T0 + 60 * 50, kind="undo", version="v1", previous_version="v2", id="u")
    result = attribute(series(90), [deploy(40), undo], service="web")
    assert result.culprit is None


def test_a_version_released_again_after_its_rollback_is_a_new_candidate() -> None:
    undo = Change(service="web", at=T0 + 60 * 50, kind="rollback", version="v1", previous_version="v2", id="u")
    result = attribute(series(90), [deploy(40), undo, deploy(88)], service="web")
    assert result.culprit is not None and result.culprit.id == "c88"


def test_a_flag_the_service_reads_counts_as_its_own_change() -> None:
    flag = Change(service=ANY_SERVICE, at=T0 + 60 * 89, kind="flag", scope="flag:checkout", id="f")
    named = attribute(series(90), [flag], service="web", flags=["checkout"])
    other = attribute(series(90), [flag], service="web")
    assert named.culprit is not None and named.confidence > other.confidence
