"""Who is acting, and with what role: what every control-plane write is attributed to in the audit log.

Roles are ordered, each implying the ones before it: ``viewer`` (read) < ``deployer`` (start
rollouts, push KPIs) < ``releaser`` (promote, approve, abort, pause, resume, undo, update specs,
change flags, kill switch) < ``admin`` (tokens, audit, settings).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Role(enum.IntEnum):
    viewer = 1
    deployer = 2
    releaser = 3
    admin = 4


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    token_id: int | None  # None: the loopback bootstrap identity
    local: bool = False  # the CLI acting on the store directly (no server): audited with role "local"

    @property
    def actor(self) -> str:
        return self.name

    @property
    def audit_role(self) -> str:
        """The role the audit row names: the token's, or ``local`` for a CLI without ``--server``."""
        return "local" if self.local else self.role.name

    @classmethod
    def local_user(cls, name: str) -> Principal:
        """Whoever runs the CLI against the store: they can write the database, so nothing is refused."""
        return cls(name=name, role=Role.admin, token_id=None, local=True)
