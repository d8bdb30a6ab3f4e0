"""``GET /api/v1/events/stream``: new events as Server-Sent Events, for a dashboard without reloads.

The store has no change feed, so the stream polls it (every ``poll_s``, 0.5 s by default). Each poll
is one cheap ``list()``; only rollouts whose revision moved are asked for their new events, since
every event is committed together with a revision bump. Each message carries the event and the
rollout's summary after it, so a page can redraw weights without a second request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from rollwise.api.auth import requires
from rollwise.api.schemas import EventOut, RolloutSummary
from rollwise.control.principal import Principal, Role
from rollwise.core.protocols import Store

router = APIRouter(prefix="/api/v1", tags=["events"])
KEEPALIVE_S = 15.0


class _Cursor:
    """What a stream has already sent: each rollout's revision and last event seq."""

    def __init__(self, store: Store, only: str | None) -> None:
        self.store = store
        self.only = only
        self.revisions: dict[str, int] = {}
        self.seqs: dict[str, int] = {}

    def prime(self) -> None:
        for record in self._records():
            self.revisions[record.name] = record.revision
            events = self.store.events(record.name)
            self.seqs[record.name] = events[-1].seq if events else 0

    def poll(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        for record in self._records():
            if self.revisions.get(record.name) == record.revision:
                continue
            self.revisions[record.name] = record.revision
            events = self.store.events(record.name, self.seqs.get(record.name, 0))
            if events:
                self.seqs[record.name] = events[-1].seq
            summary = RolloutSummary.of(record).model_dump()
            for event in events:
                messages.append({"event": EventOut.of(event).model_dump(), "rollout": summary})
            if not events:  # a save without events still moved something worth redrawing
                messages.append({"event": None, "rollout": summary})
        return messages

    def _records(self) -> list[Any]:
        records = self.store.list()
        return [r for r in records if self.only is None or r.name == self.only]


def _sse(kind: str, data: Any, event_id: str | None = None) -> str:
    lines = [f"event: {kind}"]
    if event_id:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, separators=(",", ":"), default=str))
    return "\n".join(lines) + "\n\n"


@router.get(
    "/events/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                     "description": "`event: rollout` messages: {event, rollout} as JSON"},
               401: {"description": "No or unknown token"}},
)
async def event_stream(
    request: Request,
    rollout: Annotated[str | None, Query(max_length=255, description="Only this rollout's events.")] = None,
    max_seconds: Annotated[float | None, Query(gt=0, le=86400, description="End the stream after this long.")] = None,
    _who: Principal = Depends(requires(Role.viewer)),
) -> StreamingResponse:
    """Live events. Browsers pass the token as ``?access_token=`` (EventSource cannot set headers)."""
    store: Store = request.app.state.plane.store
    poll_s: float = request.app.state.stream_poll_s
    stopping: asyncio.Event = request.app.state.stopping
    cursor = _Cursor(store, rollout)
    await run_in_threadpool(cursor.prime)

    async def messages() -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        started = last_sent = loop.time()
        yield _sse("hello", {"poll_s": poll_s})
        while not stopping.is_set():
            if max_seconds is not None and loop.time() - started >= max_seconds:
                break
            if await request.is_disconnected():
                break
            for message in await run_in_threadpool(cursor.poll):
                event = message["event"]
                yield _sse("rollout", message, f"{event['rollout']}:{event['seq']}" if event else None)
                last_sent = loop.time()
            if loop.time() - last_sent >= KEEPALIVE_S:
                yield ": keepalive\n\n"
                last_sent = loop.time()
            try:
                await asyncio.wait_for(stopping.wait(), timeout=poll_s)
            except TimeoutError:
                pass

    return StreamingResponse(messages(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
