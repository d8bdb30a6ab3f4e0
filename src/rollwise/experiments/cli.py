"""``rollwise experiments …``: define, list, read out, stop and check experiments; push exposures and events.

Like the rollout commands, each acts on the local store (``--store``) or on a ``rollwise serve``
(``--server URL --token T``), and local writes are audited like the API's (role ``local``). Bad input is
one line naming the field and exit 2; a missing experiment exit 1.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

experiments_app = typer.Typer(help="A/B experiments on flags and routes: create, list, show, stop, check.",
                              no_args_is_help=True)


class Output(StrEnum):
    text = "text"
    json = "json"
    csv = "csv"


StoreOpt = Annotated[str | None, typer.Option("--store", envvar="ROLLWISE_STORE", help="Store URL.")]
ServerOpt = Annotated[str | None, typer.Option("--server", envvar="ROLLWISE_SERVER",
                                               help="Talk to a `rollwise serve` at this URL.")]
TokenOpt = Annotated[str | None, typer.Option("--token", envvar="ROLLWISE_TOKEN", help="API token for --server.")]
ActorOpt = Annotated[str | None, typer.Option("--actor", envvar="ROLLWISE_ACTOR", help="Who is acting.")]
FlagsOpt = Annotated[Path | None, typer.Option("--flags", help="Flag file whose kill switch a guardrail uses.")]


class Failure(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class Local:
    """The local store, through the same service the API uses (audited as role ``local``)."""

    def __init__(self, store_url: str | None, actor: str | None, flags: Path | None = None) -> None:
        from rollwise.control.principal import Principal
        from rollwise.core.clock import SystemClock
        from rollwise.core.protocols import StoreUnavailable
        from rollwise.experiments.service import ExperimentService
        from rollwise.wiring import open_audit, open_experiments, open_store

        try:
            store = open_store(store_url)
            repository = open_experiments(store)
        except StoreUnavailable as exc:
            raise Failure(f"--store: {exc}") from None
        audit, _tokens = open_audit(store)
        kill = None
        if flags is not None:
            from rollwise.flags.repository import FlagRepository

            repo = FlagRepository(flags, apply_schedules=False)
            kill = repo.kill
        self.who = Principal.local_user(actor or os.environ.get("USER") or "cli")
        self.svc = ExperimentService(repository, audit, SystemClock(), kill)

    def _guard(self, call: Any) -> Any:
        from rollwise.adapters.stores.sql_experiments import ExperimentExists, ExperimentNotFound
        from rollwise.experiments.service import BadInput

        try:
            return call()
        except ExperimentNotFound as exc:
            raise Failure(str(exc)) from None
        except ExperimentExists as exc:
            raise Failure(str(exc)) from None
        except BadInput as exc:
            raise Failure(str(exc), 2) from None

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        from rollwise.experiments.service import view

        spec = _spec(body)
        return self._guard(lambda: view(self.svc.create(spec, self.who)))

    def experiments(self) -> list[dict[str, Any]]:
        from rollwise.experiments.service import view

        return [view(e) for e in self.svc.store.list()]

    def show(self, name: str) -> dict[str, Any]:
        from rollwise.experiments.service import view

        return self._guard(lambda: {**view(self.svc.store.get(name)), "readout": self.svc.readout(name).to_json()})

    def history(self, name: str) -> list[dict[str, Any]]:
        return self._guard(lambda: self.svc.history(name))  # type: ignore[no-any-return]

    def stop(self, name: str, reason: str) -> dict[str, Any]:
        from rollwise.experiments.service import view

        return self._guard(lambda: view(self.svc.stop(name, self.who, reason)))

    def check(self, name: str) -> dict[str, Any]:
        return self._guard(lambda: self.svc.check(name, self.who).to_json())

    def push_events(self, items: list[Any]) -> dict[str, Any]:
        from rollwise.experiments.service import parse_events

        return {"received": self._guard(lambda: self.svc.store.record_events(parse_events(items,
                                                                                          self.svc.clock.now())))}

    def push_exposures(self, name: str, items: list[Any]) -> dict[str, Any]:
        from rollwise.experiments.service import parse_exposures

        def run() -> dict[str, Any]:
            rows = parse_exposures(self.svc.store.get(name), items, self.svc.clock.now())
            return {"received": len(rows), "new": self.svc.store.record_exposures(name, rows)}
        return self._guard(run)  # type: ignore[no-any-return]

    def report(self, name: str) -> str:
        from rollwise.report.experiment import render_experiment

        return self._guard(lambda: render_experiment(self.svc.store.get(name), self.svc.readout(name),  # type: ignore[no-any-return]
                                                     self.svc.history(name)))


class Remote:
    """A ``rollwise serve``'s ``/api/v1/experiments`` routes."""

    def __init__(self, server: str, token: str | None) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=server.rstrip("/"), headers=headers, timeout=60.0)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        import httpx

        try:
            response = self.http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise Failure(f"--server: {exc}") from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text[:200]
            if isinstance(detail, list):  # FastAPI's 422 shape: one line per problem, ours name the field
                detail = "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)
            raise Failure(f"{response.status_code}: {detail}", 2 if response.status_code == 422 else 1)
        return response.json() if "json" in response.headers.get("content-type", "") else response.text

    def create(self, body: dict[str, Any]) -> Any:
        return self._call("POST", "/api/v1/experiments", body)

    def experiments(self) -> Any:
        return self._call("GET", "/api/v1/experiments")

    def show(self, name: str) -> Any:
        return self._call("GET", f"/api/v1/experiments/{name}")

    def history(self, name: str) -> Any:
        return self._call("GET", f"/api/v1/experiments/{name}/history")

    def stop(self, name: str, reason: str) -> Any:
        return self._call("POST", f"/api/v1/experiments/{name}/stop", {"reason": reason})

    def check(self, name: str) -> Any:
        return self._call("POST", f"/api/v1/experiments/{name}/check")

    def push_events(self, items: list[Any]) -> Any:
        return self._call("POST", "/api/v1/metric-events", items)

    def push_exposures(self, name: str, items: list[Any]) -> Any:
        return self._call("POST", f"/api/v1/experiments/{name}/exposures", items)

    def report(self, name: str) -> Any:
        return self._call("GET", f"/api/v1/experiments/{name}/report")


