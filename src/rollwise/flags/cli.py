"""`rollwise flags ...`: validate, evaluate, and make audited changes to a flag file.

Mount with `app.add_typer(flags_app, name="flags")`. Changes are written atomically into the flag file,
so every server and provider watching it picks them up on its next poll.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from rollwise.flags.controls import ControlError, parse_time
from rollwise.flags.definitions import FlagValidationError
from rollwise.flags.evaluator import FlagSet
from rollwise.flags.repository import ChangeRecord, FlagRepository

flags_app = typer.Typer(help="Feature flags (flagd format): validate, evaluate, kill, restore, schedule.")

class Output(StrEnum):
    """Like every rollwise command's `--output text|json`; flag listings also come as YAML (flagd's other format)."""

    text = "text"
    json = "json"
    yaml = "yaml"


OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="text, json or yaml")]
FileOption = Annotated[Path, typer.Option("--file", "-f", help="The flag file (JSON or YAML).")]
ReasonOption = Annotated[str, typer.Option("--reason", "-r", help="Why: recorded in the change history.")]


def _default_actor() -> str:
    try:
        return os.environ.get("ROLLWISE_ACTOR") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


ActorOption = Annotated[
    str, typer.Option("--actor", "-a", default_factory=_default_actor, help="Who: recorded in the history.")
]


def _emit(output: Output, body: Any) -> bool:
    """Print `body` as JSON or YAML and return True; False means the caller prints its text form."""
    if output is Output.json:
        typer.echo(json.dumps(body))
    elif output is Output.yaml:
        typer.echo(yaml.safe_dump(body, sort_keys=False, allow_unicode=True), nl=False)
    return output is not Output.text


def _fail(message: str, code: int = 1) -> None:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def _repository(path: Path) -> FlagRepository:
    try:
        return FlagRepository(path, apply_schedules=False)
    except FlagValidationError as e:
        typer.echo("\n".join(e.problems), err=True)
        raise typer.Exit(2) from e


def _report(record: ChangeRecord) -> None:
    typer.echo(f"version {record.version}: {record.action} {record.flag or ''} by {record.actor} ({record.reason})")


def _change(path: Path, apply: Any) -> None:
    repo = _repository(path)
    try:
        _report(apply(repo))
    except (ControlError, FlagValidationError) as e:
        _fail(f"error: {e}", 1)


@flags_app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="The flag file to check.")],
    strict: Annotated[
        bool,
        typer.Option(
            "--strict/--lenient",
            help="Rule problems (unknown operator or $ref, wrong arity, bad fractional buckets) are errors; "
            "--lenient reports them as warnings.",
        ),
    ] = True,
) -> None:
    """Check a flag file: exit 0 when valid, exit 2 listing every problem as FILE:LINE: path: message."""
    flag_set = _load(file)
    rule_problems = flag_set.document.rule_problems
    for problem in rule_problems:
        typer.echo(("" if strict else "warning: ") + problem, err=strict)
    if strict and rule_problems:
        raise typer.Exit(2)
    typer.echo(f"{file}: {len(flag_set)} flags valid (fractional v{flag_set.fractional_version})")


def _load(file: Path, fractional_version: int | None = None) -> FlagSet:
    try:
        return FlagSet.load(file, fractional_version=fractional_version)
    except FlagValidationError as e:
        typer.echo("\n".join(e.problems), err=True)
        raise typer.Exit(2) from e


@flags_app.command("eval")
def eval_(
    file: Annotated[Path, typer.Argument(help="The flag file.")],
    key: Annotated[str, typer.Argument(help="Flag key.")],
    context: Annotated[str, typer.Option(help="Evaluation context as a JSON object.")] = "{}",
    output: OutputOpt = Output.text,
    fractional_version: Annotated[int | None, typer.Option(help="Bucketing version 1, 2 or 3.")] = None,
) -> None:
    """Evaluate one flag for a context and print value, variant and reason."""
    try:
        ctx = json.loads(context)
    except ValueError as e:
        _fail(f"error: --context is not JSON: {e}", 2)
    if not isinstance(ctx, dict):
        _fail("error: --context must be a JSON object", 2)
    flag_set = _load(file, fractional_version)
    r = flag_set.resolve(key, ctx, None)
    body = {
        "key": key,
        "value": r.value,
        "variant": r.variant,
        "reason": r.reason,
        "errorCode": r.error_code,
        "errorMessage": r.error_message,
        "metadata": dict(r.metadata),
    }
    if not _emit(output, body):
        typer.echo(f"value: {json.dumps(r.value)}\nvariant: {r.variant}\nreason: {r.reason}")
        if r.error_code:
            typer.echo(f"error: {r.error_code}: {r.error_message}")
    if r.error_code == "FLAG_NOT_FOUND":
        raise typer.Exit(1)


@flags_app.command()
def kill(key: str, file: FileOption, reason: ReasonOption, actor: ActorOption) -> None:
    """Kill switch: serve the flag's off variant (or disable it) everywhere the file is watched."""
    _change(file, lambda repo: repo.kill(key, actor, reason))


