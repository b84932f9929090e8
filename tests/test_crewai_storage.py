"""EngramStorage as CrewAI's unified-memory backend, with the real crewai package.

CrewAI pins mcp 1.x (EngramDB's MCP door needs 2.x), so these tests run in
their own environment: ``make test-crewai``. Memory is driven through CrewAI's
own ``Memory`` class and ``Crew(memory=True)``; no LLM is called (every
``remember`` gives its scope, categories and importance, which is CrewAI's
no-analysis path; recall is ``depth="shallow"``, plain vector search).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

pytest.importorskip("crewai.memory.storage.backend",
                    reason="CrewAI is not installed: pip install 'engramdb[crewai]' "
                    "(make test-crewai)")

from crewai import LLM, Agent, Crew, Task
from crewai.memory.storage.backend import StorageBackend
from crewai.memory.storage.factory import set_memory_storage_factory
from crewai.memory.types import MemoryRecord
from crewai.memory.unified_memory import Memory

from engramdb.integrations.crewai import EngramStorage, use_engramdb
from tests.conftest import matrix, open_cell
from tests.support.openai_server import OpenAICompatServer

DIM = 32


def embed(texts: list[str]) -> list[list[float]]:
    """CrewAI's embedder for the tests: hashed bag of words (similar words, similar vectors)."""
    out = []
    for t in texts:
        v = [0.0] * DIM
        for w in t.lower().split():
            v[hashlib.sha256(w.strip(".,").encode()).digest()[0] % DIM] += 1.0
        out.append(v)
    return out


@pytest.fixture(params=[*matrix(("sqlite",), ("python", "http"), embed=False),
                        *matrix(("postgres",), ("python",), embed=False)])
def db(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Any]:
    store, door, _ = request.param
    handle = open_cell(store, door, tmp_path, None, request).db
    yield handle
    set_memory_storage_factory(None)
    handle.close()


def record(content: str, scope: str, **kw: Any) -> MemoryRecord:
    return MemoryRecord(content=content, scope=scope, embedding=embed([content])[0], **kw)


def test_it_is_a_storage_backend_and_keeps_what_crewai_saves(db: Any) -> None:
    store = EngramStorage(db)
    assert isinstance(store, StorageBackend)
    a = record("Deploys happen on Tuesdays", "/crew/ops", categories=["process"],
               metadata={"team": "ops"}, importance=0.8)
    b = record("The on-call rota is in the wiki", "/crew/ops/oncall", categories=["docs"])
    c = record("Budget review is in March", "/crew/finance", categories=["process"])
    store.save([a, b, c])
    again = EngramStorage(db)  # a fresh backend (another process) sees the same records
    got = again.get_record(a.id)
    assert got is not None and (got.content, got.scope, got.categories, got.metadata,
                                got.importance) == (a.content, a.scope, ["process"],
                                                    {"team": "ops"}, 0.8)
    assert again.count() == 3 and again.count("/crew/ops") == 2
    assert again.count("/crew/op") == 0  # a scope prefix stops at a segment boundary
    assert again.list_scopes("/") == ["/crew"]
    assert again.list_scopes("/crew") == ["/crew/finance", "/crew/ops"]
    assert again.list_categories() == {"process": 2, "docs": 1}
    info = again.get_scope_info("/crew/ops")
    assert (info.record_count, info.categories, info.child_scopes) == (
        2, ["docs", "process"], ["/crew/ops/oncall"])
    assert [r.id for r in again.list_records("/crew", limit=2)] == [c.id, b.id]


def test_search_ranks_by_crewais_embedding_with_filters(db: Any) -> None:
    store = EngramStorage(db)
    store.save([record("Deploys happen on Tuesdays", "/crew/ops", categories=["process"]),
                record("Lunch is at noon", "/crew/ops", categories=["social"]),
                record("Deploys of the mobile app happen on Fridays", "/crew/mobile",
                       categories=["process"], metadata={"app": "mobile"})])
    q = embed(["when do deploys happen"])[0]
    hits = store.search(q, limit=2)
    assert hits[0][0].content.startswith("Deploys")
    assert hits[0][1] >= hits[1][1]
    assert {h.scope for h, _ in store.search(q, scope_prefix="/crew/ops")} == {"/crew/ops"}
    assert [h.content for h, _ in store.search(q, categories=["social"])] == [
        "Lunch is at noon"]
    assert [h.metadata["app"] for h, _ in store.search(q, metadata_filter={"app": "mobile"})
            ] == ["mobile"]
    assert store.search(q, min_score=1.01) == []
    meta = hits[0][0].metadata["engramdb"]
    assert meta["version"] == 1 and meta["contested"] is False


