"""Memory of incidents: a past rollback's or incident's signature, and how alike two of them are.

Each rollback (a rollout rolled back or aborted) and each watch incident is remembered as a
``Signature``: the metrics that regressed with their effect sizes (log ratios, bad side up), the
routes that regressed, the change's features, how it was resolved, and the RCA text. Similarity is
a hybrid of two scores in [0, 1]:

- the signature score: a weighted mean of metric kinds (Jaccard, scaled by how close the effect
  sizes are), regressed routes (Jaccard), change features (cosine of log-scaled features) and the
  same service; a part either side lacks is left out and the weights of the rest renormalised;
- the embedding score: the cosine of the two RCA texts' sentence embeddings (clipped at 0).

``hybrid = EMBEDDING_WEIGHT * embedding + (1 - EMBEDDING_WEIGHT) * signature``. Without an embedding
model (the ``memory`` extra absent) retrieval is signature only and says so (``Retrieval.note``).

Pure: signatures arrive as values; storing them and embedding their text go through the
``IncidentMemory`` and ``TextEmbedder`` protocols (``core/protocols.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rollwise.core.protocols import IncidentMemory, TextEmbedder

SIGNATURE_VERSION = 1
EMBEDDING_WEIGHT = 0.5
WEIGHTS = {"metrics": 0.45, "routes": 0.2, "change": 0.25, "service": 0.1}
EFFECT_SCALE = 1.0  # effect sizes (log ratios) this far apart count half as alike
SHOWN = 3
NO_MODEL = "signature only: no embedding model (pip install 'rollwise[memory]' for the RCA text's embedding)"



class IncidentMemoryUnavailable(Exception):
    """The incident memory cannot be opened (LanceDB missing, no folder for it): one line saying why."""


# Resolutions, as people say them.
ROLLED_BACK = "rolled back by the judge"
ABORTED = "aborted"
UNDONE = "undone by the watch"
FLAG_KILLED = "flag killed by the watch"
BY_ITSELF = "resolved by itself"
OPEN = "still open"


@dataclass(frozen=True)
class Signature:
    """What one past rollback or incident looked like, and how it ended."""

    id: str  # "rollout:<name>#<run>" or "incident:<id>"
    source: str  # "rollback" | "incident"
    service: str
    at: float  # when it ended (or was detected, while open)
    metrics: dict[str, float] = field(default_factory=dict)  # metric kind -> effect size (log ratio, > 0 worse)
    routes: tuple[str, ...] = ()  # routes that regressed ("POST /orders")
    change: dict[str, float] = field(default_factory=dict)  # change features; "kind:deploy" style flags are 1.0
    resolution: str = ""
    text: str = ""  # the RCA text that is embedded
    title: str = ""  # one line for listings
    kind: str | None = None  # a label a person (or the simulator) gave it; never used for scoring

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["routes"] = list(self.routes)
        data["version"] = SIGNATURE_VERSION
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Signature:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["routes"] = tuple(known.get("routes") or ())
        known["metrics"] = {str(k): float(v) for k, v in (known.get("metrics") or {}).items()}
        known["change"] = {str(k): float(v) for k, v in (known.get("change") or {}).items()}
        return cls(**known)


@dataclass(frozen=True)
class Remembered:
    """A stored signature with its text's embedding (None until embedded, or by another model)."""

    signature: Signature
    vector: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Match:
    signature: Signature
    score: float
    signature_score: float
    embedding_score: float | None
    parts: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        s = self.signature
        return {"id": s.id, "source": s.source, "service": s.service, "at": s.at, "title": s.title,
                "resolution": s.resolution, "kind": s.kind, "score": round(self.score, 4),
                "signature_score": round(self.signature_score, 4),
                "embedding_score": None if self.embedding_score is None else round(self.embedding_score, 4),
                "parts": {k: round(v, 4) for k, v in self.parts.items()}, "metrics": s.metrics,
                "routes": list(s.routes)}

    def text(self) -> str:
        how = (f"embedding {self.embedding_score:.2f}, signature {self.signature_score:.2f}"
               if self.embedding_score is not None else f"signature {self.signature_score:.2f}")
        s = self.signature
        return f"{s.title or s.id} — {s.resolution} (similarity {self.score:.2f}: {how})"


@dataclass(frozen=True)
class Retrieval:
    mode: str  # "hybrid" | "signature"
    matches: list[Match]
    searched: int
    note: str | None = None  # why it is degraded, when it is

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "note": self.note, "searched": self.searched,
                "similar": [m.to_json() for m in self.matches]}

    def lines(self) -> list[str]:
        head = f"Similar past incidents ({self.mode}, {self.searched} remembered)"
        if not self.matches:
            return [head + ": none yet."] + ([f"  ({self.note})"] if self.note else [])
        out = [head + ":"] + [f"  {i}. {m.text()}" for i, m in enumerate(self.matches, 1)]
        return out + ([f"  ({self.note})"] if self.note else [])


