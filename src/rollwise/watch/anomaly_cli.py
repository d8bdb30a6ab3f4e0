"""`rollwise anomaly score FILE.csv`: the watch's detector over a file, one score per row.

Each row's score comes from the same `SeriesDetector.score` path the live watch runs, fed the rows in
order, so row k's score depends only on rows 1..k.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from rollwise.watch.detector import SeriesDetector
from rollwise.watch.series_csv import SeriesFormatError, parse_series

anomaly_app = typer.Typer(help="Anomaly scores of a metric series (the watch's streaming detector).",
                          no_args_is_help=True)


@anomaly_app.callback()
def _group() -> None:
    """Anomaly scores of a metric series (the watch's streaming detector)."""


@anomaly_app.command("score")
def score(
    file: Annotated[Path, typer.Argument(help="CSV with a header and columns timestamp,value.")],
    direction: Annotated[str, typer.Option(help="Which deviations count: up, down or both.")] = "both",
) -> None:
    """Write `timestamp,value,anomaly_score` for every row of FILE (stdout), in order, with no look-ahead.

    Scores are in [0, 1]; at or above the detector's ALARM_SCORE (0.99999) a point is an alarm. A
    malformed file exits 2 with one line naming the line.
    """
    if direction not in ("up", "down", "both"):
        _fail(f"--direction must be up, down or both, not {direction!r}")
    try:
        text = file.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"{file}: cannot read ({type(exc).__name__}: {exc})")
    try:
        rows = parse_series(text)
    except SeriesFormatError as exc:
        _fail(f"{file} {exc}")
    detector = SeriesDetector(direction=direction)  # type: ignore[arg-type]
    out = ["timestamp,value,anomaly_score"]
    for row in rows:
        out.append(f"{_field(row.timestamp_text)},{_field(row.value_text)},"
                   f"{detector.score(row.timestamp, row.value):.12g}")
    sys.stdout.write("\n".join(out) + "\n")


def _field(text: str) -> str:
    """The field as given, quoted only where CSV needs it."""
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)
