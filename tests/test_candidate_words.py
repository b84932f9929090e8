"""The contradiction check's full-text candidate search ranks by the new text's rarest words.

On SQLite, in a database of 2,000 memories or more, a semantic write's candidate
search (no embedder: by words) asks FTS5 for at most ``CANDIDATE_WORDS`` of the
new text's words, the rarest found in some row, instead of all of them: FTS5's
cost grows with every word it looks up in every index segment (issue 15). What a
user can notice must not change: a namespace crowded with memories that share the
statements' common words flags the contradictions a namespace holding only the
statements flags, including a two-word value ("a socket" / "a symbolic link"),
whose differing words are the new text's rarest.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

import engramdb
from engramdb.storage.sqlite import SQLiteStorage
from engramdb.storage.sqlite.fulltext import CANDIDATE_WORDS

from .test_write_batching import _pairs

# (committed, contradicting) pairs, each flagged by the heuristic judge.
PAIRS = [
    ("Whether this path is a socket", "Whether this path is a symbolic link"),
    ("The deployment window is Friday", "The deployment window is Monday"),
    ("The office opens at 9am", "The office opens at 10am"),
    ("The loan application is approved", "The loan application is not approved"),
    ("Ticket INC-7 is open", "Ticket INC-7 is closed"),
    ("The staging cluster has 12 nodes", "The staging cluster has 16 nodes"),
]
FILLER = 2_400  # crowding memories: the database passes the 2,000 rows of word pruning


def _vocabulary() -> list[str]:
    words = {w.lower() for a, b in PAIRS for w in f"{a} {b}".split()}
    return sorted(words - {"is", "the", "a", "at", "this", "not", "has"})


@pytest.fixture
def crowded(tmp_path: Path) -> Any:
    """A database whose ``big/ops`` namespace holds ``FILLER`` memories, half of them
    with one of the statements' own words (so each word is in ~40 of them: under the
    5% of rows that makes a word too common to look up), ``small/ops`` none."""
    db = engramdb.open(tmp_path / "engram.db", embedder=None)
    try:
        rng = random.Random(5)
        vocab = _vocabulary()
        db.admin.configure_namespace("big/**", detect_free_text=False)
        other = [f"w{j}" for j in range(300)]
        db.remember_many([{"text": f"{rng.choice(vocab if i % 2 else other)} "
                                   f"{rng.choice(other)} entry {i}",
                           "namespace": "big/ops"} for i in range(FILLER)])
        db.admin.configure_namespace("big/**", detect_free_text=True)
        yield db
    finally:
        db.close()


def _write_pairs(db: Any) -> None:
    for ns in ("small/ops", "big/ops"):
        for committed, _ in PAIRS:
            db.remember(committed, namespace=ns)
    for ns in ("small/ops", "big/ops"):
        for _, contradicting in PAIRS:
            db.remember(contradicting, namespace=ns)


def test_a_crowded_namespace_flags_what_an_empty_one_flags(crowded: Any) -> None:
    db = crowded
    _write_pairs(db)
    expected = {frozenset(p) for p in PAIRS}
    assert _pairs(db, "small/ops") == expected
    assert _pairs(db, "big/ops") == expected
    assert db.verify().ok


def _asked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The MATCH expressions of the full-text queries run from now on (spied on)."""
    asked: list[str] = []
    run = SQLiteStorage._run

    def spy(method: Any, sql: str, params: Any) -> Any:
        if "memories_fts MATCH ?" in sql:
            asked.append(params[0])
        return run(method, sql, params)

    monkeypatch.setattr(SQLiteStorage, "_run", staticmethod(spy))
    return asked


def test_the_candidate_search_looks_up_few_words(crowded: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The search a write makes asks FTS5 for at most ``CANDIDATE_WORDS`` words (the
    saving), while recall's search keeps every word that is not common."""
    db = crowded
    asked = _asked(monkeypatch)
    text = "Whether the staging office path window is a symbolic socket"
    db.remember(text, namespace="big/ops")
    written = asked[-1]
    db.recall(text, namespace="big/ops")
    recalled = asked[-1]
    words = written.split(" AND ")[0].count('"') // 2
    assert words == CANDIDATE_WORDS
    assert recalled.split(" AND ")[0].count('"') // 2 > words


def test_a_word_in_no_memory_is_not_looked_up(crowded: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A word no memory holds matches nothing, so it is left out of the query; one
    written a moment ago (its count of 0 was read, never kept) is looked up."""
    db = crowded
    asked = _asked(monkeypatch)
    db.remember("The zyxwvut gateway is open", namespace="small/ops")
    assert asked and "zyxwvut" not in asked[-1], asked
    db.remember("The zyxwvut gateway is closed", namespace="small/ops")
    assert "zyxwvut" in asked[-1]
    assert frozenset({"The zyxwvut gateway is open",
                      "The zyxwvut gateway is closed"}) in _pairs(db, "small/ops")
