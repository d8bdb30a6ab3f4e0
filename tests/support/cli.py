"""``rollwise`` as a subprocess on a SQLite store under a test's folder (HOME there too)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def rollwise(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ROLLWISE_STORE": f"sqlite:///{tmp_path / 'r.db'}", "HOME": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "rollwise", *args], capture_output=True, text=True, env=env,
                          timeout=60, cwd=tmp_path)
