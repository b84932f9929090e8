"""The memory layers beyond the conformance suite: properties, processes, a real LLM server.

* The context budget is a Hypothesis property over random memories, blocks,
  quotas and budgets on a real SQLite file: the text never exceeds the budget
  (counted with the same tokenizer) and always holds the pinned blocks that fit.
* Two real processes edit one working block at once: one wins, the other gets
  ``VersionConflict`` and its edit is not lost.
* The summariser and the extractor talk to a real local HTTP server speaking
  the OpenAI chat API: the request is checked, the answer parsed; a failing or
  malformed answer is a typed error and writes nothing.
* Tool outcomes batched in a transaction are one commit, one event per namespace.
"""

from __future__ import annotations

import json
import multiprocessing
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engramdb
from engramdb.errors import UpstreamError
from engramdb.retrieval.assemble import Candidate, assemble
from engramdb.retrieval.tokens import count_tokens
from tests.support.block_worker import edit_block
from tests.support.openai_server import OpenAICompatServer
from tests.support.procs import gather

WORDS = ("Oslo flight budget hotel train seat window price Dana Friday contract SLA renew "
         "vendor outage ticket bug logs deploy rollback metrics cache queue").split()


def sentence(rng_words: list[str]) -> str:
    return " ".join(rng_words).capitalize() + "."


texts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=40).map(sentence)


def head(db: Any) -> int:
    return int(db.storage.head().seq)


# -- the budget property --------------------------------------------------------------------


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(facts=st.lists(texts, max_size=12), blocks=st.lists(texts, max_size=4),
       episodes=st.lists(texts, max_size=6), budget=st.integers(1, 400),
       quotas=st.dictionaries(st.sampled_from(["working", "semantic", "episodic",
                                               "procedural"]),
                              st.integers(0, 200), max_size=3))
def test_context_never_exceeds_the_budget_and_keeps_the_blocks_that_fit(
        facts: list[str], blocks: list[str], episodes: list[str], budget: int,
        quotas: dict[str, int]) -> None:
    with tempfile.TemporaryDirectory() as tmp, \
            engramdb.open(Path(tmp) / "e.db", embedder=None) as db:
        db.admin.create_agent("a")
        a = db.as_agent("a")
        for text in facts:
            a.remember(text)
        for i, text in enumerate(blocks):
            a.pin(f"b{i}", text)
        for text in episodes:
            a.episode("s", "user", text)
        ctx = a.context("Oslo flight budget", budget, session="s", quotas=quotas)
        assert ctx.tokens == count_tokens(ctx.text) <= budget
        for layer, cap in quotas.items():
            used = [p for p in ctx.parts if p.layer == layer]
            # each line's tokens plus the newline that joins it, at most
            assert sum(p.tokens for p in used) <= cap
        # The pinned blocks that fit are there, whole, first, in name order.
        shown = [p for p in ctx.parts if p.kind == "block"]
        assert all(not p.shortened for p in shown)
        assert [p.kind for p in ctx.parts[:len(shown)]] == ["block"] * len(shown)
        wanted = [p.text for p in shown]
        if not wanted and blocks:
            # none shown: then even the first block alone did not fit
            first = a.blocks()[0]
            line = f"[1] {first.namespace} | a | {first.recorded_at:%Y-%m-%d %H:%M}Z " \
                   f"[pinned] [{first.metadata['block']}]: {first.text}"
            cap = min(budget, quotas.get("working", budget))
            assert count_tokens(line) > cap
        every = sum(count_tokens(f"[{i}] agents/a | a | 2026-01-01 00:00Z [pinned] [b{i}]: "
                                 + " ".join(t.split())) + 1 for i, t in enumerate(blocks, 1))
        if every <= min(budget, quotas.get("working", budget)) - 2 * len(blocks):
            assert len(shown) == len(blocks)


def test_many_short_memories_fill_the_budget_not_just_the_first_recall(tmp_path: Path) -> None:
    # Lines of ~30 tokens: the first recall (budget / 60 = 66 candidates) leaves half
    # the budget empty with everything fitting, so context recalls again for more.
    with engramdb.open(tmp_path / "e.db", embedder=None) as db:
        db.remember_many([{"text": f"Oslo flight note {i}", "namespace": "trips",
                           "layer": "episodic"}  # no contradiction check: plain short lines
                          for i in range(400)])
        ctx = db.context("Oslo flight", 4000, namespace="trips")
        assert ctx.tokens == count_tokens(ctx.text) <= 4000
        assert len(ctx.items) > 100 and ctx.tokens > 3000
        assert ctx.left_out  # it stopped at the budget, not for want of candidates
        assert [i.version for i in ctx.receipt.items] == [h.memory.version for h in ctx.items]