def test_update_is_a_new_version_and_delete_retracts(db: Any) -> None:
    store = EngramStorage(db)
    r = record("The API rate limit is 100/s", "/crew/api")
    old = record("An old note", "/crew/api", categories=["stale"])
    store.save([r, old])
    store.update(r.model_copy(update={"content": "The API rate limit is 200/s"}))
    mid = store.search(embed(["rate limit"])[0], limit=1)[0][0].metadata["engramdb"]["memory_id"]
    assert [m.text for m in db.history(mid)] == ["The API rate limit is 100/s",
                                                 "The API rate limit is 200/s"]
    assert store.delete(categories=["stale"]) == 1
    assert store.get_record(old.id) is None and EngramStorage(db).count() == 1
    assert store.delete(older_than=datetime.utcnow() - timedelta(days=1)) == 0
    store.reset("/crew")
    assert EngramStorage(db).count() == 0
    assert db.history(mid)[-1].status == "retracted"


def test_crew_memory_true_keeps_memory_in_engramdb(db: Any) -> None:
    """Crew(memory=True) builds its Memory through CrewAI's storage factory; its embedder is
    CrewAI's OpenAI one, talking to a local OpenAI-compatible server."""
    use_engramdb(db)
    with OpenAICompatServer(dim=DIM) as server:
        agent = Agent(role="researcher", goal="find facts", backstory="careful",
                      llm="gpt-4o-mini")
        crew = Crew(agents=[agent],
                    tasks=[Task(description="x", expected_output="y", agent=agent)],
                    memory=True,
                    embedder={"provider": "openai",
                              "config": {"api_key": "test", "api_base": server.base_url,
                                         "model_name": "text-embedding-3-small"}})
        memory = crew._memory
        assert isinstance(memory, Memory)
        memory.remember("Our biggest customer is Initech", scope="/customers",
                        categories=["accounts"], importance=0.9)
        hits = memory.recall("biggest customer", depth="shallow")
        assert server.requests  # the embeddings came from CrewAI's own embedder
    assert hits and hits[0].record.content == "Our biggest customer is Initech"
    assert hits[0].record.scope == "/crew/crew/customers"
    stored = db.recall("Initech", namespace="crewai/**").hits
    assert [(h.memory.text, h.memory.namespace) for h in stored] == [
        ("Our biggest customer is Initech", "crewai/crew/crew/customers")]


def test_two_crew_agents_contradict_and_a_third_sees_both_contested(db: Any) -> None:
    memory = Memory(storage=EngramStorage(db), embedder=embed, root_scope="/crew/research")
    # what CrewAI's agent executor does after each task: the agent's own root scope
    for role, fact in [("analyst_a", "The CEO of Acme is Alice Smith"),
                       ("analyst_b", "The CEO of Acme is Bob Jones")]:
        memory.remember_many([fact], scope="/facts", categories=["company"], importance=0.7,
                             agent_role=role, root_scope=f"/crew/research/agent/{role}")
    memory.drain_writes()
    inbox = db.conflicts("crewai/**")
    assert [(c.kind, c.status) for c in inbox] == [("contradiction", "open")]
    reviewer = EngramStorage(db)
    hits = reviewer.search(embed(["who is the CEO of Acme"])[0], limit=5)
    report = sorted((h.metadata["engramdb"]["author"], h.metadata["engramdb"]["contested"])
                    for h, _ in hits)
    assert report == [("analyst_a", True), ("analyst_b", True)]


# -- a real kickoff: CrewAI's own memory path, its LLM on a local OpenAI-compatible server --

_CEO = re.compile(r"The CEO of Initech is ([A-Z][a-z]+ [A-Z][a-z]+)")


