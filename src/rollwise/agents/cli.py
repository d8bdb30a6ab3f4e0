"""`rollwise memory list|diff|restore`: an agent's versioned memory, read and restored by a person.

``list`` shows each version of the live table and of the canary's copy with its tags, and the journal of
which memory version served which release; ``diff`` compares the rows of two tags or versions by key;
``restore`` makes the live table what it was at a tag, one atomic commit, and journals who did it and why.
"""

from __future__ import annotations

import getpass
import json
import time
from typing import Annotated, Any

import typer

from rollwise.agents.memory import MemoryStore, Side

memory_app = typer.Typer(help="An agent's memory versioned with the release (LanceDB): list, diff, restore.",
                         no_args_is_help=True)

UriOpt = Annotated[str, typer.Option("--uri", help="The LanceDB folder (the spec's memory.uri).")]
TableOpt = Annotated[str, typer.Option("--table", help="The live table (the spec's memory.table).")]
KeyOpt = Annotated[str, typer.Option("--key", help="The column that identifies a row.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _open(uri: str, table: str, key: str) -> MemoryStore:
    from pathlib import Path

    from rollwise.agents.memory import MemoryUnavailable
    from rollwise.wiring import open_memory

    if not Path(uri).is_dir():
        _fail(f"--uri: no memory folder at {uri}")
    try:
        return open_memory(uri, table, key)
    except MemoryUnavailable as exc:
        _fail(str(exc))
        raise  # unreachable: _fail exits


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _ref(text: str) -> tuple[Side, str | int]:
    """``[canary:]TAG-or-VERSION``: a tag or version number of the live table, or of the canary's copy."""
    side: Side = "stable"
    if text.startswith("canary:"):
        side, text = "canary", text.removeprefix("canary:")
    return side, int(text) if text.isdigit() else text


@memory_app.command("list")
def list_versions(uri: UriOpt, table: TableOpt = "memories", key: KeyOpt = "id", as_json: JsonOpt = False) -> None:
    """Versions and tags of the live table and the canary's copy, and which version served which release."""
    store = _open(uri, table, key)
    listing = {side: [vars(v) for v in store.versions(side)] for side in ("stable", "canary")}
    journal = store.journal()
    if as_json:
        typer.echo(json.dumps({**listing, "journal": journal}, default=list, indent=2))
        return
    for side, versions in listing.items():
        typer.echo(f"{side} ({table if side == 'stable' else table + '-canary'}):")
        for v in versions:
            tags = f"  [{', '.join(v['tags'])}]" if v["tags"] else ""
            typer.echo(f"  v{v['version']:<4} {v['at']}  {v['rows']:>7} rows{tags}")
    typer.echo("journal:")
    for entry in journal:
        details = " ".join(f"{k}={entry[k]}" for k in sorted(entry) if k not in ("at", "action"))
        typer.echo(f"  {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(entry['at']))} {entry['action']} {details}")


def row_diff(before: list[dict[str, Any]], after: list[dict[str, Any]], key: str) -> dict[str, list[Any]]:
    """Keys added, removed and changed from ``before`` to ``after``."""
    old = {row.get(key): row for row in before}
    new = {row.get(key): row for row in after}
    return {"added": sorted(k for k in new if k not in old), "removed": sorted(k for k in old if k not in new),
            "changed": sorted(k for k in new if k in old and new[k] != old[k])}


@memory_app.command("diff")
def diff(a: Annotated[str, typer.Argument(help="[canary:]TAG or VERSION")],
         b: Annotated[str, typer.Argument(help="[canary:]TAG or VERSION")],
         uri: UriOpt, table: TableOpt = "memories", key: KeyOpt = "id", as_json: JsonOpt = False) -> None:
    """Rows added, removed and changed (by key) between two tags or versions."""
    from rollwise.agents.memory import MemoryUnavailable

    store = _open(uri, table, key)
    try:
        found = row_diff(store.rows(*_ref(a)), store.rows(*_ref(b)), key)
    except MemoryUnavailable as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(found, default=str))
        return
    for what, keys in found.items():
        typer.echo(f"{what}: {len(keys)}" + (f"  ({', '.join(map(str, keys[:20]))}{' …' if len(keys) > 20 else ''})"
                                             if keys else ""))


@memory_app.command("restore")
def restore(tag: Annotated[str, typer.Argument(help="A tag of the live table")], uri: UriOpt,
            reason: Annotated[str, typer.Option("--reason", "-r", help="Why: journaled with who did it.")],
            table: TableOpt = "memories", key: KeyOpt = "id") -> None:
    """Make the live table what it was at TAG (one commit; the version before is tagged and kept)."""
    store = _open(uri, table, key)
    tags = store.tags("stable")
    if tag not in tags:
        _fail(f"TAG: {table} has no tag {tag!r} (tags: {', '.join(sorted(tags)) or 'none'})")
    before = store.tag("stable", f"manual-{int(time.time() * 1000)}.before-restore")
    version = store.restore(tag)
    store.record({"at": time.time(), "action": "restore", "actor": getpass.getuser(), "reason": reason,
                  "tag": tag, "restored_from": tags[tag], "before": before, "stable": version})
    typer.echo(f"{table}: restored {tag} (v{tags[tag]}) as v{version}; the version before is v{before}")