@settings(max_examples=200, deadline=None)
@given(bodies=st.lists(st.tuples(st.sampled_from(["semantic", "episodic", "procedural"]),
                                 st.lists(texts, min_size=1, max_size=5).map(" ".join),
                                 st.floats(0, 1)), max_size=15),
       pinned=st.lists(texts, max_size=3), budget=st.integers(1, 300),
       quotas=st.dictionaries(st.sampled_from(["working", "semantic", "episodic"]),
                              st.integers(0, 150), max_size=3))
def test_assembly_alone_respects_budget_quotas_and_pins(
        bodies: list[tuple[str, str, float]], pinned: list[str], budget: int,
        quotas: dict[str, int]) -> None:
    cands = [Candidate("working", "block", f"b{i}", f"[pinned] [b{i}]: ", t, 1.0, True,
                       f"block{i}", 1) for i, t in enumerate(pinned)]
    cands += [Candidate(layer, "fact", f"m{i}", "ns | a | t: ", body, score, False, f"m{i}", 1)
              for i, (layer, body, score) in enumerate(bodies)]
    out = assemble(cands, budget, task="Oslo flight budget", quotas=quotas)
    assert out.tokens == count_tokens(out.text) <= budget
    assert out.text == "\n".join(p.text for p in out.parts)
    for layer, cap in quotas.items():
        assert sum(p.tokens for p in out.parts if p.layer == layer) <= cap
    chosen = {p.label for p in out.parts}
    left = {x.label for x in out.left_out}
    assert chosen | left == {c.label for c in cands} and not chosen & left
    for p in out.parts:
        if p.shortened:  # extractive: the kept words are the body's own, ending in …
            body = next(c.body for c in cands if c.label == p.label)
            kept = p.text.split(": ", 1)[1].removesuffix("…")
            assert kept and all(w in body for w in kept.split(" "))


# -- two processes, one block ----------------------------------------------------------------


def test_two_processes_editing_one_block_one_wins_the_other_conflicts(tmp_path: Path) -> None:
    path = str(tmp_path / "engram.db")
    with engramdb.open(path, embedder=None) as db:
        for name in ("ann", "ben"):
            db.admin.create_agent(name)
            db.admin.grant(name, "team/**", ["read", "write"])
        db.as_agent("ann").pin("plan", "draft", namespace="team/shared")
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=edit_block, args=(path, name, f"{name}'s edit", barrier, results))
             for name in ("ann", "ben")]
    reports = gather(procs, results, timeout=180)
    assert [r["error"] for r in reports] == [None, None], reports
    firsts = sorted(r["first"] for r in reports)
    assert firsts == [("conflict", 2), ("ok", 2)]
    winner = next(r["agent"] for r in reports if r["first"][0] == "ok")
    loser = next(r["agent"] for r in reports if r["first"][0] == "conflict")
    with engramdb.open(path, embedder=None) as db:
        (block,) = db.blocks(namespace="team/**")
        assert block.version == 3
        assert block.text == f"{winner}'s edit + {loser}'s edit"  # neither edit lost
        assert [m.text for m in db.history(block.id)] == [
            "draft", f"{winner}'s edit", f"{winner}'s edit + {loser}'s edit"]
        assert [m.author for m in db.history(block.id)] == ["ann", winner, loser]


# -- the summariser and extractor against a real OpenAI-compatible server ---------------------


@pytest.fixture
def llm_db(tmp_path: Path):
    db = engramdb.open(tmp_path / "engram.db", embedder=None)
    db.admin.create_agent("a")
    a = db.as_agent("a")
    a.episode("s1", "user", "My name is Dana and I live in Oslo.")
    a.episode("s1", "assistant", "Noted: Dana lives in Oslo and prefers window seats.")
    yield db, a
    db.close()


def test_llm_summary_sends_the_episodes_and_stores_the_answer(llm_db) -> None:
    db, a = llm_db
    with OpenAICompatServer(api_key="sk-test", chat_handler=lambda req: json.dumps(
            {"summary": "Dana, who lives in Oslo, wants a window seat."})) as server:
        db.llm = engramdb.ChatLLM(server.base_url, "tiny-model", api_key="sk-test")
        s = a.summarize("s1")
        (req,) = server.requests
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-test"
    body = req["body"]
    assert body["model"] == "tiny-model" and body["temperature"] == 0
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "My name is Dana and I live in Oslo." in body["messages"][1]["content"]
    assert "[2] assistant" in body["messages"][1]["content"]
    assert s.text.endswith("\nDana, who lives in Oslo, wants a window seat.")
    assert (s.metadata["method"], s.source) == ("llm:tiny-model", "summary:llm:tiny-model")
    rows = db.storage.fetch("derivations", {"derived_id": s.id})
    assert sorted((r["source_id"], r["kind"]) for r in rows) == sorted(
        (e.id, "summary") for e in a.episodes("s1"))


