"""A router that writes the desired route to a JSON file: for dry runs, GitOps hand-off and tests.

Each apply appends one line to ``<path>.log`` so a test can check that weights were applied in
order; the current state is replaced atomically (temp file, fsync, rename).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from rollwise.core.model import RouteState


class FileRouter:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def apply(self, rollout: str, route: RouteState) -> None:
        payload = {"rollout": rollout, **route.model_dump(mode="json")}
        text = json.dumps(payload, sort_keys=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".route-")
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        with open(str(self.path) + ".log", "a") as log:
            log.write(text + "\n")
            log.flush()
            os.fsync(log.fileno())
