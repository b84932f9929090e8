"""What the default recall ranking does that a user notices, on real text and the real embedder.

Each scenario is a short chat transcript, one memory per turn in its session,
among other sessions of ordinary chat. Each test also ranks the very same
candidates with the behaviour switched off, to show it is that behaviour that
puts the answer where the user finds it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import engramdb
from engramdb.engine.rows import EngineConfig
from engramdb.retrieval.hybrid import ContextWeights
from tests.support.ranking import rank_candidates

NS = "chat/ana-ben"

OTHER_SESSIONS = [
    ["Ana: Did you watch the match last night?",
     "Ben: Only the second half, the defence looked tired.",
     "Ana: The new coach keeps changing the line-up.",
     "Ben: Maybe he will settle on a team by spring."],
    ["Ben: My sister is moving to Lisbon next month.",
     "Ana: Lisbon is beautiful, she will love the food.",
     "Ben: She already found a flat near the river.",
     "Ana: Tell her to try the custard tarts in Belém."],
    ["Ana: Work has been hectic, we ship the new app on Friday.",
     "Ben: Good luck with the launch, I hope the servers hold up.",
     "Ana: Thanks, the team has been testing all week.",
     "Ben: Let me know when I can download it."],
    ["Ben: I have been reading a lot of history books lately.",
     "Ana: Which period do you like most?",
     "Ben: The Roman republic, all the politics and betrayals.",
     "Ana: You should visit Rome one day then."],
    ["Ana: The weather has been awful, rain every single day.",
     "Ben: Same here, the garden is completely flooded.",
     "Ana: At least the plants are getting water.",
     "Ben: True, the tomatoes look happier than I do."],
]


def _load(db: Any, sessions: list[list[str]]) -> None:
    start = datetime(2024, 3, 1, 18, 0, tzinfo=UTC)
    db.remember_many([
        {"text": text, "namespace": NS, "layer": "episodic", "session": f"session_{i}",
         "valid_from": start + timedelta(days=7 * i)}
        for i, turns in enumerate(sessions, start=1) for text in turns])


def _rank_without(db: Any, query: str, off: ContextWeights) -> list[str]:
    """The same candidates recall() ranks, ranked with some behaviour switched off."""
    return rank_candidates(db, NS, query, off)


@pytest.fixture
def chat(tmp_path, embedder) -> Any:
    db = engramdb.open(tmp_path / "chat.db", embedder=embedder)
    yield db
    db.close()


def test_an_answer_given_in_the_next_turn_is_found(chat: Any) -> None:
    # The answer shares no word with the question: only the turn before it (the
    # question it answers) and its session (the sailboat) tie it to the query.
    answer = "Ben: Up the coast to Tromsø, as soon as the storms pass."
    sailing = ["Ana: How was your weekend, Ben?",
               "Ben: Great, I finally finished restoring the old sailboat.",
               "Ana: Wonderful! Where will you sail it first?",
               answer,
               "Ana: Sounds lovely. I started a pottery class on Tuesdays.",
               "Ben: Nice, what are you making?",
               "Ana: Mostly bowls so far, a bit wonky."]
    _load(chat, [*OTHER_SESSIONS[:3], sailing, *OTHER_SESSIONS[3:]])
    query = "Where will Ben sail his restored sailboat first?"
    hits = [h.memory.text for h in chat.recall(query, namespace=NS, k=3).hits]
    assert answer in hits, hits
    alone = _rank_without(chat, query, ContextWeights(neighbour=0.0, session=0.0))
    assert answer not in alone[:3], alone[:5]


def test_what_the_named_person_said_ranks_above_what_others_said_around_it(chat: Any) -> None:
    theirs = "Ana: I baked a lemon tart, it was gone in minutes."
    beside = "Ben: That was a fun party yesterday!"
    party = ["Ben: Are you coming to Marta's party on Saturday?",
             "Ben: Ana, remember you promised to bake something for the party!",
             "Ana: Sure, count me in.",
             "Ben: Great, see you there."]
    after = [beside, theirs, "Ben: My bread was gone even faster, ha.", "Ana: Everyone loved it."]
    _load(chat, [*OTHER_SESSIONS, party, after])
    query = "What did Ana bake for the party?"
    hits = [h.memory.text for h in chat.recall(query, namespace=NS, k=3).hits]
    assert theirs in hits and beside not in hits, hits
    # Without the speaker cue, Ben's words around it (the party he asks about) push it out.
    anyone = _rank_without(chat, query, ContextWeights(speaker=0.0))
    assert theirs not in anyone[:3], anyone[:5]


SAILING = ["Ana: How was your weekend, Ben?",
           "Ben: Great, I finally finished restoring the old sailboat.",
           "Ana: Wonderful! Where will you sail it first?",
           "Ben: Up the coast to Tromsø, as soon as the storms pass.",
           "Ana: Sounds lovely. I started a pottery class on Tuesdays.",
           "Ben: Nice, what are you making?",
           "Ana: Mostly bowls so far, a bit wonky."]


def _find(db: Any, text: str) -> Any:
    found = [h.memory for h in db.recall(text, namespace=NS, k=50).hits if h.memory.text == text]
    assert found, text
    return found[0]


def _small_pool(store: str, tmp_path: Any, embedder: Any, request: Any) -> Any:
    """A database on ``store`` drawing three candidates per retriever: a namespace much
    larger than the pool, in small."""
    target: Any = tmp_path / "chat.db"
    if store == "postgres":
        from tests.conftest import _pg_urls, _postgres
        _postgres(tmp_path, embedder, request).close()
        target = _pg_urls[tmp_path]
    return engramdb.open(target, embedder=embedder, config=EngineConfig(recall_candidates=3))


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_session_candidates_keep_grants_and_versions(store, tmp_path, embedder,
                                                    request) -> None:
    # With three candidates per retriever the pool is cut off, so recall also searches the
    # sessions of its best candidates. Another namespace holds a session of the same name,
    # which the reader may not read, and the answer has a newer version.
    with _small_pool(store, tmp_path, embedder, request) as db:
        _load(db, [*OTHER_SESSIONS[:3], SAILING])
        secret = db.remember("Ben: The sailboat's logbook says: sail first to Svalbard.",
                             namespace="private/ben", layer="episodic", session="session_4")
        answer = _find(db, SAILING[3])
        newer = db.update(answer.id, text="Ben: Up the coast to Bodø, once the storms pass.")
        db.admin.create_agent("reader")
        db.admin.grant("reader", "chat/**", ["read"])
        reader = db.as_agent("reader")
        for k in (1, 2, 3):
            result = reader.recall("Where will Ben sail his restored sailboat first?",
                                   namespace="chat/**", k=k)
            seen = {(h.memory.id, h.memory.version) for h in result.hits}
            assert len(seen) == k
            assert (answer.id, answer.version) not in seen
            assert secret.id not in {i for i, _ in seen}
            assert [(i.id, i.version) for i in result.receipt.items] == [
                (h.memory.id, h.memory.version) for h in result.hits]
        # The admin, who may read both, is given the newer version only.
        everything = {(h.memory.id, h.memory.version) for h in db.recall(
            "Where will Ben sail his restored sailboat first?", k=50).hits}
        assert (newer.id, newer.version) in everything and (answer.id, 1) not in everything
