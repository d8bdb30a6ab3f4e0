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


LEARNER = "logistic regression on log1p features + missing indicators, balanced classes, refit"


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
        data = file.read_bytes()
    except OSError as exc:
        raise _fail(f"{file}: cannot read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")  # older exports; every byte is a character there
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
                              "ignored_columns": table.ignored, "learner": LEARNER}
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


@risk_app.command("score")
def score(
    repo: Annotated[Path, typer.Option(help="Git repository of the change.")],
    from_rev: Annotated[str, typer.Option("--from", help="The revision deployed now.")],
    to_rev: Annotated[str, typer.Option("--to", help="The revision to roll out.")],
    service: Annotated[str | None, typer.Option(help="Service: its recent change failure rate and outcomes.")] = None,
    store: Annotated[str | None, typer.Option(envvar="ROLLWISE_STORE", help="Store URL (past rollouts).")] = None,
    high: Annotated[float, typer.Option(help="Risk at or above this: the careful lane.")] = 0.6,
    low: Annotated[float, typer.Option(help="Risk below this: the fast lane.")] = 0.25,
    output: Annotated[str, typer.Option("--output", "-o", help="text or json")] = "text",
) -> None:
    """Score a change's risk from git and the store's history; print the drivers and the plan it implies.

    Example: rollwise risk score --repo . --from v1.4.0 --to HEAD --service checkout
    """
    import time as clock

    from rollwise.core.protocols import StoreMissing, StoreUnavailable
    from rollwise.learning.outcomes import past_rollouts
    from rollwise.learning.plan import RiskThresholds, adapt_plan, describe
    from rollwise.learning.risk import assess_change
    from rollwise.spec.models import CanaryStep
    from rollwise.wiring import RepositoryError, change_source, open_store

    if output not in ("text", "json"):
        raise _fail(f"--output: {output!r} is not text or json")
    if not 0 <= low < high <= 1:
        raise _fail(f"--low {low:g} and --high {high:g}: need 0 ≤ low < high ≤ 1")
    source = change_source(repo)
    try:
        history, commits = source.history(from_rev), source.between(from_rev, to_rev)
    except RepositoryError as exc:
        raise _fail(str(exc)) from None
    if not commits:
        raise _fail(f"--from {from_rev} --to {to_rev}: no commits in the range")
    try:
        past = past_rollouts(open_store(store, create=False))
    except StoreMissing:
        past = []
    except StoreUnavailable as exc:
        raise _fail(str(exc), 1) from None
    assessment = assess_change(history, commits, past, service, clock.time())
    example = [CanaryStep(setWeight=w) if w else CanaryStep.model_validate({"pause": {"duration": 60}})
               for w in (5, 0, 25, 0, 50, 0)]
    planned = adapt_plan(example, assessment.score, RiskThresholds(high, low))
    report = {**assessment.to_dict(), "commits": len(commits), "lane": planned.lane, "plan": planned.reason,
              "example_steps": [describe(s) for s in planned.steps]}
    if output == "json":
        _print_json(report)
        return
    sys.stdout.write(f"risk {assessment.score:.2f} ({planned.lane} lane) for {len(commits)} commit(s) "
                     f"{from_rev}..{to_rev}; learner fitted on {assessment.trained_on} past changes "
                     f"({assessment.failures_seen} failing)\n")
    for name, term in assessment.factors:
        value = assessment.features.get(name)
        sys.stdout.write(f"  {name:>22} = {'?' if value is None else f'{value:g}'}  ({term:+.2f} log-odds)\n")
    sys.stdout.write(f"plan: {planned.reason}\n")
