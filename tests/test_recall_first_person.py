"""A question about someone finds what they said themselves (issue 12, branch ``quality3``).

People's own memories speak of them as "I"; a question about them names them. Recall
embeds a query that names a speaker of its candidates as that speaker would ask it
("What does Ana do to relax?" -> "What does I do to relax?") and searches with that
vector (:mod:`engramdb.retrieval.first_person`). Real SQLite files (and the real
PostgreSQL), the real embedder. Each database draws three candidates per retriever: a
namespace much larger than the pool, in small, where the vector search decides what the
ranking ever sees.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import engramdb
from engramdb.engine.rows import EngineConfig
from engramdb.retrieval.first_person import first_person, speakers
from engramdb.retrieval.hybrid import ContextWeights, rank_hybrid
from tests.test_recall_quality import OTHER_SESSIONS

NS = "chat/ana-ben"
QUERY = "What does Ana do to relax?"
ANSWER = "Ana: Sundays I go out on the lake in my kayak, the water makes me forget everything."
# Ben talks to Ana by name about stress and unwinding; only Ana's own turn says what she does,
# in a session where Ben names her only once, so the query as asked does not reach it there.
SESSIONS = [
    *OTHER_SESSIONS,
    ["Ben: Ana, you looked so stressed at work this week.",
     "Ana: It was a crazy week, the deadline nearly broke me.",
     "Ben: Ana, you should take some time off to unwind, honestly."],
    ["Ben: Hi Ana! How did the weekend go?",
     ANSWER,
     "Ben: That sounds peaceful.",
     "Ana: It is. Did you finish the bookshelf?"],
    ["Ben: Ana, did you hear the concert was cancelled?",
     "Ana: No! I was looking forward to it.",
     "Ben: Ana, they said it moves to next month."],
]


def _load(db: Any, sessions: list[list[str]] = SESSIONS) -> None:
    start = datetime(2024, 3, 1, 18, 0, tzinfo=UTC)
    db.remember_many([
        {"text": text, "namespace": NS, "layer": "episodic", "session": f"session_{i}",
         "valid_from": start + timedelta(days=7 * i)}
        for i, turns in enumerate(sessions, start=1) for text in turns])


def _open(store: str, tmp_path: Any, embedder: Any, request: Any, **config: Any) -> Any:
    target: Any = tmp_path / "chat.db"
    if store == "postgres":
        from tests.conftest import _pg_urls, _postgres
        _postgres(tmp_path, embedder, request).close()
        target = _pg_urls[tmp_path]
    return engramdb.open(target, embedder=embedder,
                         config=EngineConfig(recall_candidates=3, **config))


def test_what_the_named_person_said_about_themselves_is_found(tmp_path, embedder,
                                                              request) -> None:
    with _open("sqlite", tmp_path, embedder, request) as db:
        _load(db)
        hits = [h.memory.text for h in db.recall(QUERY, namespace=NS, k=3).hits]
        assert ANSWER in hits, hits
    # The same database searched with the query as asked: Ben's turns that name Ana fill
    # the vector candidates, and her own words never reach the ranking.
    with engramdb.open(tmp_path / "chat.db", embedder=embedder, config=EngineConfig(
            recall_candidates=3, recall_first_person=False)) as db:
        hits = [h.memory.text for h in db.recall(QUERY, namespace=NS, k=3).hits]
        assert ANSWER not in hits, hits


class _Counting:
    """The real embedder, counting the texts it is asked to embed."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.texts = inner, 0

    @property
    def name(self) -> str:
        return str(self.inner.name)

    @property
    def dimension(self) -> int:
        return int(self.inner.dimension)

    def embed(self, texts: Any) -> Any:
        self.texts += len(texts)
        return self.inner.embed(texts)


def test_a_query_embedding_given_by_the_caller_is_searched_as_given(tmp_path, embedder,
                                                                    request) -> None:
    # ``query_embedding`` means the caller embedded the query (a client embedding on its
    # own hardware, a benchmark excluding the model's time): recall runs no model, even
    # for a query naming a speaker, and searches with that vector as it is.
    counting = _Counting(embedder)
    with _open("sqlite", tmp_path, counting, request) as db:
        _load(db)
        assert ANSWER in {h.memory.text for h in db.recall(QUERY, namespace=NS, k=3).hits}
        given_vector = embedder.embed([QUERY])[0]
        before = counting.texts
        given = db.recall(QUERY, namespace=NS, k=3, query_embedding=given_vector)
        assert counting.texts == before
    with engramdb.open(tmp_path / "chat.db", embedder=embedder, config=EngineConfig(
            recall_candidates=3, recall_first_person=False)) as plain:
        as_is = plain.recall(QUERY, namespace=NS, k=3)
    assert [h.memory.id for h in given.hits] == [h.memory.id for h in as_is.hits]


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_first_person_search_keeps_grants_versions_and_retractions(store, tmp_path, embedder,
                                                                   request) -> None:
    with _open(store, tmp_path, embedder, request) as db:
        _load(db)
        # Ana's own words, closer still to the first-person query, where the reader may not
        # read; an answer with a newer version; and a retracted turn of hers.
        secret = db.remember("Ana: To relax I kayak on the lake every Sunday, alone.",
                             namespace="private/ana", layer="episodic", session="session_7")
        old = next(h.memory for h in db.recall(QUERY, namespace=NS, k=3).hits
                   if h.memory.text == ANSWER)
        newer = db.update(old.id, text="Ana: Sundays I paddle my kayak on the lake, it "
                                       "makes me forget everything.")
        gone = db.remember("Ana: To relax I paint by the lake on Sundays.", namespace=NS,
                           layer="episodic", session="session_7")
        db.retract(gone.id, reason="said by mistake")
        db.admin.create_agent("reader")
        db.admin.grant("reader", "chat/**", ["read"])
        reader = db.as_agent("reader")
        for k in (1, 2, 3):
            result = reader.recall(QUERY, namespace="chat/**", k=k)
            seen = {(h.memory.id, h.memory.version) for h in result.hits}
            assert len(seen) == k
            ids = {i for i, _ in seen}
            assert secret.id not in ids and gone.id not in ids
            assert (old.id, old.version) not in seen
            assert [(i.id, i.version) for i in result.receipt.items] == [
                (h.memory.id, h.memory.version) for h in result.hits]
        # The admin, who may read everything, is given Ana's private words too.
        assert secret.id in {h.memory.id for h in db.recall(QUERY, k=3).hits}
        assert (newer.id, newer.version) in {
            (h.memory.id, h.memory.version)
            for h in reader.recall(QUERY, namespace="chat/**", k=3).hits}


