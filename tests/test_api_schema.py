"""Door schemas are derived from the declared API: one edit in api.py reaches HTTP and MCP.

The HTTP request bodies (server/requests.py) and the MCP tool input schemas
(mcp/_args.py) are built from a declaration. These tests build both doors from
a small declaration of their own, add a keyword to it, and check that the
keyword appears in the HTTP body and the MCP tool (through a real MCP client)
and reaches the call; and that an override that disagrees with the declaration
stops the door from being built.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol, TypedDict, Unpack

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer
from pydantic import Field

from engramdb import api
from engramdb.api_schema import SchemaDrift
from engramdb.mcp._args import WRITE, ToolSpec, register
from engramdb.server import requests

CALLS = (api.Call("note", "POST /v1/notes/{memory_id}", "NoteRequest", "note",
                  wire=(("memory_id", "id"),)),)


class Mood(TypedDict, total=False):
    mood: str
    tags: Sequence[str]


class NoteAPI(Protocol):
    def note(self, memory_id: str, text: str, *, namespace: str = "**",
             **fields: Unpack[Mood]) -> dict[str, Any]: ...


class NoteAPIWithPriority(Protocol):
    """The same call after one keyword was added to its declaration, and nothing else."""

    def note(self, memory_id: str, text: str, *, namespace: str = "**",
             priority: int = 3, **fields: Unpack[Mood]) -> dict[str, Any]: ...


class Recorder:
    """The session a tool calls: records the arguments it was given."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def note(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return {"ok": True}


def http_body(declaration: type, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    _, models = requests.build(declaration, CALLS, {"note": overrides or {}})
    return models["NoteRequest"].model_json_schema()


def mcp_tool(declaration: type, args: dict[str, Any] | None = None,
             call: dict[str, Any] | None = None) -> tuple[dict[str, Any], Recorder]:
    recorder = Recorder()
    server = MCPServer(name="t")
    register(server, lambda: recorder,
             [ToolSpec("note", WRITE, "Write a note.", args=args or {})],
             declaration=declaration, calls=CALLS)

    async def go() -> dict[str, Any]:
        async with Client(server) as client:
            (tool,) = (await client.list_tools()).tools
            if call is not None:
                result = await client.call_tool("note", call)
                assert not result.is_error, result
            return tool.input_schema
    return asyncio.run(go()), recorder


def test_the_declared_keywords_are_the_http_body_and_the_mcp_tool():
    body = http_body(NoteAPI)
    # The path parameter is not in the body; **fields are spelled out.
    assert list(body["properties"]) == ["text", "namespace", "mood", "tags"]
    assert body["required"] == ["text"]
    assert body["properties"]["namespace"]["default"] == "**"
    assert body["additionalProperties"] is False
    tool, _ = mcp_tool(NoteAPI)
    assert list(tool["properties"]) == ["id", "text", "namespace", "mood", "tags"]
    assert sorted(tool["required"]) == ["id", "text"]


def test_a_keyword_added_to_the_declaration_reaches_http_and_mcp_with_no_other_edit():
    assert "priority" not in http_body(NoteAPI)["properties"]
    body = http_body(NoteAPIWithPriority)
    assert body["properties"]["priority"]["type"] == "integer"
    assert body["properties"]["priority"]["default"] == 3
    tool, recorder = mcp_tool(NoteAPIWithPriority,
                              call={"id": "m1", "text": "hello", "priority": 5, "mood": "calm"})
    assert tool["properties"]["priority"]["default"] == 3
    assert tool["properties"]["priority"]["description"]  # described even without a spec
    # The tool passes it on under the declared names (memory_id, not the wire's id).
    assert recorder.calls == [{"memory_id": "m1", "text": "hello", "namespace": "**",
                               "priority": 5, "mood": "calm"}]


def test_an_http_body_refuses_a_value_of_the_wrong_declared_type():
    _, models = requests.build(NoteAPIWithPriority, CALLS, {"note": {}})
    model = models["NoteRequest"]
    assert model.model_validate({"text": "x", "priority": 2}).priority == 2
    with pytest.raises(ValueError, match="priority"):
        model.model_validate({"text": "x", "priority": "high"})
    with pytest.raises(ValueError, match="colour"):
        model.model_validate({"text": "x", "colour": "red"})


def test_an_override_keeps_the_declared_default_and_adds_limits():
    body = http_body(NoteAPI, {"text": Field(min_length=1, description="The note.")})
    assert body["properties"]["text"]["minLength"] == 1
    assert body["properties"]["text"]["description"] == "The note."
    assert body["required"] == ["text"]


@pytest.mark.parametrize("override, message", [
    ({"colour": Field(description="not declared")}, r"\['colour'\] not declared"),
    ({"namespace": Field("*", description="another default")}, "not the declared '\\*\\*'"),
    ({"text": Field("", description="a default for a required keyword")},
     r"not the declared \(required\)"),
], ids=["unknown keyword", "other default", "default for a required keyword"])
def test_an_override_that_drifts_from_the_declaration_fails_both_doors(override, message):
    with pytest.raises(SchemaDrift, match=message):
        http_body(NoteAPI, override)
    with pytest.raises(SchemaDrift, match=message):
        mcp_tool(NoteAPI, override)


def test_a_declared_type_without_a_wire_type_is_named():
    class Odd(Protocol):
        def note(self, memory_id: str, text: str, *, when: complex = 1j) -> None: ...

    with pytest.raises(SchemaDrift, match=r"note\(when: <class 'complex'>\)"):
        http_body(Odd)


def test_the_real_overrides_match_api_py():
    # What the server and the MCP door are built from: a typo in an override fails here.
    broken = {**requests.OVERRIDES, "remember": {**requests.OVERRIDES["remember"],
                                                 "importanc": Field(description="x")}}
    with pytest.raises(SchemaDrift, match="importanc"):
        requests.build(overrides_by_call=broken)
    fields, models = requests.build()
    assert set(models) == {c.body for c in api.CALLS if c.body}
    assert {f.name for f in fields["update"]} >= set(api.UpdateFields.__annotations__)
