"""EngramContextProvider inside a real Agent Framework ``Agent`` run.

The model is a small deterministic chat client (Agent Framework's
``BaseChatClient``) that records the messages it was sent and answers with a
fixed sentence, so the test sees exactly what the provider injected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("agent_framework", reason="the Agent Framework is not installed: "
                    "pip install 'engramdb[agent-framework]'")

from agent_framework import Agent, BaseChatClient, ChatResponse, Message

from engramdb.integrations.agent_framework import HEADER, EngramContextProvider
from tests.conftest import matrix, open_cell


class RecordingClient(BaseChatClient):
    """The model: remembers what it was sent, always answers the same."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[list[str]] = []

    async def _inner_get_response(self, *, messages: Any, stream: bool, options: Any,
                                  **kwargs: Any) -> ChatResponse:
        # Instructions reach a chat client as the "instructions" option (the system prompt).
        self.seen.append([str((options or {}).get("instructions") or "")]
                         + [m.text for m in messages])
        return ChatResponse(messages=[Message(role="assistant",
                                              contents=["Booked the vegetarian menu."])])


@pytest.fixture(params=[*matrix(("sqlite",), ("python", "http"), embed=False),
                        *matrix(("postgres",), ("python",), embed=False)])
def db(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Any]:
    store, door, _ = request.param
    handle = open_cell(store, door, tmp_path, None, request).db
    yield handle
    handle.close()


def test_context_is_injected_under_budget_and_the_turn_is_remembered(db: Any) -> None:
    db.admin.create_agent("concierge")
    db.admin.grant("concierge", "guests/**", ["read", "write"])
    db.remember("Guest Ana is vegetarian and allergic to walnuts", namespace="guests/ana")
    db.remember("The hotel gym opens at six", namespace="guests/general")
    provider = EngramContextProvider(db, agent="concierge", namespace="guests/**",
                                     budget_tokens=60)
    client = RecordingClient()
    agent = Agent(client=client, context_providers=[provider])
    session = agent.create_session()
    reply = asyncio.run(agent.run("Plan dinner for Ana: is she vegetarian?", session=session))
    assert reply.text == "Booked the vegetarian menu."
    sent = "\n".join(client.seen[0])
    assert HEADER in sent and "vegetarian and allergic to walnuts" in sent
    receipt = session.state[provider.source_id]["receipt"]
    ana = db.recall("vegetarian walnuts", namespace="guests/**").hits[0].memory
    assert {"id": ana.id, "version": 1} in receipt["items"]
    turns = db.recall("vegetarian", namespace="agents/concierge", layers=["episodic"]).hits
    assert sorted(h.memory.text for h in turns) == [
        "Booked the vegetarian menu.", "Plan dinner for Ana: is she vegetarian?"]
    assert {h.memory.author for h in turns} == {"concierge"}
    assert {h.memory.session for h in turns} == {session.session_id}


def test_the_budget_bounds_what_is_injected(db: Any) -> None:
    for i in range(30):
        db.remember(f"Room {i} asked for extra vegetarian breakfast options", namespace="guests/x")
    provider = EngramContextProvider(db, namespace="guests/**", budget_tokens=40,
                                     remember_turns=False)
    client = RecordingClient()
    asyncio.run(Agent(client=client, context_providers=[provider]).run("vegetarian breakfast"))
    injected = next(t for t in client.seen[0] if HEADER in t).split(HEADER, 1)[1]
    from engramdb.retrieval.tokens import count_tokens

    assert 0 < count_tokens(injected.strip()) <= 40
    assert db.recall("vegetarian", namespace="**", layers=["episodic"]).hits == ()
