"""How an MCP tool is derived from a declared call, and the arguments tools share.

A tool's input schema is the call's declared keywords (:mod:`engramdb.api`,
through :mod:`engramdb.api_schema`): their names (``memory_id`` is ``id`` on
the wire), defaults and, unless a :class:`ToolSpec` overrides one, their wire
types from :data:`TYPES`. A spec adds what the model reads: the tool's
description, a description per argument, the tool's hints and how its result
is shaped. A keyword added to ``api.py`` becomes a tool argument with no edit
here; an override of a keyword the call does not declare fails at start-up.

Argument types are deliberately wide where the engine has a stronger rule
(``layer`` is a string whose schema lists the allowed values): the engine's
own error, with its stable code and a message that says what to do, is what
the model sees, the same as through every other door. An argument left out
(or ``null``) is not sent, so the engine's default applies; ``keep_none``
names the few where ``null`` is a value.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from mcp.types import CallToolResult, ToolAnnotations
from pydantic import Field, StrictBool

from engramdb import api
from engramdb.api_schema import Declared, call_with, tool_signature, wire_fields
from engramdb.mcp._wire import tool_result
from engramdb.model import LAYERS, MemoryDraft

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

__all__ = ["ERASE", "READ", "TYPES", "WRITE", "ToolSpec", "register"]

Result = Annotated[CallToolResult, dict[str, Any]]

READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)
WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False,
                        open_world_hint=False)
ERASE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False,
                        open_world_hint=False)

# The wire type of each declared annotation: JSON's (times are ISO-8601 strings).
TYPES: dict[Any, Any] = {
    str: str, str | None: str | None, int: int, int | None: int | None,
    # Strict: the SDK's validation would read "yes" or "no" as a boolean.
    float: float, float | None: float | None, bool: StrictBool, Any: Any,
    api.When: str | None, api.AsOf: int | str | None,
    Mapping[str, Any]: dict[str, Any], Mapping[str, Any] | None: dict[str, Any] | None,
    Mapping[str, int] | None: dict[str, int] | None,
    Sequence[str]: list[str], Sequence[str] | None: list[str] | None,
    Sequence[float] | None: list[float] | None,
    Sequence[Mapping[str, Any]]: list[dict[str, Any]],
    Sequence[MemoryDraft | Mapping[str, Any]]: list[dict[str, Any]],
}


def _identity(value: Any) -> Any:
    return value


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """What an MCP tool adds to its declared call.

    Attributes:
        call: the method of :class:`engramdb.api.MemoryAPI` (its ``api.CALLS`` row
            names the tool, the wire names and what the tool leaves out).
        hints: the tool's annotations (:data:`READ`, :data:`WRITE`, :data:`ERASE`).
        doc: the tool's description, written for a model choosing a tool.
        args: per declared keyword, ``Annotated[type, Field(description=...)]``.
        shape: turns the call's value into the tool's JSON result.
        keep_none: keywords whose ``null`` is passed on as a value.
    """

    call: str
    hints: ToolAnnotations
    doc: str
    args: Mapping[str, Any] = field(default_factory=dict)
    shape: Callable[[Any], Any] = _identity
    keep_none: tuple[str, ...] = ()


def _describe(call: str, d: Declared) -> str:
    # A keyword no spec describes yet still says what it is.
    return f"The `{d.name}` argument of {call}; omit it for the default."


def register(server: MCPServer, acting: Callable[[], Any], specs: Sequence[ToolSpec], *,
             declaration: type = api.MemoryAPI, calls: Sequence[api.Call] = api.CALLS
             ) -> list[str]:
    """Add a tool per spec to ``server``, each acting as ``acting()``; their names.

    Raises:
        SchemaDrift: a spec's argument disagrees with ``declaration``.
    """
    by_name = {c.name: c for c in calls}
    names: list[str] = []
    for spec in specs:
        call = by_name[spec.call]
        if call.tool is None:
            raise ValueError(f"api.CALLS says MCP does not offer {spec.call}")
        fields = wire_fields(spec.call, getattr(declaration, spec.call), types=TYPES,
                             overrides=spec.args, wire=dict(call.wire),
                             exclude=call.not_in_tool, describe=_describe)
        fn = _tool_function(spec, fields, acting)
        fn.__name__ = fn.__qualname__ = call.tool
        fn.__signature__ = tool_signature(fields, Result)  # type: ignore[attr-defined]
        server.add_tool(fn, description=inspect.cleandoc(spec.doc), annotations=spec.hints,
                        structured_output=True)
        names.append(call.tool)
    return names


def _tool_function(spec: ToolSpec, fields: Any, acting: Callable[[], Any]
                   ) -> Callable[..., CallToolResult]:
    keep = set(spec.keep_none)

    def run(**received: Any) -> CallToolResult:
        given = {k: v for k, v in received.items() if v is not None or k in keep}
        return tool_result(lambda: spec.shape(call_with(acting(), spec.call, fields, given)))
    return run


# -- arguments shared by several tools --------------------------------------------------------

MemoryId = Annotated[str, Field(
    description="The memory's id, exactly as returned by remember, recall, get or history "
                "(e.g. '0197a3c2-...').",
)]
ExpectedVersion = Annotated[int | None, Field(
    description="Optimistic concurrency: the version you last read. The write happens only if "
                "the memory is still at this version; otherwise it fails with version_conflict "
                "and changes nothing. Omit to write whatever the current version is.",
)]
IdempotencyKey = Annotated[str | None, Field(
    description="Any unique string for this request. Retrying with the same key returns the "
                "first result instead of writing twice; reusing it for a different request "
                "fails with idempotency_key_reused.",
)]
AsOf = Annotated[int | str | None, Field(
    description="Transaction time to read at: a transaction number (the receipt's as_of) or an "
                "ISO-8601 time such as '2026-01-31T12:00:00Z'. Shows what the database knew "
                "then. Omit for now.",
)]
ValidAt = Annotated[str | None, Field(
    description="Valid time, ISO-8601: only facts that held in the world at that moment. "
                "Omit for facts valid now or open-ended.",
)]
Time = Annotated[str | None, Field(description="An ISO-8601 time such as 2026-01-31T12:00:00Z.")]
Layer = Annotated[str, Field(
    description="Memory layer: 'working' (scratch for the current task), 'episodic' (what "
                "happened), 'semantic' (facts and beliefs; the default), 'procedural' (how to "
                "do things: playbooks, prompts).",
    json_schema_extra={"enum": list(LAYERS)},
)]
Layers = Annotated[list[str] | None, Field(
    description="Only these layers: any of 'working', 'episodic', 'semantic', "
                "'procedural'. Omit for all.",
)]
Metadata = Annotated[dict[str, Any] | None, Field(
    description="Free-form JSON object stored with the memory (tags, urls, ids). "
                "Recall can filter on its keys.",
)]
Unit = Annotated[float | None, Field(description="A number from 0 to 1.")]
NamespaceGlob = Annotated[str, Field(
    description="Namespace glob to search: 'acme/research' (that namespace), 'acme/*' (one "
                "level below), 'acme/**' (acme and everything below), '**' (everything you may "
                "read; the default). Only namespaces you have read access to are ever searched.",
)]
Session = Annotated[str | None, Field(
    description="A session id (any string you use for one conversation or task run). "
                "Omit for agent-wide.")]
Namespace = Annotated[str | None, Field(
    description="Slash path where it lives; you need the grant there. Omit for your "
                "private namespace 'agents/<your name>'.")]
Glob = Annotated[str, Field(
    description="Namespace glob, e.g. 'team/**'; '**' (default) is everything you may read.")]
CompareAndSwap = Annotated[int | None, Field(
    description="Compare-and-swap: the version you last read (0: create only). On a "
                "mismatch the call fails with version_conflict and changes nothing.")]


def described(text: str, tp: Any = None, **schema: Any) -> Any:
    """An argument override: ``tp`` (or the declared type's wire type) with a description."""
    info = Field(description=text, json_schema_extra=schema or None)
    return info if tp is None else Annotated[tp, info]


Durable = described("Wait until it is on disk. By default it returns sooner and reaches the "
                    "disk within 0.2 s (it survives a crash of the server, not of the machine).")


def memories(found: list[Any]) -> dict[str, Any]:
    return {"memories": found}


def done(_: None) -> dict[str, Any]:
    return {"ok": True}


def under(key: str) -> Callable[[Any], dict[str, Any]]:
    """A result shape: the call's value under ``key``."""
    return lambda value: {key: value}
