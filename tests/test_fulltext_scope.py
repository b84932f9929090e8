"""Full text on SQLite with the namespace inside the FTS5 query (migration 0013).

A scoped query must rank exactly as ranking everything and keeping the scope's
rows would, and it must still find matches that rank far below other
namespaces' matches (the old "best 200, then filter" plan could miss them).
"""

from __future__ import annotations

import random

import pytest

import engramdb
from engramdb.model import RecallFilter
from engramdb.storage.sqlite.fulltext import scope_token

WORDS = ("river stone ledger harbor copper lantern meadow signal orchard beacon "
         "quarry timber falcon glacier canyon prairie").split()
NAMESPACES = [f"org/team{i}" for i in range(10)]


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    rng = random.Random(5)
    database = engramdb.open(tmp_path_factory.mktemp("fts") / "engram.db", embedder=None)
    rows = [{"text": " ".join(rng.choice(WORDS) for _ in range(8)),
             "namespace": NAMESPACES[i % 10]} for i in range(3000)]
    # One namespace's only mention of "zephyr" sits among 400 stronger matches elsewhere.
    rows += [{"text": "zephyr zephyr zephyr zephyr", "namespace": NAMESPACES[1]}
             for _ in range(400)]
    rows.append({"text": "a quiet zephyr over the long river stone ledger harbor",
                 "namespace": NAMESPACES[7]})
    for i in range(0, len(rows), 1000):
        database.remember_many(rows[i:i + 1000])
    yield database
    database.close()


@pytest.mark.parametrize("query", ["river lantern", "falcon glacier canyon", "zephyr", "stone"])
@pytest.mark.parametrize("scope", [(NAMESPACES[7],), (NAMESPACES[2], NAMESPACES[3])])
def test_scoped_full_text_ranks_like_filtering_the_whole_ranking(db, query, scope):
    head = db.storage.head().tx
    scoped = db.storage.search_text(query, RecallFilter(namespaces=scope, as_of=head), 10)
    everything = db.storage.search_text(query, RecallFilter(as_of=head), 100_000)
    want = [s for r, s in everything if r["namespace"] in scope][:10]
    assert {r["namespace"] for r, _ in scoped} <= set(scope)
    assert [s for _, s in scoped] == pytest.approx(want)


def test_a_weak_match_in_a_small_scope_is_found(db):
    result = db.recall("zephyr", namespace=NAMESPACES[7], k=5)
    assert [h.memory.text for h in result.hits] == [
        "a quiet zephyr over the long river stone ledger harbor"]



def test_a_word_spelling_a_namespace_token_finds_only_texts_that_say_it(tmp_path):
    """Every row's namespace is a token of its own FTS5 column. A query word equal to
    that token (a user may type anything) must match texts holding the word, never a
    whole namespace: queries with such a word keep the column restriction."""
    database = engramdb.open(tmp_path / "engram.db", embedder=None)
    try:
        token = scope_token(NAMESPACES[3])
        database.remember_many([{"text": f"harbor note {i}", "namespace": NAMESPACES[3]}
                                for i in range(30)])
        database.remember(f"the ledger mentions {token} once", namespace=NAMESPACES[4])
        for query in (token, f"{token} harbor", f"lantern {token}"):
            texts = [h.memory.text for h in database.recall(query, k=50).hits]
            if "harbor" in query:
                assert len(texts) == 31
            else:
                assert texts == [f"the ledger mentions {token} once"]
            scoped = database.recall(query, namespace=NAMESPACES[3], k=50).hits
            assert all("harbor" in h.memory.text for h in scoped)
            assert len(scoped) == (30 if "harbor" in query else 0)
    finally:
        database.close()


@pytest.mark.parametrize("query", ["river lantern", "falcon glacier canyon", "zephyr",
                                   "stone quarry 10 timber"])
def test_rows_and_scores_without_the_column_restriction_equal_those_with_it(db, query):
    """The MATCH expression drops ``text :`` when no word can be a namespace token;
    FTS5 then returns the same rows with the same bm25 scores as with it."""
    conn = db.storage._conn("reader")
    total = conn.execute("SELECT MAX(row_id) FROM memories").fetchone()[0]
    match = db.storage._fulltext().match(conn, query, total)
    restricted = match if match.startswith("text :") else f"text : {match}"
    sql = ("SELECT rowid, bm25(memories_fts, 1.0, 0.0) AS r FROM memories_fts "
           "WHERE memories_fts MATCH ? ORDER BY r, rowid")
    for scope in ("", f" AND scope : ({scope_token(NAMESPACES[7])})"):
        assert (conn.execute(sql, [match + scope]).fetchall()
                == conn.execute(sql, [restricted + scope]).fetchall())


def test_detection_keeps_working_after_a_refused_write_rolls_back(tmp_path):
    """A write's free-text candidate search reads through the writer, inside the write.
    A write the namespace's policy refuses rolls back everything it did there, and the
    next writes through the same handle are still checked (and refused)."""
    from engramdb.errors import ContradictionError

    path = tmp_path / "refuse.db"
    spaces = ["ops/a", "ops/b", "ops/c"]
    other = engramdb.open(path, embedder=None)  # rivals from another handle: this handle's
    rivals = [other.remember("The deploy window for service 7 is 14:00", namespace=ns)
              for ns in spaces]  # first candidate search is inside the refused write
    other.close()
    db = engramdb.open(path, embedder=None)
    try:
        db.admin.configure_namespace("ops/**", default_policy="reject")
        for ns in spaces:  # each namespace new to this handle's full-text statistics
            with pytest.raises(ContradictionError):
                db.remember("The deploy window for service 7 is 16:00", namespace=ns)
        kept = db.recall("deploy window service 7", namespace="ops/**", k=10).hits
        assert sorted(h.memory.id for h in kept) == sorted(m.id for m in rivals)
    finally:
        db.close()
