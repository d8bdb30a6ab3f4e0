"""FlagRepository: the served flag configuration, its version, and the audited history of its changes.

The flag file is the source of truth. Every change made through rollwise (CLI, API, schedules) is a
read-modify-write of that file under an exclusive lock, validated before it is written, written
atomically (temp file + os.replace), and appended to the history as who/when/what/why. Every process
serving the file (servers, in-process providers) polls it and swaps in a freshly compiled FlagSet, so a
kill switch written by the CLI reaches all of them within one poll interval. A file that does not
validate is never served: the previous configuration stays.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rollwise.flags import controls, edit
from rollwise.flags.controls import ControlError, Schedule
from rollwise.flags.definitions import (
    FlagValidationError,
    load_document,
    parse_text,
    read_text,
    validate_document,
)
from rollwise.flags.evaluator import FlagSet
from rollwise.flags.watcher import FileStamp, PollingWatcher, file_stamp

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChangeRecord:
    """One audited change: what happened to which flag, by whom, when and why."""

    version: int
    at: str
    actor: str
    reason: str
    action: str
    flag: str | None
    before: Any = None
    after: Any = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ChangeRecord:
        fields: dict[str, Any] = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        return cls(**fields)


class HistoryStore(Protocol):
    """Append-only change history; the JSON-lines file is the default, a SQL table can replace it."""

    def append(self, record: ChangeRecord) -> None: ...

    def entries(self, flag: str | None = None) -> list[ChangeRecord]: ...


class JsonlHistory:
    """History as JSON lines next to the flag file (`<flags>.history.jsonl`); one write() per record."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def beside(cls, flags_path: str | Path) -> JsonlHistory:
        p = Path(flags_path)
        return cls(p.with_name(p.name + ".history.jsonl"))

    def append(self, record: ChangeRecord) -> None:
        line = (json.dumps(record.to_json(), ensure_ascii=False, sort_keys=True) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def entries(self, flag: str | None = None) -> list[ChangeRecord]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            rec = ChangeRecord.from_json(json.loads(line))
            if flag is None or rec.flag == flag:
                out.append(rec)
        return out


class SharedDocument(Protocol):
    """The fleet's stored document while it is held for a change (``SharedFlags.exclusive``)."""

    version: int | None
    document: str | None

    def publish(self, document: str, version: int, at: float) -> None: ...


class SharedFlags(Protocol):
    """Where flag servers of one fleet keep the newest document (``adapters/stores/sql_flags.py``)."""

    def exclusive(self) -> contextlib.AbstractContextManager[SharedDocument]: ...

    def latest(self) -> tuple[int, str] | None: ...

    def listen(self, on_change: Callable[[], None]) -> None: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class ConfigChange:
    """Told to subscribers whenever the served configuration changes."""

    version: int
    etag: str
    flags_changed: list[str]
    at: float
    action: str


@dataclass(frozen=True)
class _Served:
    raw: dict[str, Any]
    served_raw: dict[str, Any]
    flag_set: FlagSet
    etag: str
    version: int
    stamp: FileStamp
    rule_keys: frozenset[str] = frozenset()


def _etag(raw: dict[str, Any]) -> str:
    body = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return '"' + hashlib.sha256(body.encode()).hexdigest()[:20] + '"'


def atomic_write(path: Path, text: str) -> None:
    """Write via a temp file in the same directory and os.replace, so readers never see half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(OSError):
            os.chmod(tmp, os.stat(path).st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class FlagRepository:
    """Holds the current FlagSet for one flag file, keeps it fresh, and makes audited changes to it.

    `apply_schedules=True` (servers) persists due schedules into the file with a history record;
    `False` (in-process providers) applies them in memory only, so readers need no write access.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        history: HistoryStore | None = None,
        clock: Callable[[], float] = time.time,
        fractional_version: int | None = None,
        apply_schedules: bool = True,
        poll_interval: float = 0.15,
    ):
        self.path = Path(path)
        self.history: HistoryStore = history if history is not None else JsonlHistory.beside(self.path)
        self.clock = clock
        self.fractional_version = fractional_version
        self.apply_schedules = apply_schedules
        self._lock = threading.RLock()
        self._listeners: list[Callable[[ConfigChange], None]] = []
        self._watcher = PollingWatcher(self.tick, poll_interval)
        self._shared: SharedFlags | None = None
        self.last_error: str | None = None
        stamp = file_stamp(self.path)
        doc = load_document(self.path)
        self._served = self._build(doc.raw, stamp)
        if doc.rule_problems:  # served as flagd would (PARSE_ERROR when reached), but said once at start
            more = f" (and {len(doc.rule_problems) - 1} more)" if len(doc.rule_problems) > 1 else ""
            log.warning("flag file %s has rules that fail when reached: %s%s", self.path, doc.rule_problems[0], more)

    # --- reading ------------------------------------------------------------------------------------

    @property
    def flag_set(self) -> FlagSet:
        return self._served.flag_set

    @property
    def version(self) -> int:
        return self._served.version

    @property
    def etag(self) -> str:
        return self._served.etag

    @property
    def document(self) -> dict[str, Any]:
        """The document as written in the file (with pending schedules and kill records)."""
        return self._served.raw

    def schedules(self) -> list[Schedule]:
        return controls.schedules(self._served.raw)

    def killed(self) -> dict[str, Any]:
        return controls.killed(self._served.raw)

    def changes(self, flag: str | None = None) -> list[ChangeRecord]:
        return self.history.entries(flag)

    # --- subscriptions and freshness ----------------------------------------------------------------

    def subscribe(self, listener: Callable[[ConfigChange], None]) -> Callable[[], None]:
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return unsubscribe

    def start(self) -> None:
        """Start polling the file (and due schedules) on a background thread, and listening to the fleet."""
        self._watcher.start()
        if self._shared is not None:
            self._shared.listen(self.pull_shared)

    def stop(self) -> None:
        self._watcher.stop()
        if self._shared is not None:
            self._shared.stop()

    # --- serving as one of a fleet ------------------------------------------------------------------

    def share(self, shared: SharedFlags) -> None:
        """Serve the fleet's document from now on (call before ``start``).

        The store wins once it holds a document: this server's file becomes its cache, overwritten
        with the stored document when that is newer (or the same version, written differently). The
        first server of a fleet seeds the store with its file. Changes made here are stored and
        announced in the transaction that holds the stored document (``_mutate``).
        """
        with self._lock, self._file_lock(), shared.exclusive() as stored:
            if stored.version is None or stored.document is None:
                stored.publish(read_text(self.path), self.version, self.clock())
            else:
                self._adopt(stored.version, stored.document)
        self._shared = shared

    def pull_shared(self) -> None:
        """Adopt the fleet's newest document if this server is behind (the listener calls this)."""
        if self._shared is None or (latest := self._shared.latest()) is None:
            return
        with self._lock, self._file_lock():
            self._adopt(*latest)

    def _adopt(self, version: int, document: str) -> None:
        """Caller holds the locks. Newer, or the same version with other text (a change whose store
        write failed after its file write): the stored document wins."""
        if version < self.version or (version == self.version and read_text(self.path) == document):
            return
        atomic_write(self.path, document)
        self.reload()

    def tick(self) -> None:
        """One poll: reload the file if it changed, then apply schedules that have come due."""
        if file_stamp(self.path) != self._served.stamp:
            self.reload()
        now = self.clock()
        if self.apply_schedules:
            # Judge by the file's document: the served view may already show a due schedule in memory.
            if controls.due_schedules(self._served.raw, now):
                self.apply_due_schedules()
            return
        due_at = controls.next_due(self._served.served_raw)
        if due_at is not None and due_at <= now:
            with self._lock:
                self._install(self._build(self._served.raw, self._served.stamp), "schedule")

    def reload(self) -> bool:
        """Re-read the file; an invalid file is logged once, in one line, and ignored (the served
        configuration stays). A file whose rules have problems the served one did not have counts as invalid."""
        with self._lock:
            stamp = file_stamp(self.path)
            try:
                doc = load_document(self.path)
                _refuse_new_rule_problems(doc.rule_keys, doc.rule_problems, self._served.rule_keys, str(self.path))
                served = self._build(doc.raw, stamp)
            except Exception as e:  # whatever is wrong with the file, the served set stays and one line says why
                self.last_error = one_line(e)
                log.error("flag file %s rejected, still serving version %s: %s", self.path, self.version,
                          self.last_error)
                # Remember the stamp so one bad write is reported once, not on every tick.
                self._served = _replace_stamp(self._served, stamp)
                return False
            self.last_error = None
            return self._install(served, "reload")

    def _build(self, raw: dict[str, Any], stamp: FileStamp) -> _Served:
        served_raw, _ = controls.materialize(raw, self.clock())
        doc = validate_document(served_raw, str(self.path))
        flag_set = FlagSet(doc, fractional_version=self.fractional_version, clock=self.clock, source=str(self.path))
        version = controls.doc_version(raw)
        return _Served(raw, served_raw, flag_set, _etag(served_raw), version, stamp, doc.rule_keys)

    def _install(self, served: _Served, action: str) -> bool:
        old = self._served
        self._served = served
        if served.etag == old.etag:
            return False
        old_flags = old.served_raw.get("flags", {})
        new_flags = served.served_raw.get("flags", {})
        changed = sorted(k for k in set(old_flags) | set(new_flags) if old_flags.get(k) != new_flags.get(k))
        event = ConfigChange(served.version, served.etag, changed, self.clock(), action)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("flag change listener failed")
        return True

    # --- audited changes ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @contextlib.contextmanager
    def _shared_document(self) -> Iterator[SharedDocument | None]:
        if self._shared is None:
            yield None
            return
        with self._shared.exclusive() as stored:
            yield stored

    def _mutate(
        self,
        action: str,
        flag: str | None,
        actor: str,
        reason: str,
        transform: Callable[[dict[str, Any]], dict[str, Any]],
        details: dict[str, Any] | None = None,
    ) -> ChangeRecord:
        if not actor:
            raise ControlError("every change needs an actor (who is making it)")
        with self._lock, self._file_lock(), self._shared_document() as stored:
            if stored is not None and stored.version is not None and stored.document is not None:
                self._adopt(stored.version, stored.document)  # change the fleet's newest, not a stale cache
            text = read_text(self.path)  # fresh: another process may have written since
            current = validate_document(parse_text(text, str(self.path)), str(self.path), text).raw
            original = copy.deepcopy(current)
            new_raw = transform(current)
            version = controls.bump_version(new_raw)
            served = self._build(new_raw, None)  # validates the whole new document before writing
            new_doc = validate_document(new_raw, str(self.path))
            _refuse_new_rule_problems(new_doc.rule_keys, new_doc.rule_problems, self._served.rule_keys, str(self.path))
            rendered = edit.render(self.path, text, original, new_raw)
            atomic_write(self.path, rendered)
            if stored is not None:
                stored.publish(rendered, version, self.clock())  # announced when the store commits
            served = _replace_stamp(served, file_stamp(self.path))
            before = current.get("flags", {}).get(flag) if flag else None
            after = new_raw.get("flags", {}).get(flag) if flag else None
            record = ChangeRecord(
                version, controls.iso(self.clock()), actor, reason, action, flag, before, after, details or {}
            )
            self.history.append(record)
            self._install(served, action)
            return record

    def kill(self, key: str, actor: str, reason: str) -> ChangeRecord:
        def transform(raw: dict[str, Any]) -> dict[str, Any]:
            return controls.kill(raw, key, actor, reason, self.clock())

        return self._mutate("kill", key, actor, reason, transform)

    def restore(self, key: str, actor: str, reason: str) -> ChangeRecord:
        return self._mutate("restore", key, actor, reason, lambda raw: controls.restore(raw, key))

    def set_rollout_percent(self, key: str, percent: float, actor: str, reason: str) -> ChangeRecord:
        return self._mutate(
            "set-percent",
            key,
            actor,
            reason,
            lambda raw: controls.set_percent(raw, key, percent),
            {"percent": percent},
        )

    def set_enabled(self, key: str, enabled: bool, actor: str, reason: str) -> ChangeRecord:
        action = "enable" if enabled else "disable"
        return self._mutate(action, key, actor, reason, lambda raw: controls.set_state(raw, key, enabled))

    def dark_launch(self, key: str, segment_rule: Any, actor: str, reason: str) -> ChangeRecord:
        return self._mutate(
            "dark-launch",
            key,
            actor,
            reason,
            lambda raw: controls.dark_launch(raw, key, segment_rule),
            {"segment": segment_rule},
        )

    def schedule(
        self, key: str, at: float, action: str, actor: str, reason: str, percent: float | None = None
    ) -> ChangeRecord:
        created: list[Schedule] = []

        def transform(raw: dict[str, Any]) -> dict[str, Any]:
            out, sched = controls.add_schedule(raw, key, at, action, percent, actor, reason, self.clock())
            created.append(sched)
            return out

        details = {"at": controls.iso(at), "scheduled_action": action, "percent": percent}
        return self._mutate("schedule", key, actor, reason, transform, details)

    def cancel_schedule(self, schedule_id: str, actor: str, reason: str) -> ChangeRecord:
        return self._mutate(
            "cancel-schedule",
            None,
            actor,
            reason,
            lambda raw: controls.remove_schedule(raw, schedule_id),
            {"schedule": schedule_id},
        )

    def replace(self, new_document: dict[str, Any] | str, actor: str, reason: str) -> ChangeRecord:
        """Replace the whole flag document (validated whole; rejected whole)."""
        data = parse_text(new_document, str(self.path)) if isinstance(new_document, str) else new_document
        validate_document(data, "<new document>")

        def transform(raw: dict[str, Any]) -> dict[str, Any]:
            out = dict(data)
            out.setdefault("$rollwise", {})
            if isinstance(out["$rollwise"], dict):
                out["$rollwise"] = {**out["$rollwise"], "version": controls.doc_version(raw)}
            return out

        return self._mutate("replace", None, actor, reason, transform)

    def apply_due_schedules(self) -> list[ChangeRecord]:
        """Persist every schedule that has come due, each as its own audited change."""
        records = []
        now = self.clock()
        for sched in controls.due_schedules(self._served.raw, now):
            details = {"schedule": sched.id, "scheduled_action": sched.action, "percent": sched.percent}
            actor = f"schedule:{sched.actor}"

            def transform(raw: dict[str, Any], s: Schedule = sched) -> dict[str, Any]:
                if s.id not in {x.id for x in controls.schedules(raw)}:
                    raise _AlreadyApplied
                return controls.apply_schedule(raw, s)

            try:
                records.append(self._mutate(sched.action, sched.flag, actor, sched.reason, transform, details))
            except _AlreadyApplied:
                continue  # another server applied it first
            except (ControlError, FlagValidationError) as e:
                # A schedule that can no longer apply is dropped and the failure audited, not retried forever.
                fail_details = {**details, "error": str(e)}
                with contextlib.suppress(ControlError, FlagValidationError):
                    records.append(
                        self._mutate(
                            "schedule-failed",
                            sched.flag,
                            actor,
                            sched.reason,
                            lambda raw, s=sched: controls.remove_schedule(raw, s.id),  # type: ignore[misc]
                            fail_details,
                        )
                    )
        return records


