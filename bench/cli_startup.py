"""How long ``rollwise --help`` takes, and which heavy libraries it loads, for one or two source trees.

A CLI that imports FastAPI, SQLAlchemy and SciPy to print its help feels broken. This runs
``rollwise --help`` in a fresh interpreter ``--repeat`` times per tree and prints the median wall
time, the median CPU time (steadier on a loaded machine) and the heavy modules that were imported.
Compare with an older tree by extracting it first, e.g. ``git archive main src | tar -x -C /tmp/before``.

    python bench/cli_startup.py [--baseline /tmp/before/src] [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HEAVY = ("fastapi", "starlette", "sqlalchemy", "alembic", "numpy", "scipy", "pydantic", "yaml", "httpx",
         "rich.live", "uvicorn")
PROBE = """
import io, json, sys, contextlib
sys.path.insert(0, {src!r})
sys.argv = ["rollwise", "--help"]
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        from rollwise.cli.main import main
        main()
    except SystemExit:
        pass
sys.stderr.write(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def measure(src: Path, repeat: int) -> dict[str, object]:
    walls, cpus, heavy = [], [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", PROBE.format(src=str(src), heavy=HEAVY)],
                              capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": ""})
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
        heavy = json.loads(done.stderr.strip().splitlines()[-1])
    return {"src": str(src), "wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus), "heavy": heavy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="Another tree's src/ folder to compare against.")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    here = Path(__file__).resolve().parent.parent / "src"
    rows = ([measure(args.baseline, args.repeat)] if args.baseline else []) + [measure(here, args.repeat)]
    print("| tree | wall s (median) | CPU s (median) | heavy modules imported |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['src']} | {row['wall_s']:.3f} | {row['cpu_s']:.3f} | {', '.join(row['heavy']) or '(none)'} |")  # type: ignore[arg-type]
    if len(rows) == 2:
        print(f"\nspeed-up (CPU): {rows[0]['cpu_s'] / rows[1]['cpu_s']:.1f}x")  # type: ignore[operator]


if __name__ == "__main__":
    main()