@pytest.mark.parametrize("answer, fail", [
    ("not json at all", 0), (json.dumps({"summary": ""}), 0),
    (json.dumps({"facts": "nope"}), 0), ("{}", 1)])
def test_a_failing_or_malformed_llm_answer_is_a_typed_error_and_writes_nothing(
        llm_db, answer: str, fail: int) -> None:
    db, a = llm_db
    with OpenAICompatServer(chat_handler=lambda req: answer) as server:
        server.fail_next = fail
        db.llm = engramdb.ChatLLM(server.base_url, "m")
        before = head(db)
        with pytest.raises(UpstreamError):
            a.summarize("s1", method="llm")
        server.fail_next = fail
        with pytest.raises(UpstreamError):
            a.extract("s1")
        assert head(db) == before
    db.llm = engramdb.ChatLLM("http://127.0.0.1:9/v1", "m")  # nothing listens there
    with pytest.raises(UpstreamError, match="could not be reached"):
        a.extract("s1")
    assert head(db) == before


def test_extracted_facts_go_through_conflict_detection_and_link_their_sources(llm_db) -> None:
    db, a = llm_db
    db.admin.create_agent("b")
    old = a.remember("Dana lives in Bergen", subject="person:dana", predicate="city",
                     value="Bergen")
    facts = {"facts": [
        {"subject": "person:dana", "predicate": "city", "value": "Oslo",
         "text": "Dana lives in Oslo", "sources": [1]},
        {"subject": "person:dana", "predicate": "seat", "value": "window",
         "text": "Dana prefers window seats", "sources": [2]}]}
    # models often fence their JSON; the answer is read all the same
    fenced = "```json\n" + json.dumps(facts) + "\n```"
    with OpenAICompatServer(chat_handler=lambda req: fenced) as server:
        db.llm = engramdb.ChatLLM(server.base_url, "m")
        city, seat = a.extract("s1")
        assert "JSON" in server.requests[0]["body"]["messages"][0]["content"]
    assert (city.subject, city.predicate, city.value, city.session) == (
        "person:dana", "city", "Oslo", "s1")
    assert [c.kind for c in city.conflicts] == ["contradiction"]
    assert {i.id for i in city.conflicts[0].memories} == {old.id, city.id}
    assert seat.conflicts == ()
    ep1, ep2 = a.episodes("s1")
    for fact, source in ((city, ep1), (seat, ep2)):
        (row,) = db.storage.fetch("derivations", {"derived_id": fact.id})
        assert (row["source_id"], row["kind"]) == (source.id, "extraction")
    # a fact that is not a valid assertion makes the whole extraction fail, unwritten
    bad = {"facts": [{"subject": "person:dana", "predicate": "city", "text": ""}]}
    with OpenAICompatServer(chat_handler=lambda req: json.dumps(bad)) as server:
        db.llm = engramdb.ChatLLM(server.base_url, "m")
        before = head(db)
        with pytest.raises(UpstreamError, match="not valid"):
            a.extract("s1")
        assert head(db) == before


# -- batched tool outcomes ---------------------------------------------------------------------


def test_tool_outcomes_batched_in_a_transaction_are_logged_and_counted(tmp_path: Path) -> None:
    with engramdb.open(tmp_path / "e.db", embedder=None) as db:
        db.admin.create_agent("a")
        a = db.as_agent("a")
        before = head(db)
        db.admin.grant("a", "team/**", ["write"])
        with a.transaction() as tx:
            for i in range(500):
                tx.tool_outcome("fetch", i % 4 != 0, latency_ms=float(i),
                                namespace="team/x" if i % 2 else None)
            with pytest.raises(engramdb.PermissionDenied):  # refused at once, not at the end
                tx.tool_outcome("fetch", True, namespace="elsewhere")
        # one event per namespace carries the batch and the aggregate rows it changes
        # (one total, one latency bin per distinct latency: 250), and replays them
        events = list(db.changes(before + 1))

        def tables(e: Any) -> tuple[int, int]:
            names = [eff["table"] for eff in e.payload["effects"]]
            return names.count("tool_outcomes"), names.count("tool_stats")

        assert [(e.kind, e.namespace, tables(e)) for e in events] == [
            ("tool.outcome", "agents/a", (250, 251)), ("tool.outcome", "team/x", (250, 251))]
        (st_,) = db.tool_stats("fetch")
        assert (st_.calls, st_.successes) == (500, 375)
        # without a read grant on team/x the agent counts only its own half (even i)
        (mine,) = a.tool_stats("fetch")
        assert (mine.calls, mine.successes) == (250, 125)
        with pytest.raises(engramdb.InvalidInput):  # nothing of a failed batch stays
            with a.transaction() as tx:
                tx.tool_outcome("fetch", True)
                tx.tool_outcome("fetch", "maybe")  # type: ignore[arg-type]
        assert db.tool_stats("fetch")[0].calls == 500
        assert db.verify().ok
