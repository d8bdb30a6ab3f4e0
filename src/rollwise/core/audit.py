"""What the audit log and the API tokens are, apart from where they are kept.

The control plane, the API and the CLI only need these values and the ``AuditLog`` /
``TokenRepository`` protocols in ``core/protocols.py``; how rows are chained and stored is the SQL
adapter's business (``adapters/stores/sql_audit.py``), built only by the composition root
(``wiring.open_audit``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

ROLES = ("viewer", "deployer", "releaser", "admin")


class AuditKeyError(ValueError):
    """The audit key cannot be read or created; the message says where and how to fix it."""


class TokenError(ValueError):
    """A token request that cannot be honoured; the message names the field."""


class AuditEntry(BaseModel):
    """One row of the audit log: who did what to which target, before and after, and why."""

    model_config = ConfigDict(frozen=True)

    id: int
    at: float
    actor: str
    role: str
    action: str
    target: str
    before: Any
    after: Any
    reason: str | None
    denied: bool = False  # a refused attempt (401/403): recorded so probing shows up where people look
    prev_hash: str
    hash: str

    @model_validator(mode="before")
    @classmethod
    def _denied_from_outcome(cls, data: Any) -> Any:
        """``denied`` is not stored: it is what ``after`` says."""
        if isinstance(data, dict):
            after = data.get("after")
            data = {**data, "denied": isinstance(after, dict) and after.get("outcome") == "denied"}
        return data

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


@dataclass(frozen=True)
class ChainProblem:
    """The first place the chain does not hold, in words a person can act on."""

    row_id: int
    position: int  # 1-based position in id order
    message: str

    def __str__(self) -> str:
        return f"audit row id={self.row_id} (position {self.position}): {self.message}"


@dataclass(frozen=True)
class ChainReport:
    rows: int
    head: str
    problem: ChainProblem | None
    head_id: int | None = None  # id of the last row checked
    keyed: int = 0  # rows whose hash is an HMAC with the audit key
    unkeyed: int = 0  # older rows with a plain sha256 (checkable, but recomputable without the key)

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def anchor(self) -> str:
        """``ID:HASH`` of the head, as ``rollwise audit head`` prints it."""
        return f"{self.head_id}:{self.head}" if self.head_id is not None else ""


def parse_anchor(text: str) -> tuple[int, str]:
    """``ID:HASH`` -> (id, hash); ValueError naming what is wrong."""
    ident, _, digest = text.strip().partition(":")
    if not ident.isdigit() or not digest:
        raise ValueError(f"{text[:80]!r} is not ID:HASH as printed by `rollwise audit head`")
    return int(ident), digest


@dataclass(frozen=True)
class ApiToken:
    id: int
    name: str
    role: str
    created_at: float
    revoked_at: float | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "role": self.role, "created_at": self.created_at,
                "revoked_at": self.revoked_at, "active": self.active}
