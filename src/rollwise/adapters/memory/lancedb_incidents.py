"""Past rollbacks and incidents in LanceDB: one row per signature, with its RCA text's embedding.

A LanceDB table (``incidents`` in the memory folder) keeps each ``Signature`` as JSON beside its
text, its vector (``fixed_size_list<float32>[DIM]``, zeros until embedded) and the model that made
the vector. Every write is one LanceDB commit, so every change is a version that stays readable
(``versions()``; ``checkout`` for forensics). ``remember`` never embeds: the controller that records
a rollback must not load a model; the first query embeds what is missing (``set_vectors``).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from rollwise.learning.incident_memory import IncidentMemoryUnavailable, Remembered, Signature

TABLE = "incidents"
DIM = 384  # all-MiniLM-L6-v2, the shipped model
READ_LIMIT = 5000  # the newest signatures one query compares against
MISSING = "the incident memory needs LanceDB: pip install 'rollwise[memory]'"


def available() -> bool:
    """Whether LanceDB is installed, without importing it (seconds on a busy machine)."""
    return importlib.util.find_spec("lancedb") is not None


def _lancedb() -> Any:
    try:
        import lancedb
    except ImportError as exc:
        raise IncidentMemoryUnavailable(MISSING) from exc
    return lancedb


def _schema() -> Any:
    import pyarrow as pa

    return pa.schema([
        pa.field("id", pa.string(), nullable=False), pa.field("service", pa.string()),
        pa.field("source", pa.string()), pa.field("at", pa.float64()), pa.field("signature", pa.string()),
        pa.field("text", pa.string()), pa.field("model", pa.string()),
        pa.field("vector", pa.list_(pa.float32(), DIM)),
    ])


class LanceIncidentMemory:
    """``IncidentMemory`` in one LanceDB folder."""

    def __init__(self, uri: str | Path, table: str = TABLE) -> None:
        self.uri = Path(uri)
        self.name = table
        if not self.uri.exists():  # RCA texts name services, routes and errors: readable by the owner only
            self.uri.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.db = _lancedb().connect(str(self.uri), read_consistency_interval=timedelta(0))
        self._table: Any | None = None

    def _writable(self) -> Any:
        table = self._open(create=True)
        assert table is not None
        return table

    def _open(self, create: bool) -> Any | None:
        if self._table is None:
            try:
                self._table = self.db.open_table(self.name)
            except (ValueError, FileNotFoundError):
                if not create:
                    return None
                self._table = self.db.create_table(self.name, schema=_schema(), exist_ok=True)
        return self._table

    def _row(self, signature: Signature, vector: Sequence[float] | None = None, model: str = "") -> dict[str, Any]:
        return {"id": signature.id, "service": signature.service, "source": signature.source,
                "at": float(signature.at), "signature": json.dumps(signature.to_json(), sort_keys=True),
                "text": signature.text, "model": model if vector is not None else "",
                "vector": [float(x) for x in vector] if vector is not None else [0.0] * DIM}

    def remember(self, signatures: Sequence[Signature]) -> None:
        if not signatures:
            return
        table = self._writable()
        (table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all()
         .execute([self._row(s) for s in signatures]))

    def _rows(self) -> list[dict[str, Any]]:
        table = self._open(create=False)
        if table is None:
            return []
        data = table.to_arrow().sort_by([("at", "descending")])
        rows: list[dict[str, Any]] = data.slice(0, READ_LIMIT).to_pylist()
        return rows

    def recall(self, ident: str) -> Signature | None:
        for row in self._rows():
            if row["id"] == ident:
                return Signature.from_json(json.loads(row["signature"]))
        return None

    def remembered(self, model: str | None) -> list[Remembered]:
        out = []
        for row in reversed(self._rows()):
            vector = tuple(row["vector"]) if model is not None and row["model"] == model else None
            out.append(Remembered(Signature.from_json(json.loads(row["signature"])), vector))
        return out

    def unembedded(self, model: str) -> list[Signature]:
        return [Signature.from_json(json.loads(r["signature"])) for r in self._rows() if r["model"] != model]

    def set_vectors(self, vectors: Mapping[str, Sequence[float]], model: str) -> None:
        if not vectors:
            return
        for vector in vectors.values():
            if len(vector) != DIM:
                raise IncidentMemoryUnavailable(f"embedding model {model} gives {len(vector)} dimensions; "
                                                f"the incident memory keeps {DIM}")
        rows = [self._row(Signature.from_json(json.loads(r["signature"])), vectors[r["id"]], model)
                for r in self._rows() if r["id"] in vectors]
        table = self._writable()
        table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(rows)

    def versions(self) -> list[dict[str, Any]]:
        """Each version of the table: number, time and row count (every remember or embedding is one)."""
        table = self._open(create=False)
        if table is None:
            return []
        return [{"version": int(v["version"]), "at": v["timestamp"].isoformat(timespec="seconds"),
                 "rows": int(v["metadata"].get("total_rows", 0))} for v in table.list_versions()]
