"""EngramSession and the remember/recall tools with the real OpenAI Agents SDK.

The Runner talks to a local OpenAI-compatible server (tests/support/openai_server.py)
through the SDK's own chat-completions model, so every request the SDK builds
(with the history EngramSession gives it) is visible to the test.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("agents", reason="the OpenAI Agents SDK is not installed: "
                    "pip install 'engramdb[openai-agents]'")

from agents import Agent, OpenAIChatCompletionsModel, Runner, set_tracing_disabled
from agents.tool_context import ToolContext
from openai import AsyncOpenAI

from engramdb.integrations.openai_agents import EngramSession, memory_tools
from tests.conftest import matrix, open_cell
from tests.support.openai_server import OpenAICompatServer

set_tracing_disabled(True)


@pytest.fixture(params=[*matrix(("sqlite",), ("python", "http"), embed=False),
                        *matrix(("postgres",), ("python",), embed=False)])
def db(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Any]:
    store, door, _ = request.param
    handle = open_cell(store, door, tmp_path, None, request).db
    for name in ("helper", "scout-a", "scout-b", "auditor"):
        handle.admin.create_agent(name)
        handle.admin.grant(name, "openai-agents/**", ["read", "write"])
        handle.admin.grant(name, "facts/**", ["read", "write"])
    yield handle
    handle.close()


def test_the_runner_keeps_history_in_engramdb(db: Any) -> None:
    replies = iter(["Nice to meet you, Ana.", "Your name is Ana."])
    with OpenAICompatServer(chat_handler=lambda req: next(replies)) as server:
        model = OpenAIChatCompletionsModel(
            model="test", openai_client=AsyncOpenAI(base_url=server.base_url, api_key="k"))
        agent = Agent(name="helper", instructions="Be brief.", model=model)
        session = EngramSession("conv-1", db, agent="helper")
        first = asyncio.run(Runner.run(agent, "Hi, I am Ana.", session=session))
        second = asyncio.run(Runner.run(agent, "What is my name?", session=session))
    assert (first.final_output, second.final_output) == ("Nice to meet you, Ana.",
                                                         "Your name is Ana.")
    sent = [m.get("content") for m in server.requests[-1]["body"]["messages"]]
    assert sent[-3:] == ["Hi, I am Ana.", "Nice to meet you, Ana.", "What is my name?"]
    # another process, same conversation
    again = EngramSession("conv-1", db)
    items = asyncio.run(again.get_items())
    assert [i.get("role") for i in items] == ["user", "assistant", "user", "assistant"]
    assert asyncio.run(again.get_items(limit=1))[0]["role"] == "assistant"
    stored = db.recall("Ana", namespace="openai-agents/**", layers=["episodic"]).hits
    assert {h.memory.author for h in stored} == {"helper"}
    assert {h.memory.session for h in stored} == {"conv-1"}
    assert asyncio.run(EngramSession("conv-2", db).get_items()) == []


def test_pop_and_clear(db: Any) -> None:
    s = EngramSession("c", db)
    asyncio.run(s.add_items([{"role": "user", "content": f"message {i}"} for i in range(3)]))
    assert asyncio.run(s.pop_item()) == {"role": "user", "content": "message 2"}
    assert [i["content"] for i in asyncio.run(s.get_items())] == ["message 0", "message 1"]
    asyncio.run(s.clear_session())
    assert asyncio.run(s.get_items()) == [] and asyncio.run(s.pop_item()) is None


def _call(tool: Any, **args: Any) -> str:
    raw = json.dumps(args)
    ctx = ToolContext(context=None, tool_name=tool.name, tool_call_id="call-1",
                      tool_arguments=raw)
    return str(asyncio.run(tool.on_invoke_tool(ctx, raw)))


def test_remember_and_recall_tools_act_as_their_agent(db: Any) -> None:
    remember_a, _ = memory_tools(db, agent="scout-a", namespace="facts/acme")
    remember_b, _ = memory_tools(db, agent="scout-b", namespace="facts/acme")
    _, recall = memory_tools(db, agent="auditor", recall_namespace="facts/**")
    assert {t.name for t in memory_tools(db)} == {"remember", "recall"}
    assert _call(remember_a, fact="The CEO of Acme is Alice Smith").startswith("remembered")
    said = _call(remember_b, fact="The CEO of Acme is Bob Jones")
    assert "conflicts with 1 earlier memory" in said
    found = _call(recall, query="CEO of Acme").splitlines()
    assert sorted(line.split(". ", 1)[1] for line in found) == [
            "The CEO of Acme is Alice Smith (by scout-a, contested)",
            "The CEO of Acme is Bob Jones (by scout-b, contested)"]
    assert _call(recall, query="zebra crossing") == "nothing found"