class _AlreadyApplied(Exception):
    pass


def _replace_stamp(served: _Served, stamp: FileStamp) -> _Served:
    return dataclasses.replace(served, stamp=stamp)


def one_line(error: BaseException) -> str:
    """An error as one log/status line: the first problem, and how many more there are."""
    problems = error.problems if isinstance(error, FlagValidationError) else [f"{type(error).__name__}: {error}"]
    lines = [ln for p in problems for ln in str(p).splitlines() if ln.strip()] or [type(error).__name__]
    more = f" (and {len(lines) - 1} more problems)" if len(lines) > 1 else ""
    return lines[0] + more


def _refuse_new_rule_problems(keys: frozenset[str], formatted: list[str], served: frozenset[str], source: str) -> None:
    """A change must not add rule problems: a rule that can never evaluate is refused before it is served.
    Problems the served file already had (flagd's testbed keeps some on purpose) do not block a change."""
    new = keys - served
    if new:
        raise FlagValidationError([p for p in formatted if p.split(": ", 1)[-1] in new] or sorted(new), source)


def set_rollout_percent(flags_path: str | Path, key: str, percent: float, actor: str, reason: str) -> ChangeRecord:
    """Set a flag's rollout share in a flag file (for the rollout engine); audited like any change."""
    return FlagRepository(flags_path, apply_schedules=False).set_rollout_percent(key, percent, actor, reason)