def _spec(body: dict[str, Any]) -> Any:
    from pydantic import ValidationError

    from rollwise.experiments.model import ExperimentSpec

    try:
        return ExperimentSpec.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "spec"
        raise Failure(f"{where}: {first['msg']}", 2) from None


def _backend(store: str | None, server: str | None, token: str | None, actor: str | None,
             flags: Path | None = None) -> Local | Remote:
    return Remote(server, token) if server else Local(store, actor, flags)


def _run(call: Any) -> Any:
    try:
        return call()
    except Failure as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.code) from None


def _load(path: Path, what: str) -> Any:
    """A JSON/YAML document, or JSON lines (one object a line)."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise Failure(f"{what}: cannot read {path}: {exc.strerror or exc}", 2) from None
    if path.suffix == ".jsonl":
        items = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    items.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise Failure(f"{path}:{number}: not JSON ({exc.msg})", 2) from None
        return items
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise Failure(f"{path}: not YAML/JSON ({str(exc).splitlines()[0]})", 2) from None


@experiments_app.command("create")
def create(file: Annotated[Path, typer.Option("--file", "-f", help="The experiment spec (YAML or JSON).")],
           store: StoreOpt = None, server: ServerOpt = None, token: TokenOpt = None, actor: ActorOpt = None) -> None:
    """Define and start an experiment."""
    def run() -> None:
        body = _load(file, "--file")
        if not isinstance(body, dict):
            raise Failure(f"{file}: expected a mapping (name, hypothesis, owner, flag or route, variants, primary)", 2)
        created = _backend(store, server, token, actor).create(body)
        typer.echo(f"experiment {created['name']} started")
    _run(run)


@experiments_app.command("list")
def list_(store: StoreOpt = None, server: ServerOpt = None, token: TokenOpt = None,
          output: Annotated[Output, typer.Option("--output", "-o")] = Output.text) -> None:
    """Every experiment."""
    def run() -> None:
        rows = _backend(store, server, token, None).experiments()
        if output is Output.json:
            typer.echo(json.dumps(rows, indent=2))
            return
        for row in rows:
            spec = row["spec"]
            on = f"flag {spec['flag']}" if spec.get("flag") else "route"
            typer.echo(f"{row['name']}\t{row['status']}\t{on}\t{','.join(spec['variants'])}\t{spec['owner']}")
    _run(run)


@experiments_app.command("show")
def show(name: str, store: StoreOpt = None, server: ServerOpt = None, token: TokenOpt = None,
         output: Annotated[Output, typer.Option("--output", "-o", help="text, json or csv")] = Output.text,
         history: Annotated[bool, typer.Option("--history", help="With the lift over time (json).")] = False) -> None:
    """The experiment's readout: decision and rule, SRM, every metric per variant."""
    def run() -> None:
        backend = _backend(store, server, token, None)
        shown = backend.show(name)
        if history:
            shown["history"] = backend.history(name)
        if output is Output.json:
            typer.echo(json.dumps(shown, indent=2))
        elif output is Output.csv:
            _write_csv(shown["readout"])
        else:
            _print_text(shown)
    _run(run)


