"""Who is calling, and may they do this? Bearer tokens with ordered roles; denials are audited.

Roles are ordered (``control/principal.py``): viewer < deployer < releaser < admin.

Bootstrap rule: while **no token has ever been created**, requests from a loopback address are
served as a local admin, so ``rollwise serve`` just works on a laptop. The first ``rollwise tokens
create`` closes that door for good (revoking every token does not reopen it), and from then on
every request except the dashboard's static files, ``/healthz``, ``/api/v1/whoami``, OpenAPI and the
evidence schema needs a token. Requests from other addresses always need one.

A refused write (401 no/unknown token, 403 role too low) is itself written to the audit log, so
probing shows up where people look for it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from fastapi import HTTPException, Request

from rollwise.api.guards import QUERY_TOKEN, query_token_allowed
from rollwise.control.principal import Principal, Role
from rollwise.core.protocols import AuditLog, TokenRepository

LOCAL_ADMIN = "local (no tokens yet)"


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return host == "localhost"


def _presented_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    # EventSource cannot send headers: only the live stream takes the token as a query parameter
    # (guards.QueryTokenGuard refuses it everywhere else, and the access log redacts it).
    if not query_token_allowed(request.scope.get("path", "")):
        return None
    query = request.query_params.get(QUERY_TOKEN)
    return query or None


class Gatekeeper:
    """Turns a request into a ``Principal`` (or a refusal) and records refused writes."""

    def __init__(self, tokens: TokenRepository, audit: AuditLog) -> None:
        self.tokens = tokens
        self.audit = audit

    def tokens_required(self, request: Request) -> bool:
        return not (_is_loopback(request.client.host if request.client else None) and not self.tokens.any_exist())

    def identify(self, request: Request) -> Principal | None:
        """The caller, or None when anonymous and not allowed to be. Raises 401 for an unknown token."""
        presented = _presented_token(request)
        if presented is not None:
            token = self.tokens.resolve(presented)
            if token is None:
                raise _Unauthenticated("unknown or revoked token")
            return Principal(name=token.name, role=Role[token.role], token_id=token.id)
        if not self.tokens_required(request):
            return Principal(name=LOCAL_ADMIN, role=Role.admin, token_id=None)
        return None

    def authorize(self, request: Request, needed: Role, action: str | None, target: str) -> Principal:
        """The caller if their role is at least ``needed``; else 401/403 (audited when ``action`` is set)."""
        try:
            principal = self.identify(request)
        except _Unauthenticated as exc:
            self._deny(action, target, "unknown", "none", 401, str(exc))
            raise _http(401, f"{exc}: send Authorization: Bearer <token>") from None
        if principal is None:
            self._deny(action, target, "unknown", "none", 401, "no token")
            raise _http(401, "a token is required: send Authorization: Bearer <token>")
        if principal.role < needed:
            self._deny(action, target, principal.name, principal.role.name, 403,
                       f"role {principal.role.name} may not {action or 'read this'}; needs {needed.name}")
            raise _http(403, f"role {principal.role.name!r} may not do this: it needs {needed.name!r} or above")
        return principal

    def _deny(self, action: str | None, target: str, actor: str, role: str, status: int, why: str) -> None:
        if action is None:
            return
        self.audit.append(actor=actor, role=role, action=action, target=target,
                          after={"outcome": "denied", "status": status, "error": why})


class _Unauthenticated(Exception):
    pass


def _http(status: int, detail: str) -> HTTPException:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return HTTPException(status_code=status, detail=detail, headers=headers)


def requires(role: Role, action: str | None = None, target: str | Callable[[Request], str] = "") -> Any:
    """A FastAPI dependency: ``principal: Principal = Depends(requires(Role.releaser, "rollout.abort"))``.

    ``target`` is what the audit row names: a constant, or read from the request (default: the
    ``name`` path parameter).
    """

    def dependency(request: Request) -> Principal:
        what = target(request) if callable(target) else target or str(request.path_params.get("name", "-"))
        gatekeeper: Gatekeeper = request.app.state.gatekeeper
        return gatekeeper.authorize(request, role, action, what)

    return dependency
