"""An agent memory in a temporary LanceDB folder, and a worker that runs one memory step to be killed.

``python tests/support/memory.py URI ACTION POLICY`` opens the memory, prints ``ready``, runs
``rollback`` or ``promote`` of rollout ``agent`` run 1 through ``MemoryLifecycle`` and prints ``done``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

DIM = 64


def rows(ids: range, text: str) -> Any:
    """A memory's rows: an id, a text and a vector, as an Arrow table."""
    import numpy as np
    import pyarrow as pa

    vectors = np.random.default_rng(ids.start).random((len(ids), DIM), dtype=np.float32)
    return pa.table({
        "id": pa.array(list(ids), pa.int64()),
        "text": [f"{text} {i}" for i in ids],
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), DIM),
    })


def seeded(folder: Path, size: int = 200) -> Any:
    """A LanceDB folder whose ``memories`` table holds ``size`` rows; returns the table."""
    import lancedb

    return lancedb.connect(str(folder)).create_table("memories", rows(range(size), "stable"))


def canary_writes(folder: Path, size: int) -> None:
    """What a canary agent writes to its copy: new rows, an edit, a deletion."""
    import lancedb

    canary = lancedb.connect(str(folder)).open_table("memories-canary")
    canary.add(rows(range(size, size + size // 2), "canary"))
    canary.update(where="id < 10", values={"text": "CANARY-EDITED"})
    canary.delete("id >= 20 AND id < 30")


def main(argv: list[str]) -> None:
    from rollwise.adapters.agents.lancedb_memory import LanceMemory
    from rollwise.agents.memory import Marks, MemoryLifecycle

    uri, action, policy = argv
    lifecycle = MemoryLifecycle(LanceMemory(uri), policy)  # type: ignore[arg-type]
    print("ready", flush=True)
    getattr(lifecycle, action)(Marks("agent", 1), "v2")
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
