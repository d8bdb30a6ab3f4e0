"""An agent's memory in LanceDB: the stable table, the canary's copy ``<table>-canary``, and a journal.

Every mutation is one LanceDB commit, which is atomic (a new manifest appears or it does not):
``restore`` of a tag, ``add(mode="overwrite")`` for a copy, ``merge_insert`` for new keys only. Old
versions stay readable through their tags (tagged versions are never cleaned up). The journal
(``rollwise-memory.jsonl`` in the database folder) says which memory version served which release;
a line cut short by a kill is skipped when read.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from rollwise.agents.memory import MemoryUnavailable, MemoryVersion, Side

JOURNAL = "rollwise-memory.jsonl"
MISSING = "LanceDB memory needs the agents extra: pip install 'rollwise[agents]'"


def _lancedb() -> Any:
    try:
        import lancedb
    except ImportError as exc:
        raise MemoryUnavailable(MISSING) from exc
    return lancedb


class LanceMemory:
    """``MemoryStore`` over one LanceDB folder: ``table`` is live, ``<table>-canary`` the canary's copy."""

    def __init__(self, uri: str | Path, table: str = "memories", key: str = "id"):
        self.uri = Path(uri)
        self.names: dict[Side, str] = {"stable": table, "canary": f"{table}-canary"}
        self.key = key
        self.db = _lancedb().connect(str(self.uri), read_consistency_interval=timedelta(0))

    def _table(self, side: Side) -> Any | None:
        try:
            return self.db.open_table(self.names[side])
        except (ValueError, FileNotFoundError):
            return None

    def _need(self, side: Side) -> Any:
        table = self._table(side)
        if table is None:
            raise MemoryUnavailable(f"memory table {self.names[side]!r} not found in {self.uri}")
        return table

    def tags(self, side: Side) -> dict[str, int]:
        table = self._table(side)
        return {} if table is None else {name: int(t["version"]) for name, t in table.tags.list().items()}

    def tag(self, side: Side, name: str) -> int:
        table = self._need(side)
        version = int(table.version)
        table.tags.create(name, version)
        return version

    def branch(self, stable_tag: str) -> int:
        data = self._at("stable", stable_tag)
        canary = self._table("canary")
        if canary is None:
            created = self.db.create_table(self.names["canary"], data, mode="overwrite")
            return int(created.version)
        return int(canary.add(data, mode="overwrite").version)

    def restore(self, stable_tag: str) -> int:
        table = self._need("stable")
        table.restore(stable_tag)
        return int(table.version)

    def overwrite_with_canary(self, canary_tag: str) -> int:
        data = self._at("canary", canary_tag)
        return int(self._need("stable").add(data, mode="overwrite").version)

    def insert_canary_only(self, canary_tag: str) -> int:
        data = self._at("canary", canary_tag)
        merge = self._need("stable").merge_insert(self.key).when_not_matched_insert_all()
        return int(merge.execute(data).version)

    def _at(self, side: Side, ref: str | int | None) -> Any:
        """The ``side`` table's content (an Arrow table) at a tag or version; the latest when ``None``."""
        table = self._need(side)
        if ref is not None:
            try:
                table.checkout(ref)
            except (ValueError, RuntimeError) as exc:
                raise MemoryUnavailable(f"{self.names[side]}: no version or tag {ref!r}") from exc
        return table.to_arrow()

    def rows(self, side: Side, ref: str | int | None = None) -> list[dict[str, Any]]:
        data = self._at(side, ref)
        if self.key in data.column_names:
            data = data.sort_by(self.key)
        rows: list[dict[str, Any]] = data.to_pylist()
        return rows

    def versions(self, side: Side) -> list[MemoryVersion]:
        table = self._table(side)
        if table is None:
            return []
        tagged: dict[int, list[str]] = {}
        for name, version in self.tags(side).items():
            tagged.setdefault(version, []).append(name)
        return [MemoryVersion(version=int(v["version"]), at=v["timestamp"].isoformat(timespec="seconds"),
                              rows=int(v["metadata"].get("total_rows", 0)),
                              tags=tuple(sorted(tagged.get(int(v["version"]), []))))
                for v in table.list_versions()]

    def record(self, entry: dict[str, Any]) -> None:
        line = (json.dumps(entry, sort_keys=True) + "\n").encode()
        fd = os.open(self.uri / JOURNAL, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def journal(self) -> list[dict[str, Any]]:
        path = self.uri / JOURNAL
        if not path.exists():
            return []
        entries = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
        return entries
