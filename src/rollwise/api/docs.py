"""``/docs``: the API reference as one self-contained HTML page, rendered on the server.

FastAPI's own ``/docs`` and ``/redoc`` load Swagger UI / ReDoc scripts and fonts from a CDN, so an
operator's browser would fetch third-party code just to read the API, and the page breaks offline.
This page lists every operation of ``/openapi.json`` (method, path, summary, parameters, request
body and responses) with no script, stylesheet or font from anywhere else.
"""

from __future__ import annotations

from html import escape
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

STYLE = """body{font:14px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#222}
h2{border-bottom:1px solid #ddd;margin-top:2rem}.op{margin:1rem 0;padding:.5rem 1rem;background:#f7f7f7}
.m{display:inline-block;min-width:4.5rem;font-weight:bold}code{font:13px ui-monospace,monospace}
td,th{text-align:left;padding:0 1rem 0 0;vertical-align:top}"""


def mount(app: FastAPI) -> None:
    """Serve the page at ``/docs`` (create the app with ``docs_url=None, redoc_url=None``)."""

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(render(app.openapi()))


def render(schema: dict[str, Any]) -> str:
    info = schema.get("info", {})
    sections: dict[str, list[str]] = {}
    for path, operations in schema.get("paths", {}).items():
        for method, op in operations.items():
            tag = (op.get("tags") or ["other"])[0]
            sections.setdefault(tag, []).append(_operation(method, path, op))
    body = "".join(f"<h2>{escape(tag)}</h2>{''.join(ops)}" for tag, ops in sections.items())
    return (f"<!doctype html><html><head><meta charset=utf-8><title>{escape(info.get('title', 'API'))} API</title>"
            f"<style>{STYLE}</style></head><body><h1>{escape(info.get('title', 'API'))} API "
            f"{escape(str(info.get('version', '')))}</h1><p>{escape(info.get('summary', ''))}</p>"
            f"<p>{escape(info.get('description', ''))}</p><p>Machine-readable: <a href=\"openapi.json\">"
            f"openapi.json</a></p>{body}</body></html>")


def _operation(method: str, path: str, op: dict[str, Any]) -> str:
    params = "".join(
        f"<tr><td><code>{escape(p.get('name', ''))}</code></td><td>{escape(p.get('in', ''))}</td>"
        f"<td>{'required' if p.get('required') else ''}</td><td>{escape(p.get('description', ''))}</td></tr>"
        for p in op.get("parameters", []))
    body = op.get("requestBody", {}).get("content", {})
    responses = ", ".join(f"{escape(code)} {escape(r.get('description', ''))}"
                          for code, r in op.get("responses", {}).items())
    return (f"<div class=op><div><span class=m>{escape(method.upper())}</span><code>{escape(path)}</code> "
            f"{escape(op.get('summary', ''))}</div>"
            + (f"<p>{escape(op['description'])}</p>" if op.get("description") else "")
            + (f"<table>{params}</table>" if params else "")
            + (f"<div>body: {escape(', '.join(body))}</div>" if body else "")
            + f"<div>responses: {responses}</div></div>")