@flags_app.command()
def restore(key: str, file: FileOption, reason: ReasonOption, actor: ActorOption) -> None:
    """Undo a kill: put back the definition the flag had before it."""
    _change(file, lambda repo: repo.restore(key, actor, reason))


@flags_app.command()
def rollout(
    key: str,
    file: FileOption,
    reason: ReasonOption,
    actor: ActorOption,
    percent: Annotated[float, typer.Option(help="Share of targeting keys that get the on variant.")],
) -> None:
    """Set a flag's fractional rollout share now."""
    _change(file, lambda repo: repo.set_rollout_percent(key, percent, actor, reason))


@flags_app.command()
def schedule(
    key: str,
    file: FileOption,
    reason: ReasonOption,
    actor: ActorOption,
    at: Annotated[str, typer.Option(help="When, ISO 8601 (UTC if no offset), e.g. 2030-01-03T09:00:00Z.")],
    set_percent: Annotated[float | None, typer.Option(help="Set the rollout share to N %.")] = None,
    enable: Annotated[bool, typer.Option("--enable", help="Enable the flag.")] = False,
    disable: Annotated[bool, typer.Option("--disable", help="Disable the flag.")] = False,
) -> None:
    """Schedule a change; servers and providers apply it when it comes due."""
    chosen = [x for x in (set_percent is not None, enable, disable) if x]
    if len(chosen) != 1:
        _fail("error: give exactly one of --set-percent N, --enable, --disable", 2)
    action = "set-percent" if set_percent is not None else "enable" if enable else "disable"
    try:
        when = parse_time(at)
    except ControlError as e:
        _fail(f"error: --at: {e}", 2)
    _change(file, lambda repo: repo.schedule(key, when, action, actor, reason, set_percent))


@flags_app.command("list")
def list_(
    file: FileOption,
    output: OutputOpt = Output.text,
) -> None:
    """List flags with state, variants, default variant, kill status and pending schedules."""
    repo = _repository(file)
    killed = repo.killed()
    rows = [
        {
            "key": key,
            "state": f.definition.state,
            "kind": f.kind,
            "defaultVariant": f.definition.default_variant,
            "variants": sorted(f.definition.variants),
            "targeting": bool(f.definition.targeting),
            "killed": key in killed,
        }
        for key, f in repo.flag_set.flags.items()
    ]
    pending = [s.to_json() for s in repo.schedules()]
    if _emit(output, {"version": repo.version, "flags": rows, "schedules": pending}):
        return
    typer.echo(f"version {repo.version}, {len(rows)} flags")
    for row in rows:
        marks = " KILLED" if row["killed"] else ""
        marks += " targeted" if row["targeting"] else ""
        typer.echo(f"{row['key']}\t{row['state']}\t{row['kind']}\tdefault={row['defaultVariant']}{marks}")
    for s in pending:
        extra = f" {s['percent']}%" if s["percent"] is not None else ""
        typer.echo(f"scheduled {s['at']}: {s['action']}{extra} {s['flag']} ({s['id']}, by {s['actor']})")


@flags_app.command()
def history(
    file: FileOption,
    flag: Annotated[str | None, typer.Option(help="Only this flag's changes.")] = None,
    output: OutputOpt = Output.text,
) -> None:
    """The audited change history: version, when, who, what and why."""
    repo = _repository(file)
    records = repo.changes(flag)
    if _emit(output, [r.to_json() for r in records]):
        return
    for r in records:
        typer.echo(f"v{r.version}\t{r.at}\t{r.actor}\t{r.action}\t{r.flag or '-'}\t{r.reason}")


if __name__ == "__main__":  # `python -m rollwise.flags.cli ...` works without the main CLI
    sys.exit(flags_app())
