"""``/v1/changes``: the change feed, paged as JSON or streamed as Server-Sent Events.

Both read ``Session.changes`` (the log events the caller may read, after a
cursor ``since``). The stream sends each event with ``id: <seq>``, so a client
that reconnects with ``Last-Event-ID`` resumes exactly after the last event it
saw. When events the caller may not read are skipped, the cursor still moves
past them (an ``id``-only SSE message, or ``next`` in a page), so a resumed
read does not scan them again.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from itertools import islice
from typing import Annotated, Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from engramdb.engine import Database, Session
from engramdb.errors import EngramError, InvalidInput
from engramdb.server.deps import DbDep, SessionDep, SettingsDep, current_key
from engramdb.server.errors import error_responses
from engramdb.server.schemas import GLOB, MAX_INT, EventPage
from engramdb.server.settings import ServerSettings

__all__ = ["page", "router"]

router = APIRouter(prefix="/v1", tags=["changes"])

Since = Annotated[int, Query(ge=0, le=MAX_INT,
                             description="Cursor: return events with a seq after this one.")]
Namespace = Annotated[str, Query(description="Namespace glob to follow; events the caller "
                                 "may not read are left out.", json_schema_extra=GLOB)]


def page(session: Session, db: Database, since: int, namespace: str,
         limit: int) -> tuple[list[dict[str, Any]], int, bool]:
    """Up to ``limit`` readable events after ``since``, the next cursor, and whether full."""
    head = db.head().seq
    events = list(islice(session.changes(since, namespace=namespace, limit=limit), limit))
    full = len(events) == limit
    cursor = events[-1].seq if events else since
    if not full:
        # The feed was read to its end, which is at or past ``head``: nothing readable
        # remains up to there, so the next read may start after it.
        cursor = max(cursor, head)
    return [e.to_dict() for e in events], cursor, full


def _limit(limit: int | None, settings: ServerSettings) -> int:
    if limit is None:
        return settings.default_page_size
    if limit > settings.max_page_size:
        raise InvalidInput(f"limit {limit} is over the server's page size of "
                           f"{settings.max_page_size}; page with 'next'",
                           field="limit", max=settings.max_page_size)
    return limit


@router.get("/changes", response_model=EventPage, summary="Read the change feed (paged)",
            responses=error_responses(400, 401, 429, 503))
def changes(session: SessionDep, db: DbDep, settings: SettingsDep, since: Since = 0,
            namespace: Namespace = "**",
            limit: Annotated[int | None, Query(ge=1, le=MAX_INT, description=(
                "Page size; at most the server's max_page_size (1000 by default, "
                "see /v1/info)."))] = None) -> dict[str, Any]:
    """Log events after ``since`` that the caller may read, oldest first.

    Pass ``next`` back as ``since`` for the following page.
    """
    events, cursor, full = page(session, db, since, namespace, _limit(limit, settings))
    return {"events": events, "next": cursor, "more": full}


_SSE_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A `text/event-stream`: each event has `id: <seq>` and `data:` one "
                       "change as JSON (the `EventOut` shape); `: keepalive` comments while "
                       "idle; `event: error` with an error body before the server ends the "
                       "stream because the key stopped working.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
}


@router.get("/changes/stream", response_class=StreamingResponse,
            summary="Follow the change feed (Server-Sent Events)",
            responses={**_SSE_DOC, **error_responses(400, 401, 429, 503)})
async def stream(request: Request, session: SessionDep, db: DbDep, settings: SettingsDep,
                 since: Since = 0, namespace: Namespace = "**",
                 last_event_id: Annotated[str | None, Header(
                     alias="Last-Event-ID",
                     description="Resume after this event seq (sent by SSE clients on "
                     "reconnect); overrides `since`.")] = None) -> StreamingResponse:
    """Stream readable log events after the cursor as they are written.

    The stream ends after the server's ``sse_max_s``; reconnecting with
    ``Last-Event-ID`` loses nothing.
    """
    cursor = since
    if last_event_id is not None and last_event_id.strip():
        try:
            cursor = int(last_event_id.strip())
        except ValueError:
            cursor = -1
        if not 0 <= cursor <= MAX_INT:
            raise InvalidInput("Last-Event-ID must be an event seq (a non-negative integer)",
                               field="Last-Event-ID")
    size = settings.default_page_size
    # The first page is read before the response starts, so a bad namespace glob or
    # a storage failure is an ordinary JSON error rather than a broken stream.
    first = await anyio.to_thread.run_sync(page, session, db, cursor, namespace, size)
    key = current_key(request)
    return StreamingResponse(
        _events(db, settings, key, namespace, size, first, cursor),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _sse(event: dict[str, Any]) -> bytes:
    return f"id: {event['seq']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n".encode()


async def _events(db: Database, settings: ServerSettings, key: str, namespace: str, size: int,
                  first: tuple[list[dict[str, Any]], int, bool],
                  cursor: int) -> AsyncIterator[bytes]:
    yield b"retry: 2000\n\n"
    started = last_write = time.monotonic()
    events, new_cursor, full = first
    while True:
        for event in events:
            yield _sse(event)
        if new_cursor != cursor and not events:
            yield f"id: {new_cursor}\n\n".encode()
        if events or new_cursor != cursor:
            last_write = time.monotonic()
        cursor = new_cursor
        if not full:
            now = time.monotonic()
            if settings.sse_max_s is not None and now - started >= settings.sse_max_s:
                return
            if now - last_write >= settings.sse_keepalive_s:
                yield b": keepalive\n\n"
                last_write = now
            # Wakes at once on a new event (LISTEN/NOTIFY on PostgreSQL), else polls.
            await anyio.to_thread.run_sync(db.wait_for_events, cursor, settings.sse_poll_s)
        try:
            # The key is checked on every poll: a revoked key ends the stream at once.
            session = await anyio.to_thread.run_sync(db.session_for_key, key)
            events, new_cursor, full = await anyio.to_thread.run_sync(
                page, session, db, cursor, namespace, size)
        except EngramError as exc:
            yield f"event: error\ndata: {json.dumps({'error': exc.to_wire()})}\n\n".encode()
            return
