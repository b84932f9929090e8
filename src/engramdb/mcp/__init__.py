"""The MCP door: EngramDB as tools and resources for agent runtimes.

``engram mcp`` (or ``python -m engramdb.mcp``) serves the Model Context
Protocol over stdio or streamable HTTP, bound to the principal whose API key
it was started with. Each tool is one call on that principal's engine
:class:`~engramdb.engine.session.Session`: the engine checks permissions and
raises typed errors, which reach the model as MCP tool errors that start with
the stable error code. See ``docs/mcp.md`` for every tool and resource.

::

    from engramdb.mcp import build_server, run
    run("engram.db", api_key)                                  # stdio
    run("engram.db", api_key, transport="http", port=8421)     # http://127.0.0.1:8421/mcp
    run("engram.db", None, transport="http", port=8421)        # every principal, by its key

Needs the extra: ``pip install 'engramdb[mcp]'``.
"""

from __future__ import annotations

try:
    import mcp.server.mcpserver  # noqa: F401  (the official SDK, 2.x)
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    from engramdb.errors import MissingExtra

    raise MissingExtra(
        "the MCP server needs the official MCP SDK 2.x: pip install 'engramdb[mcp]'"
    ) from exc

from engramdb.mcp._run import TRANSPORTS, run
from engramdb.mcp._server import (
    NAMESPACE_TEMPLATE,
    NAMESPACES_URI,
    EngramMCP,
    build_server,
    build_shared_server,
)

__all__ = ["NAMESPACES_URI", "NAMESPACE_TEMPLATE", "TRANSPORTS", "EngramMCP", "build_server",
           "build_shared_server", "run"]