def _write_csv(result: dict[str, Any]) -> None:
    from rollwise.experiments.readout import CSV_COLUMNS

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for metric in result["metrics"]:
        for row in metric["comparisons"]:
            writer.writerow({**row, "metric": metric["name"], "role": metric["role"], "control": metric["control"],
                             "control_value": metric["control_value"]})
    sys.stdout.write(out.getvalue())


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:+.2%}"


def _print_text(shown: dict[str, Any]) -> None:
    r = shown["readout"]
    typer.echo(f"{shown['name']} ({shown['status']}): {r['decision']} — {r['reason']}")
    typer.echo(f"  rule: {r['rule']}")
    typer.echo(f"  subjects: {', '.join(f'{v} {n:,}' for v, n in r['counts'].items())}; SRM {r['srm']['status']} "
               f"(e-value {r['srm']['e_value']:.3g}, halts at {r['srm']['threshold']:g})")
    for m in r["metrics"]:
        if not m["comparisons"]:
            typer.echo(f"  {m['role']} {m['name']}: {m['note']}")
        for c in m["comparisons"]:
            typer.echo(f"  {m['role']} {m['name']}{' (CUPED)' if m['cuped'] else ''} {c['variant']}: lift "
                       f"{_pct(c['relative'])} CS [{_pct(c['cs_low'])}, {_pct(c['cs_high'])}] fixed "
                       f"[{_pct(c['fixed_low'])}, {_pct(c['fixed_high'])}] n={c['subjects']:,}"
                       f"{' BREACH' if c['breach'] else ''}")


@experiments_app.command("stop")
def stop(name: str, reason: Annotated[str, typer.Option("--reason", "-r")] = "stopped from the CLI",
         store: StoreOpt = None, server: ServerOpt = None, token: TokenOpt = None, actor: ActorOpt = None) -> None:
    """Stop an experiment (its readout stays)."""
    _run(lambda: typer.echo(f"experiment {_backend(store, server, token, actor).stop(name, reason)['name']} stopped"))


@experiments_app.command("check")
def check(name: str, store: StoreOpt = None, server: ServerOpt = None, token: TokenOpt = None,
          actor: ActorOpt = None, flags: FlagsOpt = None) -> None:
    """Read out and act: a guardrail breach stops the experiment and kills its flag (with --flags locally)."""
    def run() -> None:
        result = _backend(store, server, token, actor, flags).check(name)
        typer.echo(f"{name}: {result['decision']} — {result['reason']}")
    _run(run)


@experiments_app.command("push-events")
def push_events(file: Annotated[Path, typer.Argument(help="JSON lines or a JSON array of {subject, event, value, at}")],
                store: StoreOpt = None, server: ServerOpt = None, token: TokenOpt = None) -> None:
    """Record a batch of metric events."""
    def run() -> None:
        items = _load(file, "events")
        if not isinstance(items, list):
            raise Failure(f"{file}: expected a list of events", 2)
        typer.echo(f"{_backend(store, server, token, None).push_events(items)['received']} events recorded")
    _run(run)


@experiments_app.command("push-exposures")
def push_exposures(name: str, file: Annotated[Path, typer.Argument(help="JSON lines of {subject, variant, at}")],
                   store: StoreOpt = None, server: ServerOpt = None, token: TokenOpt = None) -> None:
    """Record a batch of exposures of experiment NAME."""
    def run() -> None:
        items = _load(file, "exposures")
        if not isinstance(items, list):
            raise Failure(f"{file}: expected a list of exposures", 2)
        done = _backend(store, server, token, None).push_exposures(name, items)
        typer.echo(f"{done['received']} exposures recorded ({done['new']} new subjects)")
    _run(run)


@experiments_app.command("report")
def report(name: str, out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the HTML report.")],
           store: StoreOpt = None, server: ServerOpt = None, token: TokenOpt = None) -> None:
    """Write the experiment's HTML report (decision, lift over time, metrics, SRM)."""
    def run() -> None:
        out.write_text(_backend(store, server, token, None).report(name), encoding="utf-8")
        typer.echo(f"wrote {out}")
    _run(run)
