"""The MCP door as a column of the test matrix: a principal's calls through real MCP tools.

``McpDoor(engine, name)`` is a :class:`engramdb.api.MemoryAPI` for one
principal whose every call is a tool call by the real ``mcp.Client`` against
the real MCP server (``build_server``, bound to a key of that principal and
re-authenticating it per call), connected in-process through the SDK's memory
streams. Arguments go out as the JSON a model would send; the tool's JSON
answer comes back as the engine's values through the HTTP client's decoders
(``client/_wire.py``), and a tool error as the same ``EngramError`` class, so
a conformance test body runs unchanged on this door.

MCP has no admin tools: ``door.admin`` (creating agents, granting) is the
engine's, as setup. A call MCP does not offer (see ``api.CALLS``) raises
``AttributeError``; tests that need one carry ``@pytest.mark.uses(...)``, and
the matrix leaves them out of the MCP column (tests/conftest.py).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from engramdb import api
from engramdb.client import _calls, _layers
from engramdb.client._wire import basis_to_wire, encode
from engramdb.errors import InvalidInput, error_from_wire
from tests.support.mcp_client import McpSession, text_of

__all__ = ["MCP_CALLS", "McpDoor", "offered"]

BY_NAME = {c.name: c for c in api.CALLS}


def _decoders() -> dict[str, Callable[[Any], Any]]:
    """The HTTP client's decoder of each call's answer (MCP answers the same JSON)."""
    x = "x"
    calls = {
        "remember": _calls.remember(x, {}), "get": _calls.get(x, None, None),
        "update": _calls.update(x, {}), "retract": _calls.retract(x, {}),
        "history": _calls.history(x, None), "recall": _calls.recall(x, {}),
        "namespaces": _calls.namespaces(x), "context": _calls.context(x, {}),
        "decide": _calls.decide(x, [], {}), "explain": _calls.explain(x),
        "conflicts": _calls.conflicts(x, None, 1), "resolve": _calls.resolve(x, None, None),
        "forget": _calls.forget({}, x),
        "pin": _layers.pin(x, x, {}), "unpin": _layers.unpin(x, {}),
        "blocks": _layers.blocks({}), "episode": _layers.episode(x, x, x, {}),
        "episodes": _layers.episodes({}), "summarize": _layers.summarize(x, {}),
        "extract": _layers.extract(x, {}), "tool_outcome": _layers.tool_outcome(x, True, {}),
        "tool_outcomes": _layers.tool_outcomes([]), "tool_stats": _layers.tool_stats({}),
        "procedure": _layers.procedure(x, x, {}),
        "procedure_outcome": _layers.procedure_outcome(x, 1, True, {}),
        "procedures": _layers.procedures(x), "recommend": _layers.recommend(x, 1, x),
    }
    return {name: call.decode for name, call in calls.items()}


DECODE = _decoders()
# The calls this door runs: a tool exists and its answer decodes to the declared value
# (my_grants' tool answers a short form of each grant, without granted_by and tx_to).
MCP_CALLS = frozenset(name for name, c in BY_NAME.items() if c.tool and name in DECODE)


def offered(name: str) -> bool:
    """Whether this door offers a call (``"recall"``) or a call's parameter
    (``"context.tokenizer"``)."""
    call, _, param = name.partition(".")
    return call in MCP_CALLS and param not in BY_NAME[call].not_in_tool


class McpDoor:
    """One principal's session over MCP (see the module docstring)."""

    def __init__(self, engine: Any, name: str) -> None:
        self._engine = engine
        self._key = engine.admin.create_key(name)
        from engramdb.mcp import build_server

        session = engine.session_for_key(self._key)
        self.principal = session.principal
        server = build_server(engine, session, api_key=self._key)
        self._mcp = McpSession(lambda: server, timeout=120)
        self._agents: dict[str, McpDoor] = {}

    @property
    def admin(self) -> Any:
        return self._engine.admin  # setup: MCP has no admin tools

    def as_agent(self, name: str) -> McpDoor:
        if name not in self._agents:
            self._agents[name] = McpDoor(self._engine, name)
        return self._agents[name]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or not offered(name):
            raise AttributeError(f"the MCP door offers no tool for {name!r} (api.CALLS): "
                                 f"mark the test @pytest.mark.uses({name!r})")
        call = BY_NAME[name]
        signature = inspect.signature(getattr(api.MemoryAPI, name))
        wire = dict(call.wire)

        def run(*args: Any, **kwargs: Any) -> Any:
            given: dict[str, Any] = {}
            for param, value in signature.bind(None, *args, **kwargs).arguments.items():
                kind = signature.parameters[param].kind
                if kind is inspect.Parameter.VAR_KEYWORD:
                    given.update(value)
                elif param != "self":
                    given[param] = value
            left_out = sorted(set(given) & set(call.not_in_tool))
            if left_out:
                raise AttributeError(f"the MCP tool {call.tool} does not take {left_out}: mark "
                                     f"the test @pytest.mark.uses('{name}.{left_out[0]}')")
            arguments = {wire.get(k, k): basis_to_wire(v) if k == "basis" else encode(v)
                         for k, v in given.items()}
            tool = str(call.tool)
            result = self._mcp.run(lambda client: client.call_tool(tool, arguments))
            if result.is_error:
                error = (result.structured_content or {}).get("error")
                if isinstance(error, dict):
                    raise error_from_wire(error)
                raise InvalidInput(text_of(result))  # the SDK refused the arguments
            return DECODE[name](result.structured_content)
        return run

    def close(self) -> None:
        for door in self._agents.values():
            door.close()
        self._agents.clear()
        self._mcp.close()


class McpCell(McpDoor):
    """The matrix's ``db`` on the MCP door: the built-in admin's session; closes the engine."""

    def __init__(self, engine: Any) -> None:
        super().__init__(engine, engine.principal.name)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._engine.close()
