"""A write's candidate search takes its rank order in Python and finds what SQLite's sort found.

On SQLite, when the new text's kept words are in few rows, a semantic write's
contradiction check asks FTS5 for every in-scope match and its BM25 score with
no ``ORDER BY``, and sorts them here (BM25, then row id) instead of SQLite's
sorter (issue 15, the LangGraph store's ``put``). What a user can notice must
not change: the same candidates in the same order, ties included (identical
texts score alike and are told apart by row id). The reference is the same
search with that shortcut off (every search sorted by SQLite), in the same write
transaction of a real file. The word lists' shortcuts (an ASCII text lower-cased
whole, stems known or computed with no round trip) are checked against the word
by word and cold-cache results.
"""

from __future__ import annotations

import random
import re
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engramdb
from engramdb.model import RecallFilter
from engramdb.storage.sqlite import candidates
from engramdb.storage.sqlite.fulltext import STOPWORDS, FullText, content_words

SPACES = [f"ops/{i}" for i in range(6)]
WORDS = [f"w{i}" for i in range(40)] + ["deploy", "window", "friday", "monday", "approved",
                                        "loan", "socket", "link", "office", "opens"]


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """3,000 memories over six namespaces (each under half the rows, so a search is
    scoped inside FTS5), many of them word for word the same (equal scores)."""
    db = engramdb.open(tmp_path_factory.mktemp("order") / "e.db", embedder=None)
    try:
        rng = random.Random(7)
        texts = [" ".join(rng.sample(WORDS, rng.randint(2, 6))) for _ in range(400)]
        db.admin.configure_namespace("ops/**", detect_free_text=False)
        db.remember_many([{"text": rng.choice(texts), "namespace": rng.choice(SPACES)}
                          for _ in range(3_000)])
        yield db
    finally:
        db.close()


def _search(db: Any, query: str, space: str, limit: int) -> list[str]:
    storage = db.storage

    class Rollback(Exception):
        pass

    flt = RecallFilter(namespaces=(space,), layers=("semantic",), statuses=("active",))
    got: list[str] = []
    with pytest.raises(Rollback), storage.write("test") as w:
        got = [i for i, _ in storage.search_text_current(w, query, flt, limit, other_than="")]
        raise Rollback
    return got


def test_rank_order_taken_here_is_sqlites(crowded: Any, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    rng = random.Random(11)
    unsorted: list[str] = []
    conn = crowded.storage._conn("writer")
    conn.set_trace_callback(lambda sql: unsorted.append(sql)
                            if "bm25(" in sql and "ORDER BY" not in sql else None)
    try:
        for _ in range(150):
            query = " ".join(rng.sample(WORDS, rng.randint(2, 7)))
            space, limit = rng.choice(SPACES), rng.randint(1, 12)
            mine = _search(crowded, query, space, limit)
            with monkeypatch.context() as m:
                m.setattr(candidates, "SORT_HERE", -1)  # every search sorted by SQLite
                sqlites = _search(crowded, query, space, limit)
            assert mine == sqlites, query
    finally:
        conn.set_trace_callback(None)
    assert len(unsorted) >= 100  # the shortcut was taken, not only the reference


def _words_one_by_one(text: str) -> list[str]:
    """content_words as it was: each word lower-cased on its own."""
    words = [w.lower() for w in re.findall(r"\w+", text)]
    content = [w for w in words if w not in STOPWORDS] or words
    return list(dict.fromkeys(content))[:32]


@settings(max_examples=1_000, deadline=None)
@given(st.lists(st.sampled_from([*"aAbZz09_ .,'-\t", "The", "IS", "and", "\u212a", "\u0130",
                                 "\u00df", "\u00e9"]), max_size=40).map("".join))
def test_content_words_are_lower_cased_as_word_by_word(text: str) -> None:
    assert content_words(text) == _words_one_by_one(text)


_WORD = st.one_of(st.from_regex(r"[a-z0-9]{1,12}", fullmatch=True),
                  st.from_regex(r"[a-z0-9_]{1,12}", fullmatch=True),
                  st.sampled_from(["caf\u00e9", "na\u00efve", "stra\u00dfe", "x\u00b2"]))


@pytest.fixture(scope="module")
def conn() -> Iterator[sqlite3.Connection]:
    c = sqlite3.connect(":memory:", isolation_level=None)
    yield c
    c.close()


@settings(max_examples=300, deadline=None)
@given(first=st.lists(_WORD, max_size=12), then=st.lists(_WORD, min_size=1, max_size=12))
def test_stems_with_a_warm_cache_are_a_cold_caches(conn: sqlite3.Connection, first: list[str],
                                                    then: list[str]) -> None:
    """Stems known from an earlier call come back as a fresh FullText computes them, in
    the order the document counts are asked in: the words known or stemmed in Python
    first, then those FTS5's tokenizer was asked for, each group in the text's order."""
    warm = FullText()
    warm.stems(conn, first)
    got = warm.stems(conn, then)
    assert got == FullText().stems(conn, then)
    words = list(dict.fromkeys(then))
    here = [w for w in words if w in first or (w.isascii() and w.isalnum())]
    assert list(got) == here + [w for w in words if w not in here]