def test_only_the_speakers_named_become_the_first_person() -> None:
    rows = [{"text": "Ana Lima: hi"}, {"text": "Ben: hello"}, {"text": "no speaker here"},
            {"text": "hi", "metadata": {"speaker": "Cleo"}}]
    names = speakers(rows)
    assert first_person("What did Ana Lima's brother give Ben?", names) == (
        "What did my brother give I?")
    assert first_person("Where did cleo go?", names) == "Where did I go?"
    # Half a name is not the speaker; a query naming nobody is left alone.
    assert first_person("What did Ana paint?", names) is None
    assert first_person("What is the weather in Rome?", names) is None
    assert first_person("What did Benjamin say?", names) is None


NOW = int(datetime(2024, 6, 1, tzinfo=UTC).timestamp() * 1_000_000)


def test_a_long_conversation_lifts_the_turns_near_its_match_not_its_far_end() -> None:
    # One long session: its first turn matches, the turns after it are small talk. Two
    # alike turns, one 3 turns after the match and one 18 turns after it (newer), share
    # no word with the query. The near one is what the match was about; with the context
    # spread over the whole session, the far one would win as the newer of two equals.
    day = 86_400 * 1_000_000
    turns = ["Ana: I repaired the old sailboat's mast with a new carbon spar."] + [
        f"Ben: Small talk number {i} about the weather." for i in range(1, 20)]
    turns[3] = turns[18] = "Ben: Sounds like hard work."
    rows = [{"id": f"m{i:04d}", "version": 1, "text": t, "namespace": "chat",
             "session": "long", "valid_from": None, "recorded_at": NOW - (30 - i) * day,
             "importance": 0.0, "metadata": {}} for i, t in enumerate(turns)]
    text_hits = [(rows[0], 9.0)]
    vector_hits = [(rows[0], 0.8), *((r, 0.1) for r in rows[1:])]

    def order(context: ContextWeights | None) -> list[str]:
        ranked = rank_hybrid("How did Ana repair the sailboat's mast?", text_hits, vector_hits,
                             now_micros=NOW, k=len(rows), context=context)
        return [s.row["id"] for s in ranked]

    near, far = "m0003", "m0018"
    ranked = order(None)
    assert ranked.index(near) < ranked.index(far), ranked
    whole = order(ContextWeights(session_window=0))
    assert whole.index(far) < whole.index(near), whole


class _Recording:
    """The real embedder, noting every text it is asked to embed."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.texts: list[str] = []

    def embed(self, texts: Any) -> Any:
        self.texts += list(texts)
        return self._inner.embed(texts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_speakers_one_reader_saw_never_shape_another_readers_recall(tmp_path, embedder) -> None:
    # Recall remembers the speakers among a reader's candidates to embed its guess of the
    # first-person query with the query. What one reader's candidates held must not change
    # what recall does for another, not even the extra embedding: that would tell a reader
    # that someone it cannot read speaks in the database.
    recording = _Recording(embedder)
    with engramdb.open(tmp_path / "chat.db", embedder=recording,
                       config=EngineConfig(recall_candidates=3)) as db:
        _load(db)
        db.remember("Ben: The bookshelf is finished at last.", namespace="chat/other",
                    layer="episodic")
        db.admin.create_agent("outsider")
        db.admin.grant("outsider", "chat/other", ["read"])
        db.recall(QUERY, namespace=NS, k=3)  # the admin's candidates: Ana speaks
        recording.texts.clear()
        db.as_agent("outsider").recall("What does Ana do on Sundays?", namespace="chat/other",
                                       k=1)
        assert recording.texts == ["What does Ana do on Sundays?"]
        # The admin, who has seen Ana speak, embeds its guess together with the query.
        recording.texts.clear()
        db.recall("What does Ana do on Saturdays?", namespace=NS, k=1)
        assert recording.texts[:2] == ["What does Ana do on Saturdays?",
                                       "What does I do on Saturdays?"]
