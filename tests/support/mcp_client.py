"""The real MCP client, driven from synchronous tests (tests/test_mcp.py, the ``mcp`` door).

``McpSession(transport)`` connects an ``mcp.Client`` to a server: a transport
factory (stdio, streamable HTTP) or an ``MCPServer`` object, connected
in-process through the SDK's memory streams.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import threading
from collections.abc import Callable
from typing import Any

from mcp import Client
from mcp.types import CallToolResult

__all__ = ["McpSession", "text_of"]


class McpSession:
    """An ``mcp.Client`` connected to a real server, driven from synchronous tests.

    The client lives in its own event loop on a background thread: it is
    entered and exited by one owner task (anyio requires it), and each call
    is a separate task on that loop.
    """

    def __init__(self, transport: Callable[[], Any], timeout: float = 180) -> None:
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._ready: concurrent.futures.Future[Client] = concurrent.futures.Future()
        self._stop = asyncio.Event()
        self._owner = asyncio.run_coroutine_threadsafe(self._own(transport), self._loop)
        self.client = self._ready.result(timeout=timeout)

    async def _own(self, transport: Callable[[], Any]) -> None:
        try:
            async with Client(transport(), read_timeout_seconds=self.timeout) as client:
                self._ready.set_result(client)
                await self._stop.wait()
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
            raise

    def run(self, make: Callable[[Client], Any]) -> Any:
        async def go() -> Any:
            return await make(self.client)
        return asyncio.run_coroutine_threadsafe(go(), self._loop).result(timeout=self.timeout)

    def call(self, tool: str, **arguments: Any) -> CallToolResult:
        return self.run(lambda c: c.call_tool(tool, arguments))

    def ok(self, tool: str, **arguments: Any) -> dict[str, Any]:
        """Call a tool that must succeed; its structured result."""
        result = self.call(tool, **arguments)
        assert not result.is_error, f"{tool} failed: {text_of(result)}"
        return result.structured_content

    def tools(self) -> dict[str, Any]:
        return {t.name: t for t in self.run(lambda c: c.list_tools()).tools}

    def resources(self) -> list[str]:
        return [str(r.uri) for r in self.run(lambda c: c.list_resources()).resources]

    def read(self, uri: str) -> Any:
        result = self.run(lambda c: c.read_resource(uri))
        return json.loads(result.contents[0].text)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        with contextlib.suppress(Exception):
            self._owner.result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


def text_of(result: CallToolResult) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)
