"""A query word's tokens, as the in-process full-text index asks FTS5 for them.

A word of ASCII letters and digits is taken to be one token, its stem (no second
round trip to the tokenizer); any other word is tokenized by FTS5 itself. Both must
give exactly what FTS5's tokenizer gives for the word (the slow path, asked here for
every word), or the index would rank another phrase than FTS5 does.
"""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engramdb
from engramdb.storage.sqlite.fulltext import FullText
from engramdb.storage.sqlite.query_tokens import QueryWords, _ordered_tokens

_WORDS = st.lists(st.sampled_from(
    ["running", "runs", "ran", "caresses", "ponies", "relational", "x", "ab", "a1b2",
     "2024", "007", "max_len", "_private", "visit_", "CamelCase", "naïve", "café", "straße",
     "ΑΘΗΝΑ", "日本語", "e2e", "generalizations", "oscillators", "happy"])
    | st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_éü", min_size=1, max_size=12),
    min_size=1, max_size=6, unique=True)


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    path = tmp_path_factory.mktemp("tokens") / "t.db"
    engramdb.open(path, embedder=None).close()  # the schema: memories_fts and its tables
    c = sqlite3.connect(path, isolation_level=None)
    yield c
    c.close()


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60)
@given(words=_WORDS)
def test_query_words_are_tokenized_as_fts5_tokenizes_them(conn, words):
    words = [w.lower() for w in words]
    fts = FullText()
    fts.stems(conn, words)  # as the word pruning does first (and caches)
    assert QueryWords().tokens(conn, fts, words) == _ordered_tokens(conn, fts, words)
    # and with nothing asked before (a one-word query is not pruned)
    assert QueryWords().tokens(conn, FullText(), words) == _ordered_tokens(conn, fts, words)
