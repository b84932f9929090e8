"""The memory-layer calls of the remote clients: blocks, episodes, tools, procedures.

Requests are built once here (:func:`pin` ... :func:`recommend`) and run by
:class:`LayerCalls` (the base of :class:`~engramdb.client.Client`) and
:class:`AsyncLayerCalls` (the base of :class:`~engramdb.client.AsyncClient`),
whose methods have exactly the parameters of the embedded ``Session``'s.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from engramdb.client._calls import Call, _compact, _memories
from engramdb.client._wire import memory_from_wire
from engramdb.errors import InvalidInput
from engramdb.model import Memory
from engramdb.model_layers import ProcedureInfo, Recommendation, ToolStats

__all__ = ["AsyncLayerCalls", "LayerCalls"]

T = TypeVar("T")


def _done(_: Any) -> None:
    return None


def pin(name: str, text: str, values: Mapping[str, Any]) -> Call[Memory]:
    return Call("POST", "/v1/blocks", memory_from_wire,
                json={"name": name, "text": text, **_compact(values)})


def unpin(name: str, values: Mapping[str, Any]) -> Call[Memory]:
    return Call("POST", "/v1/blocks/unpin", memory_from_wire,
                json={"name": name, **_compact(values)})


def blocks(values: Mapping[str, Any]) -> Call[list[Memory]]:
    return Call("GET", "/v1/blocks", _memories("memories"), params=_compact(values))


def episode(session: str, role: str, content: str, values: Mapping[str, Any]
            ) -> Call[Memory]:
    return Call("POST", "/v1/episodes", memory_from_wire,
                json={"session": session, "role": role, "content": content,
                      **_compact(values)})


def episodes(values: Mapping[str, Any]) -> Call[list[Memory]]:
    return Call("GET", "/v1/episodes", _memories("memories"), params=_compact(values))


def summarize(session: str, values: Mapping[str, Any]) -> Call[Memory]:
    return Call("POST", "/v1/summaries", memory_from_wire,
                json={"session": session, **_compact(values)})


def extract(session: str, values: Mapping[str, Any]) -> Call[list[Memory]]:
    return Call("POST", "/v1/extractions", _memories("memories"),
                json={"session": session, **_compact(values)})


def tool_outcome(tool: str, ok: bool, values: Mapping[str, Any]) -> Call[None]:
    return Call("POST", "/v1/tool-outcomes", _done,
                json={"tool": tool, "ok": ok, **_compact(values)})


def tool_outcomes(outcomes: Sequence[Mapping[str, Any]]) -> Call[int]:
    if not isinstance(outcomes, (list, tuple)):
        raise InvalidInput("tool_outcomes takes a list of outcomes (dicts of tool_outcome's "
                           "arguments)", field="outcomes")
    return Call("POST", "/v1/tool-outcomes/batch", lambda b: int(b["recorded"]),
                json={"outcomes": [dict(o) if isinstance(o, Mapping) else o
                                   for o in outcomes]})


def tool_stats(values: Mapping[str, Any]) -> Call[list[ToolStats]]:
    return Call("GET", "/v1/tool-stats", lambda b: [ToolStats.from_dict(t) for t in b["tools"]],
                params=_compact(values))


def procedure(name: str, text: str, values: Mapping[str, Any]) -> Call[Memory]:
    return Call("POST", "/v1/procedures", memory_from_wire,
                json={"name": name, "text": text, **_compact(values)})


def procedure_outcome(name: str, version: int, ok: bool, values: Mapping[str, Any]
                      ) -> Call[None]:
    return Call("POST", "/v1/procedure-outcomes", _done,
                json={"name": name, "version": version, "ok": ok, **_compact(values)})


def procedures(namespace: str) -> Call[list[ProcedureInfo]]:
    return Call("GET", "/v1/procedures",
                lambda b: [ProcedureInfo.from_dict(p) for p in b["procedures"]],
                params={"namespace": namespace})


def recommend(task: str, k: int, namespace: str) -> Call[list[Recommendation]]:
    return Call("POST", "/v1/recommendations",
                lambda b: [Recommendation.from_dict(r) for r in b["recommendations"]],
                json={"task": task, "k": k, "namespace": namespace})


class LayerCalls:
    """The layer methods of the blocking client (see ``Session`` for each one's contract)."""

    def _run(self, call: Call[T]) -> T:
        raise NotImplementedError

    def pin(self, name: str, text: str, *, session: str | None = None,
            namespace: str | None = None, limit_tokens: int | None = None,
            expected_version: int | None = None) -> Memory:
        """Create or update a working block; see ``Session.pin``."""
        return self._run(pin(name, text, {
            "session": session, "namespace": namespace, "limit_tokens": limit_tokens,
            "expected_version": expected_version}))

    def unpin(self, name: str, *, session: str | None = None, namespace: str | None = None,
              expected_version: int | None = None) -> Memory:
        """Remove a working block; see ``Session.unpin``."""
        return self._run(unpin(name, {"session": session, "namespace": namespace,
                                      "expected_version": expected_version}))

    def blocks(self, session: str | None = None, *, namespace: str | None = None
               ) -> list[Memory]:
        """The working blocks in force; see ``Session.blocks``."""
        return self._run(blocks({"session": session, "namespace": namespace}))

    def episode(self, session: str, role: str, content: str, *,
                at: datetime | str | None = None, metadata: Mapping[str, Any] | None = None,
                namespace: str | None = None) -> Memory:
        """Append an episode; see ``Session.episode``."""
        return self._run(episode(session, role, content, {
            "at": at, "metadata": metadata, "namespace": namespace}))

    def episodes(self, session: str | None = None, *, agent: str | None = None,
                 since: datetime | str | None = None, until: datetime | str | None = None,
                 limit: int = 100, namespace: str = "**") -> list[Memory]:
        """Episodes in order; see ``Session.episodes``."""
        return self._run(episodes({"session": session, "agent": agent, "since": since,
                                   "until": until, "limit": limit, "namespace": namespace}))

    def summarize(self, session: str, *, namespace: str | None = None,
                  method: str = "auto") -> Memory:
        """Summarise a session; see ``Session.summarize``."""
        return self._run(summarize(session, {"namespace": namespace, "method": method}))

    def extract(self, session: str, *, namespace: str | None = None) -> list[Memory]:
        """Extract assertions from a session (LLM); see ``Session.extract``."""
        return self._run(extract(session, {"namespace": namespace}))

    def tool_outcome(self, tool: str, ok: bool, *, latency_ms: float | None = None,
                     error: str | None = None, metadata: Mapping[str, Any] | None = None,
                     namespace: str | None = None, durable: bool = False) -> None:
        """Record a tool outcome; see ``Session.tool_outcome``."""
        self._run(tool_outcome(tool, ok, {"latency_ms": latency_ms, "error": error,
                                          "metadata": metadata, "namespace": namespace,
                                          "durable": durable}))

    def tool_outcomes(self, outcomes: Sequence[Mapping[str, Any]]) -> int:
        """Record many tool outcomes at once; see ``Session.tool_outcomes``."""
        return self._run(tool_outcomes(outcomes))

    def tool_stats(self, tool: str | None = None, *, since: datetime | str | None = None,
                   agent: str | None = None, namespace: str = "**") -> list[ToolStats]:
        """Tool reliability; see ``Session.tool_stats``."""
        return self._run(tool_stats({"tool": tool, "since": since, "agent": agent,
                                     "namespace": namespace}))

    def procedure(self, name: str, text: str, *, namespace: str | None = None,
                  expected_version: int | None = None) -> Memory:
        """Write a procedure version; see ``Session.procedure``."""
        return self._run(procedure(name, text, {"namespace": namespace,
                                                "expected_version": expected_version}))

    def procedure_outcome(self, name: str, version: int, ok: bool, *,
                          namespace: str | None = None, durable: bool = False) -> None:
        """Record a procedure outcome; see ``Session.procedure_outcome``."""
        self._run(procedure_outcome(name, version, ok,
                                    {"namespace": namespace, "durable": durable}))

    def procedures(self, namespace: str = "**") -> list[ProcedureInfo]:
        """Procedures with per-version stats; see ``Session.procedures``."""
        return self._run(procedures(namespace))

    def recommend(self, task: str, k: int = 5, *, namespace: str = "**"
                  ) -> list[Recommendation]:
        """Procedures and tools likely to succeed; see ``Session.recommend``."""
        return self._run(recommend(task, k, namespace))


class AsyncLayerCalls:
    """The layer methods of the asyncio client, as coroutines."""

    def _run(self, call: Call[T]) -> Awaitable[T]:
        raise NotImplementedError

    async def pin(self, name: str, text: str, *, session: str | None = None,
                  namespace: str | None = None, limit_tokens: int | None = None,
                  expected_version: int | None = None) -> Memory:
        """Create or update a working block; see ``Session.pin``."""
        return await self._run(pin(name, text, {
            "session": session, "namespace": namespace, "limit_tokens": limit_tokens,
            "expected_version": expected_version}))

    async def unpin(self, name: str, *, session: str | None = None,
                    namespace: str | None = None,
                    expected_version: int | None = None) -> Memory:
        """Remove a working block; see ``Session.unpin``."""
        return await self._run(unpin(name, {"session": session, "namespace": namespace,
                                            "expected_version": expected_version}))

    async def blocks(self, session: str | None = None, *, namespace: str | None = None
                     ) -> list[Memory]:
        """The working blocks in force; see ``Session.blocks``."""
        return await self._run(blocks({"session": session, "namespace": namespace}))

    async def episode(self, session: str, role: str, content: str, *,
                      at: datetime | str | None = None,
                      metadata: Mapping[str, Any] | None = None,
                      namespace: str | None = None) -> Memory:
        """Append an episode; see ``Session.episode``."""
        return await self._run(episode(session, role, content, {
            "at": at, "metadata": metadata, "namespace": namespace}))

    async def episodes(self, session: str | None = None, *, agent: str | None = None,
                       since: datetime | str | None = None,
                       until: datetime | str | None = None,
                       limit: int = 100, namespace: str = "**") -> list[Memory]:
        """Episodes in order; see ``Session.episodes``."""
        return await self._run(episodes({"session": session, "agent": agent, "since": since,
                                         "until": until, "limit": limit,
                                         "namespace": namespace}))

    async def summarize(self, session: str, *, namespace: str | None = None,
                        method: str = "auto") -> Memory:
        """Summarise a session; see ``Session.summarize``."""
        return await self._run(summarize(session, {"namespace": namespace, "method": method}))

    async def extract(self, session: str, *, namespace: str | None = None) -> list[Memory]:
        """Extract assertions from a session (LLM); see ``Session.extract``."""
        return await self._run(extract(session, {"namespace": namespace}))

    async def tool_outcome(self, tool: str, ok: bool, *, latency_ms: float | None = None,
                           error: str | None = None,
                           metadata: Mapping[str, Any] | None = None,
                           namespace: str | None = None, durable: bool = False) -> None:
        """Record a tool outcome; see ``Session.tool_outcome``."""
        await self._run(tool_outcome(tool, ok, {"latency_ms": latency_ms, "error": error,
                                                "metadata": metadata, "namespace": namespace,
                                                "durable": durable}))

    async def tool_outcomes(self, outcomes: Sequence[Mapping[str, Any]]) -> int:
        """Record many tool outcomes at once; see ``Session.tool_outcomes``."""
        return await self._run(tool_outcomes(outcomes))

    async def tool_stats(self, tool: str | None = None, *,
                         since: datetime | str | None = None, agent: str | None = None,
                         namespace: str = "**") -> list[ToolStats]:
        """Tool reliability; see ``Session.tool_stats``."""
        return await self._run(tool_stats({"tool": tool, "since": since, "agent": agent,
                                           "namespace": namespace}))

    async def procedure(self, name: str, text: str, *, namespace: str | None = None,
                        expected_version: int | None = None) -> Memory:
        """Write a procedure version; see ``Session.procedure``."""
        return await self._run(procedure(name, text, {"namespace": namespace,
                                                      "expected_version": expected_version}))

    async def procedure_outcome(self, name: str, version: int, ok: bool, *,
                                namespace: str | None = None, durable: bool = False) -> None:
        """Record a procedure outcome; see ``Session.procedure_outcome``."""
        await self._run(procedure_outcome(name, version, ok,
                                          {"namespace": namespace, "durable": durable}))

    async def procedures(self, namespace: str = "**") -> list[ProcedureInfo]:
        """Procedures with per-version stats; see ``Session.procedures``."""
        return await self._run(procedures(namespace))

    async def recommend(self, task: str, k: int = 5, *, namespace: str = "**"
                        ) -> list[Recommendation]:
        """Procedures and tools likely to succeed; see ``Session.recommend``."""
        return await self._run(recommend(task, k, namespace))
