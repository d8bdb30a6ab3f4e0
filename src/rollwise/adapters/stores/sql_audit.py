"""The audit log and API tokens, kept in the SQL store's database (tables from migration 0001).

Why it is shaped like this:

* The audit log is a keyed hash chain. Each row stores ``hash = "hmac1:" + HMAC-SHA256(key,
  prev_hash + canonical JSON of the row)``, so editing a row breaks its own hash, removing one breaks
  the next row's ``prev_hash``, and reordering breaks both; ``verify`` walks the chain in id order and
  names the first bad row. The key lives outside the database (``ROLLWISE_AUDIT_KEY``, or the file
  ``ROLLWISE_AUDIT_KEY_FILE``, default ``~/.rollwise/audit.key`` created 0600 on first use), so
  someone who can write the database but not read the key cannot recompute the chain after an
  edit. Rows written before keying (plain ``sha256`` hex, no prefix) still verify, are counted
  apart, and may not follow a keyed row (that would be a rewrite without the key).
* Keys do not help against rows cut off the end: the shorter chain is still a valid chain. For
  that, export the head (``rollwise audit head``: ``ID:HASH``) somewhere the database's writers cannot
  reach, and check it later with ``rollwise audit verify --head ID:HASH``.
* The database additionally refuses UPDATE and DELETE on ``audit_log`` (triggers from migration
  0001), so tampering needs someone who can drop those triggers, and then the chain still tells.
* Appends are serialised (``BEGIN IMMEDIATE`` on SQLite, an advisory transaction lock on PostgreSQL)
  so two writers can never both chain onto the same previous row.
* Values are normalised to canonical JSON *before* they are stored and hashed, so what a verifier
  reads back hashes to exactly what the writer hashed, on SQLite and PostgreSQL alike.
* Tokens are stored only as sha256 of a random 256-bit secret: a database dump reveals no usable
  token, and a plain (unsalted) hash is enough because the secret has full entropy. Presented tokens
  are compared against every active hash with ``hmac.compare_digest`` so timing tells nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic_core import to_jsonable_python
from sqlalchemy import Connection, Engine, func, insert, select, text, update

from rollwise.adapters.stores.sql import SqlStore, api_tokens_table, audit_log_table
from rollwise.core.audit import ROLES, ApiToken, AuditEntry, AuditKeyError, ChainProblem, ChainReport, TokenError

TOKEN_PREFIX = "rw_"
_AUDIT_LOCK_KEY = 0x726F6C6C61756469  # "rollaudi": serialises chain appends on PostgreSQL
GENESIS = ""  # prev_hash of the first row
KEYED = "hmac1:"  # prefix of a keyed row's hash: the row's chain version
AUDIT_KEY_ENV = "ROLLWISE_AUDIT_KEY"
AUDIT_KEY_FILE_ENV = "ROLLWISE_AUDIT_KEY_FILE"
DEFAULT_AUDIT_KEY_FILE = "~/.rollwise/audit.key"
MIN_KEY_CHARS = 16


# ---------------------------------------------------------------- canonical JSON and hashing


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, no NaN: one text per value, whatever wrote or read it."""
    return json.dumps(_finite(to_jsonable_python(value)), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False)


def normalise(value: Any) -> Any:
    """The value as it will read back from the database's JSON column."""
    return None if value is None else json.loads(canonical_json(value))


HASHED_FIELDS = ("at", "actor", "role", "action", "target", "before", "after", "reason")


def row_hash(prev_hash: str, row: dict[str, Any], key: bytes | None = None) -> str:
    """``hmac1:``-prefixed HMAC-SHA256 with ``key``; without one, the unkeyed sha256 of older rows."""
    message = (prev_hash + canonical_json({name: row.get(name) for name in HASHED_FIELDS})).encode("utf-8")
    if key is None:
        return hashlib.sha256(message).hexdigest()
    return KEYED + hmac.new(key, message, hashlib.sha256).hexdigest()


# ---------------------------------------------------------------- the audit key


