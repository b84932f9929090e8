"""The HTTP server span of each request, joined to the caller's trace (W3C ``traceparent``).

Installed by :func:`engramdb.server.create_app` only when telemetry is on
(:mod:`engramdb.telemetry`), outermost, so refused requests (401, 413, 429)
are traced too. The span is named ``<METHOD> <route template>`` and carries
the route, the path (ids only: text travels in bodies, and the query string is
never recorded), the status code and the authenticated principal. The engine
spans of the call (``engram.recall``, ``engram.commit``...) are its children,
so an agent framework that sends ``traceparent`` sees EngramDB inside its own
trace.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engramdb import telemetry
from engramdb.server.door import SESSION_SCOPE
from engramdb.server.routing import RouteTable

__all__ = ["TraceRequests"]


class TraceRequests:
    """ASGI middleware: one server span per HTTP request (see the module)."""

    def __init__(self, app: ASGIApp, *, routes: Callable[[], RouteTable]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tel = telemetry.active()
        if scope["type"] != "http" or tel is None:
            await self.app(scope, receive, send)
            return
        headers = {name.decode("latin-1"): value.decode("latin-1")
                   for name, value in scope.get("headers", ())}
        route = self.routes().template(scope["path"]) or "unmatched"
        with tel.server_span(scope["method"], route, scope["path"], headers) as span:
            status = [500]

            async def send_and_watch(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status[0] = int(message["status"])
                await send(message)

            try:
                await self.app(scope, receive, send_and_watch)
            finally:
                span.set("http.response.status_code", status[0])
                if status[0] >= 500:
                    span.set("error.type", str(status[0]))
                session: Any = scope.get(SESSION_SCOPE)
                principal = getattr(getattr(session, "principal", None), "name", None)
                if isinstance(principal, str):
                    span.set("engram.principal", principal)
