"""What every request passes before a route sees it: tokens in URLs, body size, validation replies.

* **Tokens in URLs.** A token in a query string ends up in access logs, proxy logs and browser
  history. Browsers' ``EventSource`` cannot send headers, so the live event stream (and only it)
  accepts ``?access_token=``; anywhere else the request is refused with 400 before any route runs,
  and the access log shows every ``access_token`` value as ``[redacted]``.
* **Body size.** The app is built with FastAPI's ``max_body_size``: a declared ``Content-Length``
  over the limit is refused before the body is read, a chunked body is counted as it streams.
* **422 replies** name the field and the rule, never echo the input: a multi-megabyte body does not
  come back, and a NaN in it cannot turn the reply into a 500.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

QUERY_TOKEN = "access_token"
# Routes a browser reaches through EventSource, which cannot set an Authorization header.
QUERY_TOKEN_PATHS = frozenset({"/api/v1/events/stream"})
MAX_BODY_BYTES = 1 << 20
_MAX_PROBLEMS = 20
_MAX_TEXT = 200
_TOKEN_IN_URL = re.compile(r"(?i)((?:^|[?&;])access(?:_|%5f)token=)[^&;\s#\"]*")


def query_token_allowed(path: str) -> bool:
    return path in QUERY_TOKEN_PATHS


def _has_query_token(query_string: bytes) -> bool:
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    return any(key == QUERY_TOKEN for key, _ in pairs)


class QueryTokenGuard:
    """Refuses ``?access_token=`` (400) on every path except the event stream, before routing."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and not query_token_allowed(scope.get("path", ""))
                and _has_query_token(scope.get("query_string", b""))):
            response = JSONResponse(status_code=400, content={
                "detail": f"{QUERY_TOKEN}: a token in the URL is accepted only by the event stream "
                          f"({', '.join(sorted(QUERY_TOKEN_PATHS))}); send the header Authorization: Bearer <token>"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def redact_tokens(text: str) -> str:
    """``/path?access_token=SECRET&x=1`` -> ``/path?access_token=[redacted]&x=1``."""
    return _TOKEN_IN_URL.sub(r"\1[redacted]", text)


class RedactQueryTokens(logging.Filter):
    """A logging filter for uvicorn's access (and error) log: no token value reaches a log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_tokens(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = redact_tokens(record.msg)
        return True


def install_log_redaction() -> None:
    """Attach the filter to uvicorn's loggers once (``logging.config.dictConfig`` keeps filters)."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactQueryTokens) for f in logger.filters):
            logger.addFilter(RedactQueryTokens())


def _short(value: Any) -> str | int:
    if isinstance(value, int):
        return value
    text = str(value)
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"


def validation_problems(exc: RequestValidationError) -> list[dict[str, Any]]:
    """FastAPI's error list without ``input``/``ctx`` (they echo the body), each text trimmed."""
    problems = []
    for error in list(exc.errors())[:_MAX_PROBLEMS]:
        loc = [_short(part) for part in error.get("loc", ())]
        field = ".".join(str(part) for part in loc if part not in ("body", "query", "path", "header"))
        problems.append({"loc": loc, "field": field or "(body)", "msg": _short(error.get("msg", "invalid")),
                         "type": _short(error.get("type", "value_error"))})
    return problems


def install(app: FastAPI) -> None:
    """Add the guards to ``app``: URL-token refusal, log redaction, echo-free 422, a worded 413."""
    app.add_middleware(QueryTokenGuard)
    install_log_redaction()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": validation_problems(exc)})