def load_audit_key(env: dict[str, str] | None = None) -> bytes:
    """The chain key: ``ROLLWISE_AUDIT_KEY``, else the key file (created 0600 with a random key if missing)."""
    environ = dict(os.environ) if env is None else env
    value = environ.get(AUDIT_KEY_ENV)
    if value:
        if len(value) < MIN_KEY_CHARS:
            raise AuditKeyError(f"{AUDIT_KEY_ENV}: at least {MIN_KEY_CHARS} characters")
        return value.encode("utf-8")
    path = Path(environ.get(AUDIT_KEY_FILE_ENV) or DEFAULT_AUDIT_KEY_FILE).expanduser()
    try:
        return _read_or_create_key(path)
    except OSError as exc:
        raise AuditKeyError(f"{AUDIT_KEY_FILE_ENV} ({path}): {exc.strerror or exc}") from None


def _read_or_create_key(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Write a private temporary file, then link it into place: no reader ever sees a half-written
        # key, and when two processes race, both end up with the first one's.
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(secrets.token_hex(32) + "\n")
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink(missing_ok=True)
    key = path.read_text(encoding="utf-8").strip()
    if len(key) < MIN_KEY_CHARS:
        raise AuditKeyError(f"{AUDIT_KEY_FILE_ENV} ({path}): the key must be at least {MIN_KEY_CHARS} characters")
    return key.encode("utf-8")


# ---------------------------------------------------------------- audit log


class _Database:
    """The store's engine, or a private in-memory SQLite one for stores without a database."""

    def __init__(self, store: Any) -> None:
        if isinstance(store, SqlStore):
            self.owned: SqlStore | None = None
            self.sql = store
        else:
            self.owned = SqlStore("sqlite://")
            self.sql = self.owned
        # One in-memory SQLite connection is shared by every thread: take turns on it.
        self.lock = threading.RLock() if self.owned is not None else None
        self.engine: Engine = self.sql.engine
        self.is_postgres = self.engine.dialect.name == "postgresql"

    @contextmanager
    def write(self) -> Iterator[Connection]:
        with self._turn(), self.sql.write() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self._turn(), self.engine.connect() as conn:
            yield conn

    @contextmanager
    def _turn(self) -> Iterator[None]:
        if self.lock is None:
            yield
            return
        with self.lock:
            yield

    def close(self) -> None:
        if self.owned is not None:
            self.owned.close()


class SqlAuditLog:
    """Append-only, hash-chained record of every write: who, when, what before and after, and why."""

    def __init__(self, store: Any, key: bytes | None = None) -> None:
        self._db = _Database(store)
        self._key = key

    @property
    def key(self) -> bytes:
        """The chain key, loaded (or created) on first use: reading the log never needs it."""
        if self._key is None:
            self._key = load_audit_key()
        return self._key

    @property
    def database(self) -> _Database:
        return self._db

    def close(self) -> None:
        self._db.close()

    def append(
        self,
        *,
        actor: str,
        role: str,
        action: str,
        target: str,
        before: Any = None,
        after: Any = None,
        reason: str | None = None,
        at: float | None = None,
    ) -> AuditEntry:
        row = {
            "at": float(at if at is not None else time.time()),
            "actor": _column_text(actor),
            "role": _column_text(role, 64),
            "action": _column_text(action),
            "target": _column_text(target),
            "before": normalise(before),
            "after": normalise(after),
            "reason": reason.replace("\x00", "\\0") if reason else None,
        }
        key = self.key
        with self._db.write() as conn:
            if self._db.is_postgres:
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _AUDIT_LOCK_KEY})
            prev = conn.execute(
                select(audit_log_table.c.hash).order_by(audit_log_table.c.id.desc()).limit(1)
            ).scalar_one_or_none()
            prev_hash = prev or GENESIS
            digest = row_hash(prev_hash, row, key)
            new_id = conn.execute(
                insert(audit_log_table).values(**row, prev_hash=prev_hash, hash=digest)
                .returning(audit_log_table.c.id)
            ).scalar_one()
        return AuditEntry(id=int(new_id), prev_hash=prev_hash, hash=digest, **row)

    def entries(
        self, target: str | None = None, limit: int | None = None, after_id: int = 0, newest_first: bool = False
    ) -> list[AuditEntry]:
        query = select(audit_log_table).where(audit_log_table.c.id > after_id)
        if target is not None:
            query = query.where(audit_log_table.c.target == target)
        order = audit_log_table.c.id.desc() if newest_first else audit_log_table.c.id
        query = query.order_by(order)
        if limit is not None:
            query = query.limit(limit)
        with self._db.read() as conn:
            return [_entry(row) for row in conn.execute(query).mappings()]

    def head(self) -> tuple[int, str] | None:
        """(id, hash) of the newest row: export it, then ``verify(anchor=...)`` catches rows cut off."""
        query = select(audit_log_table.c.id, audit_log_table.c.hash).order_by(audit_log_table.c.id.desc()).limit(1)
        with self._db.read() as conn:
            row = conn.execute(query).first()
        return (int(row[0]), str(row[1])) if row is not None else None

    def verify(self, anchor: tuple[int, str] | None = None) -> ChainReport:
        """Recompute the whole chain in id order; report the first row that does not hold.

        With ``anchor`` (an exported head), the row with that id must still be there with that hash.
        """
        walk = _ChainWalk(lambda: self.key)
        with self._db.read() as conn:
            for raw in conn.execute(select(audit_log_table).order_by(audit_log_table.c.id)).mappings():
                entry = _entry(raw)
                if not walk.step(entry):
                    break
                if anchor is not None and entry.id == anchor[0]:
                    walk.check_anchor(entry, anchor[1])
                    anchor = None
                    if walk.problem is not None:
                        break
        if walk.problem is None and anchor is not None:
            walk.problem = ChainProblem(anchor[0], walk.rows + 1, (
                f"the exported head row is missing (the log now ends at id={walk.head_id}): rows were cut off "
                "the end, or this is not the log the head was taken from"))
        return ChainReport(walk.rows, walk.prev_hash, walk.problem, walk.head_id, walk.keyed, walk.unkeyed)


