"""``LocalControl``: rollouts in this machine's store, written through the API's ``ControlPlane``.

Writes go through the same methods the API's routes call, so every local start, command and update
gets its audit row (actor as given, role ``local``: whoever can write the database is not refused).
Reads open the store read-only and never create one that is not there.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollwise.control.protocol import ChangeRef, ControlFailure, Summary, load_spec_file

if TYPE_CHECKING:
    from rollwise.control.plane import ChangeRisk, ControlPlane
    from rollwise.control.principal import Principal
    from rollwise.core.model import RolloutRecord
    from rollwise.core.protocols import Store

Foreground = Callable[["Store", list[str], str, "float | None", bool], "list[RolloutRecord]"]
"""Runs the controller here over ``names`` until they end (or, when asked, wait for a person), showing
progress: ``(store, names, output, max_s, until_paused)``."""


def record_summary(record: RolloutRecord) -> Summary:
    """What the CLI prints about a rollout (``--output json``)."""
    return {
        "name": record.name,
        "service": record.spec.service,
        "strategy": record.spec.strategy.kind,
        "phase": str(record.phase),
        "stable": record.stable_version,
        "canary": record.canary_version,
        "canary_weight": record.route.canary_weight,
        "mirror_percent": record.route.mirror_percent,
        "step": record.step_index,
        "stage": record.stage_index,
        "paused_reason": record.paused_reason,
        "metrics_error": record.metrics_error,
        "route_error": record.route_error,
        "last_verdict": record.last_verdict,
        "decisions": record.decisions,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "finished_at": record.finished_at,
        "revision": record.revision,
        **_waves(record),
    }


def _waves(record: RolloutRecord) -> Summary:
    """``waves``: one row per region wave, only for a rollout that has them."""
    from rollwise.core.waves import wave_rows

    rows = wave_rows(record)
    return {} if rows is None else {"waves": [row.model_dump(mode="json") for row in rows]}


class LocalControl:
    title = "rollwise"
    local = True

    def __init__(self, store_url: str | None, foreground: Foreground) -> None:
        self.store_url = store_url
        self.foreground = foreground
        self._plane: ControlPlane | None = None
        self._reader: Store | None = None

    # ------------------------------------------------------------------ writes (audited)

    def start(self, file: Path, actor: str, commit_time: str | None, change: ChangeRef | None = None,
              force: bool = False) -> Summary:
        from rollwise.core.engine import CommandError
        from rollwise.core.protocols import ConflictError

        spec = load_spec_file(file)
        plane = self.plane()
        when = datetime.fromisoformat(commit_time).timestamp() if commit_time else None
        risk = None if change is None else self._score(change, spec.service, plane.store)
        try:
            record = plane.start(spec, self._who(actor), "", when, force=force, risk=risk)
        except (ConflictError, CommandError) as exc:
            raise ControlFailure(f"error: {exc}") from None
        return record_summary(record)

    def _score(self, change: ChangeRef, service: str, store: Store) -> ChangeRisk:
        import time

        from rollwise.control.plane import ChangeRisk
        from rollwise.learning.outcomes import past_rollouts
        from rollwise.learning.risk import assess_change
        from rollwise.wiring import RepositoryError, change_source

        source = change_source(Path(change.repo))
        try:
            history, commits = source.history(change.since), source.between(change.since, change.until)
        except RepositoryError as exc:
            raise ControlFailure(f"error: {exc}", exit_code=2) from None
        if not commits:
            raise ControlFailure(f"error: --from {change.since} --to {change.until}: no commits in the range",
                                 exit_code=2)
        assessment = assess_change(history, commits, past_rollouts(store), service, time.time())
        return ChangeRisk(assessment, {"repo": change.repo, "from": change.since, "to": change.until})

    def command(self, name: str, command: str, actor: str, reason: str, full: bool = False) -> Summary:
        from rollwise.core.engine import CommandError
        from rollwise.core.protocols import NotFoundError

        plane = self.plane()
        try:
            record = plane.command(name, command, self._who(actor), reason, full=full)
        except NotFoundError:
            raise ControlFailure(f"error: no rollout named {name!r}") from None
        except CommandError as exc:
            raise ControlFailure(f"error: {exc}") from None
        return record_summary(record)

    def update(self, name: str, file: Path, actor: str, reason: str) -> Summary:
        from rollwise.core.engine import CommandError

        spec = load_spec_file(file)
        plane = self.plane()
        self._get(plane.store, name)
        try:
            record = plane.update_spec(name, spec, self._who(actor), reason)
        except CommandError as exc:
            raise ControlFailure(f"error: {exc}", exit_code=2) from None
        return record_summary(record)

    def follow(self, name: str, output: str, max_seconds: float | None, until_paused: bool = False) -> Summary:
        store = self.plane().store
        records = self.foreground(store, [name], output, max_seconds, until_paused)
        return record_summary(records[0] if records else store.get(name))

    # ------------------------------------------------------------------ reads

    def status(self, name: str) -> Summary:
        store = self.reader()
        record = self._get(store, name)
        applied = store.applied_route(name)
        return {**record_summary(record), "route_revision": record.route.revision,  # desired vs confirmed
                "route_applied_revision": applied.revision if applied else None,
                "route_applied_at": applied.at if applied else None}

    def list(self, active: bool) -> list[Summary]:
        return [record_summary(r) for r in self.reader().list(active_only=active)]

    def events(self, name: str | None) -> builtins.list[dict[str, Any]]:
        store = self.reader()
        if name is not None:
            self._get(store, name)
        return [e.model_dump(mode="json") for e in store.events(name)]

    @property
    def missing_note(self) -> str:
        return missing_note(self._reader)

    # ------------------------------------------------------------------ plumbing

    def plane(self) -> ControlPlane:
        """The store (created if missing) with its audit log; the audit key is loaded now, before any write."""
        if self._plane is None:
            from rollwise.control.plane import ControlPlane
            from rollwise.core.audit import AuditKeyError
            from rollwise.wiring import open_audit, open_store

            store = _opened(lambda: open_store(self.store_url))
            audit, _tokens = open_audit(store)
            try:
                audit.key  # noqa: B018 - the property loads it: a bad key is one line and exit 2
            except AuditKeyError as exc:
                raise ControlFailure(f"error: {exc}", exit_code=2) from None
            self._plane = ControlPlane(store=store, audit=audit)  # the operator: AdmitAll, no API policy
        return self._plane

    def reader(self) -> Store:
        if self._reader is None:
            from rollwise.wiring import open_store_for_reading

            self._reader = _opened(lambda: open_store_for_reading(self.store_url))
        return self._reader

    def _get(self, store: Store, name: str) -> RolloutRecord:
        from rollwise.core.protocols import NotFoundError

        try:
            return store.get(name)
        except NotFoundError:
            raise ControlFailure(f"error: no rollout named {name!r}{missing_note(store)}") from None

    @staticmethod
    def _who(actor: str) -> Principal:
        from rollwise.control.principal import Principal

        return Principal.local_user(actor)

    def close(self) -> None:
        """Nothing to release: the stores close with the process, as the CLI's always have."""


def _opened(open_it: Callable[[], Store]) -> Store:
    from rollwise.core.protocols import StoreUnavailable

    try:
        return open_it()
    except StoreUnavailable as exc:
        raise ControlFailure(f"error: --store: {exc}") from None


def missing_note(store: Any) -> str:
    """`` (why)`` when the store read does not exist (so it reads as empty), else nothing."""
    from rollwise.core.memory_store import MissingStore

    return f" ({store.missing})" if isinstance(store, MissingStore) and store.missing else ""
