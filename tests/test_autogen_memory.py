"""EngramMemory with the real autogen-core (its Memory protocol and model contexts).

autogen-core pins protobuf 5, which onnxruntime (EngramDB's default embedder)
cannot share, so these tests run in their own environment: ``make test-autogen``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("autogen_core.memory", reason="autogen-core is not installed: "
                    "pip install 'engramdb[autogen]' (make test-autogen)")

from autogen_core.memory import Memory, MemoryContent, MemoryMimeType
from autogen_core.model_context import UnboundedChatCompletionContext
from autogen_core.models import SystemMessage, UserMessage

import engramdb
from engramdb.integrations.autogen import HEADER, EngramMemory
from tests.conftest import matrix, open_cell


@pytest.fixture(params=[*matrix(("sqlite",), ("python", "http"), embed=False),
                        *matrix(("postgres",), ("python",), embed=False)])
def db(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Any]:
    store, door, _ = request.param
    handle = open_cell(store, door, tmp_path, None, request).db
    for name in ("chef", "scout-a", "scout-b"):
        handle.admin.create_agent(name)
        handle.admin.grant(name, "kitchen/**", ["read", "write"])
    yield handle
    handle.close()


def text(s: str, **meta: Any) -> MemoryContent:
    return MemoryContent(content=s, mime_type=MemoryMimeType.TEXT, metadata=meta or None)


def test_add_query_and_update_context(db: Any) -> None:
    mem = EngramMemory(db, agent="chef", namespace="kitchen/notes", recall_namespace="kitchen/**",
                       budget_tokens=80)
    assert isinstance(mem, Memory)

    async def run() -> Any:
        await mem.add(text("Table 4 is allergic to shellfish", table=4))
        await mem.add(MemoryContent(content={"dish": "risotto", "stock": "low"},
                                    mime_type=MemoryMimeType.JSON))
        found = await mem.query("shellfish allergy")
        ctx = UnboundedChatCompletionContext()
        await ctx.add_message(UserMessage(content="What can table 4 not eat? shellfish?",
                                          source="user"))
        updated = await mem.update_context(ctx)
        return found, updated, await ctx.get_messages()

    found, updated, messages = asyncio.run(run())
    top = found.results[0]
    assert top.content == "Table 4 is allergic to shellfish"
    assert top.metadata["table"] == 4 and top.metadata["engramdb"]["author"] == "chef"
    system = [m for m in messages if isinstance(m, SystemMessage)]
    assert len(system) == 1 and system[0].content.startswith(HEADER)
    assert "allergic to shellfish" in system[0].content
    assert updated.memories.results[0].metadata["engramdb"]["memory_id"] == \
        top.metadata["engramdb"]["memory_id"]
    json_hit = asyncio.run(mem.query("risotto stock")).results[0]
    assert json_hit.mime_type == "application/json"


def test_contradictions_show_as_contested_and_clear_retracts(db: Any) -> None:
    a = EngramMemory(db, agent="scout-a", namespace="kitchen/facts")
    b = EngramMemory(db, agent="scout-b", namespace="kitchen/facts")
    asyncio.run(a.add(text("The head chef of Lumen is Alice Smith")))
    asyncio.run(b.add(text("The head chef of Lumen is Bob Jones")))
    assert len(db.conflicts("kitchen/**")) == 1
    hits = asyncio.run(EngramMemory(db).query("head chef of Lumen")).results
    assert sorted((h.metadata["engramdb"]["author"], h.metadata["engramdb"]["contested"])
                  for h in hits) == [("scout-a", True), ("scout-b", True)]
    asyncio.run(a.clear())
    left = asyncio.run(EngramMemory(db).query("head chef of Lumen")).results
    assert [h.metadata["engramdb"]["author"] for h in left] == ["scout-b"]
    with pytest.raises(engramdb.InvalidInput):
        asyncio.run(a.add(MemoryContent(content=b"\x00", mime_type=MemoryMimeType.BINARY)))
    asyncio.run(a.close())