class _ChainWalk:
    """The state of ``verify`` walking the rows: the link to expect next, counts, the first problem."""

    def __init__(self, key: Any) -> None:
        self._key = key  # a callable: the key is loaded only when a keyed row needs it
        self.prev_hash = GENESIS
        self.rows = self.keyed = self.unkeyed = 0
        self.head_id: int | None = None
        self.problem: ChainProblem | None = None

    def step(self, entry: AuditEntry) -> bool:
        """Check one row; False (with ``problem`` set) when it does not hold."""
        position = self.rows + 1
        if (entry.prev_hash or GENESIS) != self.prev_hash:
            what = "the first row" if position == 1 else f"row {position - 1}"
            return self._fail(entry, position, f"prev_hash does not match the hash of {what} before it: a row was "
                                               "removed, inserted or reordered here")
        if entry.hash.startswith(KEYED):
            expected = row_hash(self.prev_hash, entry.__dict__, self._key())
            if not hmac.compare_digest(expected, entry.hash):
                return self._fail(entry, position, "content does not match its keyed hash: the row was edited (or "
                                                   "this is not the audit key that wrote it)")
            self.keyed += 1
        elif self.keyed:
            return self._fail(entry, position, "an unkeyed row after keyed ones: the row was edited and its chain "
                                               "recomputed without the audit key")
        else:
            if not hmac.compare_digest(row_hash(self.prev_hash, entry.__dict__), entry.hash):
                return self._fail(entry, position, "content does not match its hash: the row was edited")
            self.unkeyed += 1
        self.rows, self.prev_hash, self.head_id = position, entry.hash, entry.id
        return True

    def check_anchor(self, entry: AuditEntry, digest: str) -> None:
        if not hmac.compare_digest(entry.hash.encode(), digest.encode()):
            self.problem = ChainProblem(entry.id, self.rows, "hash differs from the exported head: the log was "
                                                             "rewritten from here or before")

    def _fail(self, entry: AuditEntry, position: int, message: str) -> bool:
        self.rows = position
        self.problem = ChainProblem(entry.id, position, message)
        return False


