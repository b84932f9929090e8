"""The ranking's words stored with each memory (migration 0020) change no score.

Recall ranks its candidates by BM25 over the candidates' words. Since schema 20 the
words are split once at write time and stored in the row (``memories.words``); a
row without them (written before the migration on PostgreSQL, or whose text changed
in place) is ranked from its text. Both must give the same ranking to the digit:
checked on generated text of any alphabet, and end to end on a real SQLite file
whose stored words are removed behind the engine's back, then refilled by the
migration.
"""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engramdb
from engramdb.retrieval.hybrid import _words
from engramdb.storage.words import WORD, stored_words

# Case, accents, digits, underscores, other scripts, punctuation, stopwords, repeats.
_ALPHABET = st.sampled_from([*"aAbBeEsS_9 ßİıǅΣσς日本.,'-\n\t", " the ", " Paints ", " painted ",
                             " ÉCOLE ", " über ", " Straße ", " ΟΔΟΣ "])
texts = st.lists(_ALPHABET, max_size=40).map("".join) | st.text(max_size=60)


@settings(max_examples=400, deadline=None)
@given(text=texts)
def test_stored_words_count_exactly_as_the_text_does(text: str) -> None:
    stored = stored_words(text)
    assert stored.split() == WORD.findall(text.lower())
    assert _words(text, stored) == _words(text)


@settings(max_examples=400, deadline=None)
@given(text=st.text(st.characters(max_codepoint=127), max_size=80))
def test_ascii_text_is_split_as_the_regular_expression_splits_it(text: str) -> None:
    # ASCII text takes a shorter path (a translation table, then split): every
    # punctuation mark, control character and space must part words as \W does.
    assert stored_words(text).split() == WORD.findall(text.lower())
    assert stored_words(text) == " ".join(WORD.findall(text.lower()))


CORPUS = [
    "Ana painted the lake at dawn; Ana paints every Sunday",
    "Ben walked by the lake with Ana last week",
    "ÉCOLE Straße: the Painting class moved to Thursday",
    "painting painting PAINTING, and more paintings",
    "Ana: I moved to Oslo in 2021 and started painting again",
    "Ben: when did you start painting? I sing in a choir",
    "the the the a an of to",
    "Hiking trips: Ana hikes, Ben hiked, they both like hiking near lakes",
    "日本 trip planned for July 2022 with the painting class",
]
QUERIES = ["when did Ana start painting", "lake walks with Ben", "painting class Thursday",
           "hiking near the lakes", "日本 trip", "Oslo 2021"]


def _recalls(db: engramdb.Database, tx: int) -> list[list[tuple[str, float, dict[str, float]]]]:
    # At one transaction: recency is measured from its time, not from a moving head.
    return [[(h.memory.id, h.score, h.why) for h in db.recall(q, k=10, as_of=tx).hits]
            for q in QUERIES]


def _same(got: list[list[tuple[str, float, dict[str, float]]]],
          want: list[list[tuple[str, float, dict[str, float]]]], exact: bool) -> None:
    if exact:
        assert got == want
        return
    # With vectors, reopening rebuilds the in-process vector index, and the matrix
    # product's rounding may move a cosine in its 7th digit: the words' part (which
    # memories, in which order, their lexical scores) is still exact.
    assert [[(i, w["lexical"]) for i, _, w in hits] for hits in got] == \
        [[(i, w["lexical"]) for i, _, w in hits] for hits in want]
    assert [s for hits in got for _, s, _ in hits] == pytest.approx(
        [s for hits in want for _, s, _ in hits], rel=1e-6)


def _words_column(path) -> dict[str, str | None]:
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT text, words FROM memories"))


@pytest.mark.parametrize("vectors", [False, True], ids=["text-only", "hybrid"])
def test_recall_from_stored_words_equals_recall_from_text(tmp_path, embedder, vectors) -> None:
    path = tmp_path / "engram.db"
    emb = embedder if vectors else None
    db = engramdb.open(path, embedder=emb)
    db.remember_many([{"text": t, "namespace": "home", "session": "s1" if i % 2 else None}
                      for i, t in enumerate(CORPUS)])
    first = db.recall(QUERIES[0], k=3).hits[0]
    tx = db.update(first.memory.id, text="Ana painted Oslo's lake in May 2022",
                   expected_version=first.memory.version).tx_from
    stored = _recalls(db, tx)
    db.close()
    assert all(h for h in stored)  # every query finds something
    words = _words_column(path)
    assert words and all(w == stored_words(t) for t, w in words.items())

    # Rows without stored words (as written before schema 20) rank from their text.
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE memories SET words = NULL")
    db = engramdb.open(path, embedder=emb)
    _same(_recalls(db, tx), stored, exact=not vectors)
    db.close()

    # The migration fills the words of rows that predate it.
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE memories DROP COLUMN words")
        conn.execute("DELETE FROM schema_migrations WHERE version = 20")
    db = engramdb.open(path, embedder=emb)
    _same(_recalls(db, tx), stored, exact=not vectors)
    db.close()
    assert _words_column(path) == words


@pytest.mark.postgres
def test_postgres_stores_the_words_of_new_rows(pg_url, embedder) -> None:
    import psycopg

    db = engramdb.open(pg_url, embedder=embedder)
    try:
        mems = db.remember_many([{"text": t, "namespace": "home"} for t in CORPUS])
        db.update(mems[0].id, text="Ana painted Oslo's lake", expected_version=1)
        assert db.recall(QUERIES[0], k=3).hits
    finally:
        db.close()
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT text, words FROM memories").fetchall()
    assert len(rows) == len(CORPUS) + 1
    assert all(words == stored_words(text) for text, words in rows)
