"""``rollwise risk …``: backtest a risk learner on a history, score a change from git.

The commands read files, repositories and the store, then hand values to the pure modules of this
package. Every mistake in the input is one ``error:`` line naming the column, line or option, exit 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

risk_app = typer.Typer(no_args_is_help=True, help="Change risk: backtest a learner on a history, score a change.")


def _fail(message: str, code: int = 2) -> typer.Exit:
    sys.stderr.write(f"error: {message}\n")
    return typer.Exit(code)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def parse_delay(text: str) -> float:
    """``90d``, ``12h``, ``30m``, ``45s``, ``2w`` or plain seconds."""
    from rollwise.core.units import parse_duration

    word = text.strip().lower()
    if word.endswith("d") and word[:-1].replace(".", "", 1).isdigit():
        return float(word[:-1]) * 86400
    if word.endswith("w") and word[:-1].replace(".", "", 1).isdigit():
        return float(word[:-1]) * 7 * 86400
    return float(parse_duration(word))


@risk_app.command("evaluate")
def evaluate(
    file: Annotated[Path, typer.Argument(help="CSV of changes: numeric features, an outcome, a time.")],
    label: Annotated[str, typer.Option(help="Outcome column: 0/1, true/false or yes/no (1: the change failed).")],
    time: Annotated[str, typer.Option(help="Time column: ISO 8601 timestamps or epoch seconds.")],
    output: Annotated[str, typer.Option("--output", "-o", help="text or json")] = "text",
    label_delay: Annotated[str, typer.Option(help="How long an outcome takes to be known, e.g. 90d.")] = "0",
    warmup: Annotated[int | None, typer.Option(help="Changes learned but not scored (≤ 10 % of rows).")] = None,
    baseline: Annotated[bool, typer.Option(help="Also run the refit logistic-regression baseline.")] = False,
) -> None:
    """Chronological online backtest: each change scored only from earlier ones, then learned.

    Example: rollwise risk evaluate commits.csv --label bug --time author_date --output json
    """
    from rollwise.learning.evaluation import MAX_WARMUP_SHARE, backtest
    from rollwise.learning.learner import RefitLogistic, RiskModel
    from rollwise.learning.table import TableError, parse_table

    if output not in ("text", "json"):
        raise _fail(f"--output: {output!r} is not text or json")
    try:
        delay = parse_delay(label_delay)
    except ValueError as exc:
        raise _fail(f"--label-delay: {exc}") from None
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(f"{file}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        table = parse_table(text, label, time)
    except TableError as exc:
        raise _fail(f"{file}: {exc}") from None
    if warmup is not None and not 0 <= warmup <= int(table.rows * MAX_WARMUP_SHARE):
        raise _fail(f"--warmup: {warmup} is outside 0..{int(table.rows * MAX_WARMUP_SHARE)} (10 % of "
                    f"{table.rows} rows)")
    result = backtest(table, RiskModel, warmup=warmup, label_delay_s=delay).to_dict()
    report: dict[str, Any] = {**result, "threshold": 0.5, "label_delay_s": delay, "features": table.features,
                              "effort": "+".join(table.effort_columns) or "1 per change",
                              "ignored_columns": table.ignored, "learner": "gbm+logistic (refit)"}
    if baseline:
        report["baseline_logistic"] = backtest(table, RefitLogistic, warmup=warmup, label_delay_s=delay).to_dict()
    if output == "json":
        _print_json(report)
        return
    _print_table(report)


def _print_table(report: dict[str, Any]) -> None:
    def show(value: Any) -> str:
        return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)

    rows = [("scored changes", report["n"]), ("failing (positives)", report["positives"]),
            ("warm-up (not scored)", report["warmup"]), ("AUC", report["auc"]),
            ("G-mean @ p=0.5", report["gmean"]), ("recall @ 20% effort", report["recall_at_20pct_effort"])]
    if "baseline_logistic" in report:
        rows.append(("baseline logistic AUC", report["baseline_logistic"]["auc"]))
    for name, value in rows:
        sys.stdout.write(f"{name:>24}: {show(value)}\n")
    sys.stdout.write(f"{'effort':>24}: {report['effort']}\n{'features':>24}: {', '.join(report['features'])}\n")


def register(app: typer.Typer) -> None:
    app.add_typer(risk_app, name="risk")