# ---------------------------------------------------------------- scoring


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def _metric_score(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    shared = set(a) & set(b)
    if not shared:
        return 0.0
    closeness = sum(math.exp(-abs(a[k] - b[k]) / EFFECT_SCALE * math.log(2)) for k in shared) / len(shared)
    return _jaccard(set(a), set(b)) * (0.5 + 0.5 * closeness)


def _scaled(value: float) -> float:
    return math.copysign(math.log1p(abs(value)), value) if math.isfinite(value) else 0.0


def _change_score(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    keys = set(a) | set(b)
    va = [_scaled(a.get(k, 0.0)) for k in keys]
    vb = [_scaled(b.get(k, 0.0)) for k in keys]
    na, nb = math.sqrt(sum(x * x for x in va)), math.sqrt(sum(x * x for x in vb))
    if na == 0 or nb == 0:
        return 0.0
    return max(0.0, sum(x * y for x, y in zip(va, vb, strict=True)) / (na * nb))


def signature_parts(a: Signature, b: Signature) -> dict[str, float]:
    """The parts both signatures have, each in [0, 1]."""
    parts = {"service": 1.0 if a.service == b.service else 0.0}
    if a.metrics and b.metrics:
        parts["metrics"] = _metric_score(a.metrics, b.metrics)
    if a.routes and b.routes:
        parts["routes"] = _jaccard(set(a.routes), set(b.routes))
    if a.change and b.change:
        parts["change"] = _change_score(a.change, b.change)
    return parts


def signature_score(parts: Mapping[str, float]) -> float:
    total = sum(WEIGHTS[k] for k in parts)
    return sum(WEIGHTS[k] * v for k, v in parts.items()) / total if total else 0.0


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    return max(0.0, dot / (na * nb)) if na and nb else 0.0


def rank(query: Signature, query_vector: Sequence[float] | None, candidates: Sequence[Remembered],
         k: int = SHOWN, *, embedding_weight: float = EMBEDDING_WEIGHT) -> list[Match]:
    """The ``k`` candidates most like ``query`` (itself excluded), best first; ties by recency.

    ``embedding_weight`` 0 is signature only, 1 embedding only; a pair without both vectors is scored
    on its signature alone.
    """
    matches = []
    for candidate in candidates:
        if candidate.signature.id == query.id:
            continue
        parts = signature_parts(query, candidate.signature)
        structured = signature_score(parts)
        embedded = None
        if query_vector is not None and candidate.vector is not None:
            embedded = cosine(query_vector, candidate.vector)
        score = structured if embedded is None else embedding_weight * embedded + (1 - embedding_weight) * structured
        matches.append(Match(candidate.signature, score, structured, embedded, parts))
    matches.sort(key=lambda m: (-m.score, -m.signature.at, m.signature.id))
    return matches[:k]


# ---------------------------------------------------------------- retrieval through the protocols


class InMemoryIncidents:
    """``IncidentMemory`` in a dict: the simulator's and tests', and the store-only fallback without LanceDB."""

    def __init__(self) -> None:
        self.rows: dict[str, Remembered] = {}
        self.models: dict[str, str] = {}

    def remember(self, signatures: Sequence[Signature]) -> None:
        for signature in signatures:
            self.rows[signature.id] = Remembered(signature)
            self.models.pop(signature.id, None)

    def recall(self, ident: str) -> Signature | None:
        row = self.rows.get(ident)
        return None if row is None else row.signature

    def remembered(self, model: str | None) -> list[Remembered]:
        return sorted((r if model is not None and self.models.get(i) == model else Remembered(r.signature)
                       for i, r in self.rows.items()), key=lambda r: (r.signature.at, r.signature.id))

    def unembedded(self, model: str) -> list[Signature]:
        return [r.signature for i, r in self.rows.items() if self.models.get(i) != model]

    def set_vectors(self, vectors: Mapping[str, Sequence[float]], model: str) -> None:
        for ident, vector in vectors.items():
            if ident in self.rows:
                self.rows[ident] = Remembered(self.rows[ident].signature, tuple(vector))
                self.models[ident] = model



def embed_missing(memory: IncidentMemory, embedder: TextEmbedder) -> int:
    """Embed the remembered texts that have no vector from ``embedder``'s model yet; returns how many.

    Remembering never embeds (the controller that records a rollback must not load a model); the
    first query after it does, and keeps the vectors.
    """
    missing = memory.unembedded(embedder.model)
    if not missing:
        return 0
    vectors = embedder.embed([s.text for s in missing])
    memory.set_vectors({s.id: v for s, v in zip(missing, vectors, strict=True)}, embedder.model)
    return len(missing)


def similar(memory: IncidentMemory, embedder: TextEmbedder | None, query: Signature, k: int = SHOWN,
            missing_model: str = NO_MODEL) -> Retrieval:
    """The ``k`` remembered incidents most like ``query``: hybrid with an embedder, else signature only."""
    if embedder is None:
        candidates = memory.remembered(None)
        return Retrieval("signature", rank(query, None, candidates, k), len(candidates), missing_model)
    embed_missing(memory, embedder)
    candidates = memory.remembered(embedder.model)
    vector = embedder.embed([query.text])[0]
    return Retrieval("hybrid", rank(query, vector, candidates, k), len(candidates))


def resolution_of_actions(actions: Sequence[Mapping[str, Any]], resolved: bool) -> str:
    """How a watch incident ended, from the actions it recorded."""
    done = {a.get("kind") for a in actions if a.get("outcome") == "done"}
    if "undo" in done:
        return UNDONE
    if "kill-flag" in done:
        return FLAG_KILLED
    return BY_ITSELF if resolved else OPEN


def log_ratio(worse: float | None, better: float | None, floor: float = 1e-4) -> float | None:
    """log(worse / better), each clipped at ``floor``: the effect size a signature keeps."""
    if worse is None or better is None or not (math.isfinite(worse) and math.isfinite(better)):
        return None
    return math.log(max(abs(worse), floor) / max(abs(better), floor))
