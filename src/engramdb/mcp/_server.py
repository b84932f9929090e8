"""The MCP server object: tools and resources bound to one principal.

:func:`build_server` turns an open database and a principal's session into an
``MCPServer`` (the high-level server of the official SDK). It adds nothing to
the engine's semantics: every tool is one Session call, every resource is a
permission-filtered engine read. When built with the principal's API key, the
key is authenticated again on every request, so revoking it (or freezing the
principal) stops a running server from acting at once.

Resources:

- ``engram://namespaces``: the namespaces the principal may read (JSON).
- ``engram://namespace/{+namespace}``: the most recent memories in one
  namespace (JSON); one concrete resource per readable namespace is listed.
  A namespace the principal may not read reads exactly like an empty one.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp.types import INTERNAL_ERROR, INVALID_PARAMS, Resource

from engramdb.errors import EngramError
from engramdb.mcp._tools import register_tools
from engramdb.mcp._wire import error_text, plain

if TYPE_CHECKING:
    from engramdb.api import MemoryAPI, Sessions

__all__ = ["NAMESPACES_URI", "NAMESPACE_TEMPLATE", "RECENT_LIMIT", "EngramMCP", "build_server"]

NAMESPACES_URI = "engram://namespaces"
NAMESPACE_TEMPLATE = "engram://namespace/{+namespace}"
RECENT_LIMIT = 20
JSON = "application/json"

INSTRUCTIONS = """\
EngramDB is your long-term memory, shared with other agents. You act as principal \
{principal!r}; everything you write is attributed to you by the database.

- `remember` stores a memory; give subject/predicate/value for facts that can change or \
be contradicted. Your private namespace is 'agents/{principal}'.
- `recall` searches what you may read and returns a receipt; `get` and `history` read one \
memory by id.
- `update` (with expected_version) and `retract` change memories; old versions stay in \
history.
- Decide from evidence: pass the receipt from `recall` or `context` to `decide`; `explain` \
shows later whether that basis went stale.
- `conflicts` lists contradictions between memories; `resolve` settles one (admin grant).

You only see namespaces you hold a grant for; a memory you may not read looks exactly like \
one that does not exist. Errors start with a stable code (not_found, permission_denied, \
version_conflict, invalid_layer, ...) followed by what to do.
"""


class EngramMCP(MCPServer):
    """An ``MCPServer`` whose resource list follows the principal's read grants.

    The SDK lists only resources registered up front; the namespaces a
    principal may read change as memories are written and grants change, so
    :meth:`list_resources` appends one resource per readable namespace at
    each request.
    """

    def __init__(self, acting: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._acting = acting
        self.tool_names: list[str] = []

    async def list_resources(self) -> list[Resource]:
        static = await super().list_resources()
        try:
            names = await _in_thread(lambda: self._acting().namespaces())
        except EngramError as exc:
            raise _resource_error(exc) from None
        return [*static, *(
            Resource(uri=f"engram://namespace/{ns}", name=ns, title=f"Memories in {ns}",
                     description=f"The {RECENT_LIMIT} most recent current memories in "
                                 f"namespace {ns!r}.",
                     mime_type=JSON)
            for ns in names
        )]


async def _in_thread(fn: Any) -> Any:
    import anyio.to_thread

    return await anyio.to_thread.run_sync(fn)


def _resource_error(exc: EngramError) -> MCPError:
    code = INVALID_PARAMS if exc.status < 500 else INTERNAL_ERROR
    return MCPError(code=code, message=error_text(exc), data=plain(exc.to_wire()))


class _Acting:
    """The bound principal's session, re-authenticated per call when a key is known."""

    def __init__(self, db: Sessions, session: MemoryAPI, api_key: str | None) -> None:
        self._db = db
        self._session = session
        self._api_key = api_key

    def __call__(self) -> MemoryAPI:
        if self._api_key is None:
            return self._session
        return self._db.session_for_key(self._api_key)


def build_server(db: Sessions, session: MemoryAPI, *, api_key: str | None = None
                 ) -> EngramMCP:
    """The MCP server for one principal: every tool and resource acts as ``session``.

    It depends only on the declared API (:mod:`engramdb.api`), so it fronts an
    embedded database or a remote server (a :class:`~engramdb.client.Client`) alike.

    Args:
        db: what the session came from: an open database or a remote client.
        session: the principal's session, usually ``db.session_for_key(key)``.
        api_key: the key the session came from; when given, it is
            authenticated again on every request (a revoked key or a frozen
            principal then fails with ``unauthenticated``).

    Returns:
        The server; run it with ``server.run("stdio")`` or serve
        ``server.streamable_http_app()`` (see :func:`engramdb.mcp.run`).
    """
    from engramdb import __version__

    acting = _Acting(db, session, api_key)
    name = session.principal.name
    server = EngramMCP(
        acting,
        name="engramdb",
        title="EngramDB memory",
        description=f"Shared, versioned, permissioned memory; acting as {name!r}.",
        instructions=INSTRUCTIONS.format(principal=name),
        version=__version__,
        log_level="WARNING",
    )
    server.tool_names = register_tools(server, acting)
    _register_resources(server, acting)
    return server


def _register_resources(server: MCPServer, acting: _Acting) -> None:
    @server.resource(NAMESPACES_URI, name="namespaces", title="Readable namespaces",
                     description="The namespaces you may read that hold memories, as JSON "
                                 "{principal, namespaces}. Read a namespace's recent memories "
                                 "at engram://namespace/<namespace>.",
                     mime_type=JSON)
    def namespaces() -> str:
        try:
            s = acting()
            return json.dumps({"principal": s.principal.name, "namespaces": s.namespaces()})
        except EngramError as exc:
            raise _resource_error(exc) from None

    @server.resource(NAMESPACE_TEMPLATE, name="namespace",
                     title="Recent memories in a namespace",
                     description=f"The {RECENT_LIMIT} most recent current memories in one "
                                 "namespace (e.g. engram://namespace/acme/research), newest "
                                 "first, as JSON {namespace, memories}. A namespace you may "
                                 "not read is empty.",
                     mime_type=JSON)
    def namespace(namespace: str) -> str:
        try:
            memories = acting().recent(namespace=namespace, k=RECENT_LIMIT)
        except EngramError as exc:
            raise _resource_error(exc) from None
        return json.dumps({"namespace": namespace, "memories": plain(memories)},
                          ensure_ascii=False)
