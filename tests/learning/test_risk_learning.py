"""The risk learner learns from the store: finished rollouts with a scored change teach it, and the
service's recent failures count; features and SZZ-lite labels come only from earlier commits."""

from __future__ import annotations

import math

from tests.support.specs import SHOP

from rollwise.core.clock import VirtualClock
from rollwise.core.engine import RolloutEngine
from rollwise.core.evidence import PlanEvidence
from rollwise.core.memory_store import MemoryStore
from rollwise.learning.features import Commit, FileChange, history_features, szz_lite
from rollwise.learning.outcomes import past_rollouts
from rollwise.learning.risk import PastRollout, assess_change, failure_rate
from rollwise.spec import load_spec_text

SPEC = SHOP + "  canary:\n    steps:\n      - setWeight: 20\n      - pause: {untilApproved: true}\n"


def commit(sha: str, when: float, message: str, *files: tuple[str, int, int], author: str = "a") -> Commit:
    return Commit(sha, author, when, message, tuple(FileChange(p, a, d) for p, a, d in files))


def test_features_use_only_earlier_commits_and_szz_lite_blames_the_last_change_before_a_fix() -> None:
    commits = [
        commit("a1", 0, "add parser", ("src/parse.py", 100, 0)),
        commit("b2", 86400, "docs", ("README.md", 3, 0), author="b"),
        commit("c3", 2 * 86400, "fix parser crash", ("src/parse.py", 2, 2)),
        commit("d4", 3 * 86400, "Revert \"docs\"\n\nThis reverts commit b2.", ("README.md", 0, 3)),
    ]
    _, rows = history_features(commits)
    assert rows[0]["exp"] == 0 and rows[0]["lt"] == 0 and math.isnan(rows[0]["age"])
    assert rows[2]["lt"] == 100 and rows[2]["age"] == 2 and rows[2]["fix"] == 1 and rows[2]["exp"] == 1
    assert rows[3]["ndev"] == 1 and rows[3]["nuc"] == 1
    assert szz_lite(commits) == [1, 1, 0, 0]


def test_finished_rollouts_in_the_store_teach_the_learner_and_set_the_failure_rate() -> None:
    store, clock = MemoryStore(), VirtualClock(1_000_000.0)
    engine = RolloutEngine(store=store, clock=clock)
    spec = load_spec_text(SPEC)
    history = [commit("h1", 0, "start", ("a.py", 5, 0))]
    migration = [commit("x1", 10, "new migration", ("db/migrations/001.sql", 10, 0))]
    tweak = [commit("x2", 10, "tweak", ("a.py", 10, 0))]
    state, _ = history_features(history)
    kinds = {True: state.features(migration[0]), False: state.features(tweak[0])}
    for i, failed in enumerate([True, False] * 6):  # every migration rolled back, every tweak went through
        named = spec.model_copy(update={"name": f"r{i}"})
        plan = PlanEvidence(score=0.5, lane="standard", high=0.6, low=0.25, applied=False, features=kinds[failed])
        engine.start(named, plan=plan)
        engine.command(f"r{i}", "abort" if failed else "promote", actor="t", full=not failed)
        while not store.get(f"r{i}").phase.terminal:
            clock.advance(1.0)
            engine.tick(f"r{i}")
    past = past_rollouts(store)
    assert len(past) == 12 and sum(p.failed for p in past) == 6
    assert all(p.features is not None and p.features["migrations"] in (0, 1) for p in past)
    assert failure_rate(past, "shop", clock.now()) == 0.5 and math.isnan(failure_rate(past, "other", clock.now()))

    risky = assess_change(history, migration, past, "shop", clock.now())
    safe = assess_change(history, tweak, past, "shop", clock.now())
    assert risky.sources == {"repository_commits": 1, "rollouts": 12} and risky.failures_seen == 6
    assert risky.features["service_failure_rate"] == 0.5
    assert risky.score > 0.7 > 0.3 > safe.score
    assert "migrations" in [name for name, _ in risky.factors]


def test_no_history_scores_the_middle() -> None:
    result = assess_change([], [commit("x", 0, "first", ("a.py", 1, 0))], [PastRollout("s", 0, False)], "s", 0)
    assert result.score == 0.5 and result.trained_on == 0