def _column_text(value: str, limit: int = 255) -> str:
    """Fit a caller-supplied string to its column: PostgreSQL refuses NUL and over-long varchars."""
    value = value.replace("\x00", "\\0")
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _entry(row: Any) -> AuditEntry:
    return AuditEntry(
        id=int(row["id"]), at=float(row["at"]), actor=row["actor"], role=row["role"], action=row["action"],
        target=row["target"], before=row["before"], after=row["after"], reason=row["reason"],
        prev_hash=row["prev_hash"] or GENESIS, hash=row["hash"],
    )


# ---------------------------------------------------------------- API tokens


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class SqlTokenRepository:
    """Bearer tokens with roles. The secret is shown once at creation and never stored."""

    def __init__(self, store: Any, database: _Database | None = None) -> None:
        self._db = database or _Database(store)

    def create(self, name: str, role: str) -> tuple[ApiToken, str]:
        name = name.strip()
        if not name:
            raise TokenError("name: must not be empty")
        if len(name) > 255 or "\x00" in name:
            raise TokenError("name: at most 255 characters, no NUL")
        if role not in ROLES:
            raise TokenError(f"role: {role!r} is not one of {', '.join(ROLES)}")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = time.time()
        with self._db.write() as conn:
            new_id = conn.execute(
                insert(api_tokens_table)
                .values(name=name, role=role, token_hash=hash_token(secret), created_at=now)
                .returning(api_tokens_table.c.id)
            ).scalar_one()
        return ApiToken(int(new_id), name, role, now, None), secret

    def list(self, include_revoked: bool = True) -> list[ApiToken]:
        query = select(api_tokens_table).order_by(api_tokens_table.c.id)
        if not include_revoked:
            query = query.where(api_tokens_table.c.revoked_at.is_(None))
        with self._db.read() as conn:
            return [_token(row) for row in conn.execute(query).mappings()]

    def get(self, token_id: int) -> ApiToken | None:
        with self._db.read() as conn:
            row = conn.execute(select(api_tokens_table).where(api_tokens_table.c.id == token_id)).mappings().first()
        return _token(row) if row is not None else None

    def revoke(self, token_id: int) -> ApiToken:
        now = time.time()
        with self._db.write() as conn:
            changed = conn.execute(
                update(api_tokens_table)
                .where(api_tokens_table.c.id == token_id, api_tokens_table.c.revoked_at.is_(None))
                .values(revoked_at=now)
            ).rowcount
        token = self.get(token_id)
        if token is None:
            raise TokenError(f"id: no token with id {token_id}")
        if not changed and token.revoked_at is None:  # pragma: no cover - raced with itself
            raise TokenError(f"id: token {token_id} could not be revoked")
        return token

    def any_exist(self) -> bool:
        """True once any token was ever created (revoked ones count: the API never reopens)."""
        with self._db.read() as conn:
            return bool(conn.execute(select(func.count()).select_from(api_tokens_table)).scalar_one())

    def resolve(self, presented: str) -> ApiToken | None:
        """The active token whose hash matches, compared in constant time against every active one."""
        digest = hash_token(presented)
        with self._db.read() as conn:
            rows = conn.execute(
                select(api_tokens_table).where(api_tokens_table.c.revoked_at.is_(None))
            ).mappings().all()
        found = None
        for row in rows:
            if hmac.compare_digest(digest, row["token_hash"]):
                found = row
        return _token(found) if found is not None else None


def _token(row: Any) -> ApiToken:
    return ApiToken(id=int(row["id"]), name=row["name"], role=row["role"], created_at=float(row["created_at"]),
                    revoked_at=None if row["revoked_at"] is None else float(row["revoked_at"]))
