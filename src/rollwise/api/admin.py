"""Tokens, the audit log and ``whoami``: the admin side of the API."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request

from rollwise.api.auth import Gatekeeper, requires
from rollwise.api.schemas import DENIED, AuditEntryOut, AuditVerifyOut, TokenCreate, TokenCreated, TokenOut, WhoAmI
from rollwise.control.principal import Principal, Role
from rollwise.core.audit import TokenError, parse_anchor
from rollwise.core.protocols import AuditLog, TokenRepository

router = APIRouter(prefix="/api/v1", tags=["admin"])


def _tokens(request: Request) -> TokenRepository:
    return request.app.state.tokens  # type: ignore[no-any-return]


def _audit(request: Request) -> AuditLog:
    return request.app.state.plane.audit  # type: ignore[no-any-return]


@router.get("/whoami", response_model=WhoAmI)
def whoami(request: Request) -> WhoAmI:
    """Who the presented token belongs to, and whether this caller needs a token at all."""
    gatekeeper: Gatekeeper = request.app.state.gatekeeper
    try:
        principal = gatekeeper.identify(request)
    except Exception:
        principal = None
    return WhoAmI(authenticated=principal is not None and principal.token_id is not None,
                  name=principal.name if principal else None, role=principal.role.name if principal else None,
                  tokens_required=gatekeeper.tokens_required(request))


@router.get("/tokens", response_model=list[TokenOut], responses=DENIED)
def list_tokens(request: Request, _who: Principal = Depends(requires(Role.admin))) -> list[
    TokenOut
]:
    return [TokenOut(**t.to_dict()) for t in _tokens(request).list()]


@router.post("/tokens", status_code=201, response_model=TokenCreated, responses=DENIED)
def create_token(payload: TokenCreate, request: Request,
                 who: Principal = Depends(requires(Role.admin, "tokens.create", "tokens"))) -> TokenCreated:
    """Create a token. The secret is in this response only; the server keeps its sha256."""
    try:
        token, secret = _tokens(request).create(payload.name, payload.role)
    except TokenError as exc:
        raise HTTPException(422, str(exc)) from None
    _audit(request).append(actor=who.actor, role=who.role.name, action="tokens.create", target=f"token:{token.id}",
                           after={"name": token.name, "role": token.role})
    return TokenCreated(**token.to_dict(), token=secret)


@router.delete("/tokens/{token_id}", response_model=TokenOut, responses={**DENIED, 404: {"description": "No token"}})
def revoke_token(token_id: Annotated[int, Path(ge=1, le=2**62)], request: Request,
                 who: Principal = Depends(requires(Role.admin, "tokens.revoke", "tokens"))) -> TokenOut:
    tokens = _tokens(request)
    before = tokens.get(token_id)
    if before is None:
        raise HTTPException(404, f"no token with id {token_id}")
    token = tokens.revoke(token_id)
    _audit(request).append(actor=who.actor, role=who.role.name, action="tokens.revoke", target=f"token:{token_id}",
                           before=before.to_dict(), after=token.to_dict())
    return TokenOut(**token.to_dict())


@router.get("/audit", response_model=list[AuditEntryOut], responses=DENIED)
def audit_entries(
    request: Request,
    target: Annotated[str | None, Query(max_length=255)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 200,
    _who: Principal = Depends(requires(Role.admin)),
) -> list[AuditEntryOut]:
    """The newest audit rows first: every write and every refused write."""
    if target is not None and "\x00" in target:
        return []
    entries = _audit(request).entries(target, limit, newest_first=True)
    return [AuditEntryOut.model_validate(e.to_dict()) for e in entries]


@router.get("/audit/verify", response_model=AuditVerifyOut, responses=DENIED)
def audit_verify(
    request: Request,
    head: Annotated[str | None, Query(max_length=300, pattern=r"^[0-9]{1,18}:\S+$",
                                      description="ID:HASH from /audit/head taken earlier.")] = None,
    _who: Principal = Depends(requires(Role.admin)),
) -> AuditVerifyOut:
    """Recompute the keyed hash chain; names the first row edited, removed or moved (or cut off, with ``head``)."""
    anchor = parse_anchor(head) if head is not None else None  # the pattern already holds: ID:HASH
    report = _audit(request).verify(anchor)
    return AuditVerifyOut(ok=report.ok, rows=report.rows, head=report.head, head_id=report.head_id,
                          keyed=report.keyed, unkeyed=report.unkeyed,
                          first_bad_row=report.problem.row_id if report.problem else None,
                          problem=str(report.problem) if report.problem else None)


@router.get("/audit/head", responses=DENIED)
def audit_head(request: Request, _who: Principal = Depends(requires(Role.admin))) -> dict[str, Any]:
    """The newest row's id and hash, to keep outside the database and pass to ``verify?head=ID:HASH`` later."""
    head = _audit(request).head()
    return {"id": head[0], "hash": head[1], "anchor": f"{head[0]}:{head[1]}"} if head else {
        "id": None, "hash": None, "anchor": None}