def _crew_llm(requests: list[dict[str, Any]]) -> Any:
    """A scripted model behind the chat API, answering from what its prompt holds.

    The researcher's task yields a finding; CrewAI's memory prompts (extract, analyse,
    consolidate, query analysis: structured output) get JSON of their schema; the writer
    names the CEO only if CrewAI put a memory saying who it is into the writer's prompt.
    """

    def answer(req: dict[str, Any]) -> str:
        requests.append(req)
        fmt = (req.get("response_format") or {}).get("json_schema") or {}
        fields = set((fmt.get("schema") or {}).get("properties") or {})
        prompt = "\n".join(str(m.get("content") or "") for m in req["messages"])
        if fields == {"memories"}:  # extract_memories: what the task's result established
            result = prompt.split("Result:")[-1].split("\n\n")[0].strip()
            return json.dumps({"memories": [result] if result else []})
        if "suggested_scope" in fields:  # analysis before a save
            return json.dumps({"suggested_scope": "/company", "categories": ["company"],
                               "importance": 0.8, "extracted_metadata": {
                                   "entities": ["Initech"], "dates": [], "topics": []}})
        if "insert_new" in fields:  # consolidation with similar memories
            return json.dumps({"actions": [], "insert_new": True, "insert_reason": "new"})
        if "recall_queries" in fields:  # query analysis
            return json.dumps({"keywords": ["Initech"], "suggested_scopes": [],
                               "complexity": "simple", "recall_queries": ["CEO of Initech"]})
        task = prompt.split("Current Task:")[-1]
        if "Find out who the CEO" in task:
            return "The CEO of Initech is Alice Smith."
        known = _CEO.findall(prompt.split("Relevant memories:")[-1]) \
            if "Relevant memories:" in prompt else []
        return f"Note: Initech is run by {known[0]}." if known else "Note: CEO unknown."

    return answer


@pytest.mark.parametrize("db", matrix(("sqlite", "postgres"), ("python",), embed=False),
                         indirect=True)
def test_a_kickoff_keeps_and_recalls_its_agents_memories_in_engramdb(db: Any) -> None:
    """Crew(memory=True).kickoff() with its LLM on a local server, on SQLite and on
    PostgreSQL: after the researcher's task CrewAI extracts and saves what it learnt (as
    EngramDB agent ``researcher``), and the writer's later task, which is given no context
    from the first, recalls it from EngramDB before its LLM call and names the CEO."""
    use_engramdb(db)
    requests: list[dict[str, Any]] = []
    try:
        with OpenAICompatServer(dim=DIM, chat_handler=_crew_llm(requests)) as server:
            llm = LLM(model="openai/gpt-4o-mini", base_url=server.base_url, api_key="test")
            researcher = Agent(role="researcher", goal="find facts", backstory="careful",
                               llm=llm)
            writer = Agent(role="writer", goal="write notes", backstory="terse", llm=llm)
            crew = Crew(
                agents=[researcher, writer],
                tasks=[Task(description="Find out who the CEO of Initech is.",
                            expected_output="one sentence", agent=researcher),
                       Task(description="Write a one-line note naming the CEO of Initech.",
                            expected_output="one line", agent=writer, context=[])],
                memory=True,
                embedder={"provider": "openai",
                          "config": {"api_key": "test", "api_base": server.base_url,
                                     "model_name": "text-embedding-3-small"}})
            out = crew.kickoff()
        assert out.raw == "Note: Initech is run by Alice Smith."
        writer_calls = [r for r in requests if r.get("tools") and "Write a one-line note" in
                        json.dumps(r["messages"])]
        assert writer_calls and "The CEO of Initech is Alice Smith" in json.dumps(
            writer_calls[0]["messages"])  # recalled into the writer's prompt, not passed on
        stored = [(m.author, m.namespace, m.text) for m in
                  (h.memory for h in db.recall("CEO of Initech", namespace="crewai/**").hits)]
        assert sorted(stored) == [
            ("researcher", "crewai/crew/crew/company", "The CEO of Initech is Alice Smith."),
            ("writer", "crewai/crew/crew/company", "Note: Initech is run by Alice Smith.")]
    finally:
        set_memory_storage_factory(None)
