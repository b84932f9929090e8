"""Running the MCP server: open the database, bind the key, serve a transport.

Two transports: ``stdio`` (the agent runtime launches ``engram mcp`` as a
subprocess and talks over its stdin/stdout) and ``http`` (MCP streamable
HTTP at ``http://HOST:PORT/mcp``). Over HTTP every request must also carry
``Authorization: Bearer <key>``: a port is reachable by other local users and
processes, and a server must not lend a principal to whoever connects.
Anything else is answered 401 with the error tree's JSON body, before the MCP
layer.

Started with a key, the server is bound to that key's principal (a key of
anyone else is refused). Over HTTP without a key, one server serves every
principal: each request acts as the owner of the key it carries, so a crew
of agents shares one process (and one copy of the embedding model) instead
of one server each.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio.to_thread

from engramdb.errors import EngramError, InvalidInput, Unauthenticated
from engramdb.mcp._server import REQUEST_KEY

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from engramdb.engine.database import Database

__all__ = ["TRANSPORTS", "BearerGuard", "run"]

TRANSPORTS = ("stdio", "http")
MCP_PATH = "/mcp"


def run(
    db_target: str | Path,
    api_key: str | None,
    *,
    transport: Literal["stdio", "http"] = "stdio",
    host: str = "127.0.0.1",
    port: int = 8421,
    embedder: Any = "default",
    combine: bool = False,
) -> None:
    """Serve EngramDB over MCP as the principal ``api_key`` belongs to, until stopped.

    The key is checked before anything is served: a missing, malformed,
    unknown or revoked key raises :class:`~engramdb.errors.Unauthenticated`
    and no server starts.

    Args:
        db_target: SQLite path or ``postgresql://`` URL.
        api_key: the principal's API key (``ek_<id>_<secret>``).
        transport: ``stdio`` (default) or ``http`` (streamable HTTP at ``/mcp``).
        host: interface to listen on (``http`` only).
        port: TCP port (``http`` only).
        embedder: as in :func:`engramdb.open`; the default uses the
            database's recorded embedder.
        combine: PostgreSQL only: send single writes through the write combiner
            (``engramdb.open(url, combine=True)``), so the MCP servers of a crew's
            agents on one host share one call per batch of writes.

    Raises:
        Unauthenticated: no key, or a key that does not authenticate.
        InvalidInput: unknown transport, or ``combine`` with a SQLite database.
        NotFound: there is no database at ``db_target`` (it is never created here).
        EngramError: the database cannot be opened.
    """
    from engramdb.engine.database import open_database
    from engramdb.mcp._server import build_server

    if transport not in TRANSPORTS:
        raise InvalidInput(f"unknown transport {transport!r}; use one of: {', '.join(TRANSPORTS)}",
                           transport=str(transport))
    if not api_key and transport == "stdio":
        raise Unauthenticated(
            "engram mcp over stdio needs the API key of the principal it acts for: pass "
            "--api-key or set ENGRAM_API_KEY (an admin creates one with `engram agent create "
            "NAME`); over --transport http, a server without a key serves every principal"
        )
    # stdout is the protocol channel under stdio: keep library chatter (model loading) off it.
    with contextlib.redirect_stdout(sys.stderr):
        db = open_database(db_target, embedder=embedder, create=False, combine=combine)
    try:
        if not api_key:
            _serve_http_shared(db, host, port)
            return
        session = db.session_for_key(api_key)
        server = build_server(db, session, api_key=api_key)
        if transport == "stdio":
            server.run("stdio")
        else:
            _serve_http(db, server, session.principal.name, host, port)
    finally:
        db.close()


def _serve_http_shared(db: Database, host: str, port: int) -> None:
    import uvicorn

    from engramdb.mcp._server import build_shared_server

    server = build_shared_server(db)
    # Stateless: each request runs its handlers in its own context, where the guard has put
    # its key; no MCP session outlives the request that authenticated it.
    app = BearerGuard(server.streamable_http_app(streamable_http_path=MCP_PATH, host=host,
                                                 stateless_http=True), db, None)
    print(f"engram mcp: serving every principal (each request acts as its key's owner) on "
          f"http://{host}:{port}{MCP_PATH}", file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", lifespan="on")


def _serve_http(db: Database, server: Any, principal: str, host: str, port: int) -> None:
    import uvicorn

    app = BearerGuard(server.streamable_http_app(streamable_http_path=MCP_PATH, host=host),
                      db, principal)
    print(f"engram mcp: acting as {principal!r} on http://{host}:{port}{MCP_PATH}",
          file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", lifespan="on")


class BearerGuard:
    """ASGI wrapper: HTTP requests need a bearer key (of the bound principal, if any).

    The key is authenticated on every request (revocation takes effect at
    once); failures answer 401 with ``{"error": {code, message, details}}``.
    """

    def __init__(self, app: ASGIApp, db: Database, principal: str | None) -> None:
        self.app = app
        self.db = db
        self.principal = principal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, key = auth.partition(" ")
        try:
            if scheme.lower() != "bearer" or not key.strip():
                raise Unauthenticated("send the API key as 'Authorization: Bearer <key>'")
            name = await anyio.to_thread.run_sync(self.db.admin.authenticate, key.strip())
            if self.principal is not None and name != self.principal:
                raise Unauthenticated(
                    f"this MCP server acts for {self.principal!r}; use a key of that principal "
                    "or start another server with your key"
                )
        except EngramError as exc:
            await _send_json(send, 401, {"error": exc.to_wire()})
            return
        token = REQUEST_KEY.set(key.strip())
        try:
            await self.app(scope, receive, send)
        finally:
            REQUEST_KEY.reset(token)


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
        (b"www-authenticate", b"Bearer")]})
    await send({"type": "http.response.body", "body": data})
