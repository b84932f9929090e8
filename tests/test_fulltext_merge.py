"""The full-text index merged as single writes go (migration 0037, ``merge_fulltext``).

Each write that adds memories adds a level-0 segment to FTS5's index, and every
full-text query (recall's, and each semantic write's candidate search) reads its
words in every segment. FTS5's automerge alone left 12 segments after the 600
writes below; the writer's incremental merge keeps a few. The merge must change
nothing a reader sees: the same rows and scores as an index built in one go, an
index FTS5 checks as sound, and the writer still committing at ``FULL``.
"""

from __future__ import annotations

import random
import sqlite3
from contextlib import closing

import pytest

import engramdb
from engramdb.model import RecallFilter

WORDS = ("river stone ledger harbor copper lantern meadow signal orchard beacon "
         "quarry timber falcon glacier canyon prairie").split()


def _segments(conn) -> int:
    """Segments in FTS5's structure record (id 10): a 4-byte cookie, then varints
    for the level count and the segment count."""
    block = bytes(conn.execute("SELECT block FROM memories_fts_data WHERE id = 10").fetchone()[0])
    values, value, at = [], 0, 4
    while len(values) < 2:
        byte = block[at]
        at += 1
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            values.append(value)
            value = 0
    return values[1]


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    rng = random.Random(11)
    database = engramdb.open(tmp_path_factory.mktemp("merge") / "engram.db", embedder=None)
    for i in range(600):  # one write each, as a LangGraph put or an agent's remember
        database.remember(" ".join(rng.choice(WORDS) for _ in range(6)) + f" note{i}",
                          namespace=f"org/team{i % 5}")
    yield database
    database.close()


def test_single_writes_leave_few_full_text_segments(db):
    writer = db.storage._conn("writer")
    assert _segments(writer) <= 5


def test_the_writer_still_commits_at_full(db):
    writer = db.storage._conn("writer")
    assert writer.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert writer.execute("PRAGMA busy_timeout").fetchone()[0] == 60_000


def test_the_merged_index_is_sound(db):
    writer = db.storage._conn("writer")
    writer.execute("INSERT INTO memories_fts (memories_fts, rank) VALUES ('integrity-check', 1)")


@pytest.mark.parametrize("query", ["river lantern", "falcon glacier canyon", "note17", "stone"])
def test_search_ranks_as_an_index_built_in_one_go(db, tmp_path, query):
    copy = tmp_path / "rebuilt.db"
    db.storage._conn("writer").execute("VACUUM INTO ?", (str(copy),))
    with closing(sqlite3.connect(copy, isolation_level=None)) as conn:
        conn.execute("INSERT INTO memories_fts (memories_fts) VALUES ('rebuild')")
        assert _segments(conn) == 1
    rebuilt = engramdb.open(copy, embedder=None)
    try:
        head = db.storage.head().tx
        assert rebuilt.storage.head().tx == head

        def ranked(database):
            every = database.storage.search_text(query, RecallFilter(as_of=head), 50)
            scoped = database.storage.search_text(
                query, RecallFilter(namespaces=("org/team2",), as_of=head), 10)
            return [(r["id"], s) for r, s in every], [(r["id"], s) for r, s in scoped]

        merged = ranked(db)
        assert merged[0] and merged[1]
        assert merged == ranked(rebuilt)
    finally:
        rebuilt.close()


@pytest.mark.slow
def test_merging_through_writes_updates_and_erasures_keeps_the_index_sound(tmp_path):
    """FTS5's incremental merge with single writes, new text versions and erasures
    (rows deleted from the index) mixed, FTS5's own check every 300 writes: the
    merge's settings keep the index sound on the SQLite this Python has (3.40.1
    here; the merge's comment in storage/sqlite/flush.py says why N stays positive)."""
    rng = random.Random(29)
    db = engramdb.open(tmp_path / "soak.db", embedder=None)
    try:
        writer = db.storage._conn("writer")
        live: list[str] = []
        for i in range(3000):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 30)))
            live.append(db.remember(f"{text} item{i}", namespace=f"org/team{i % 7}",
                                    layer="episodic").id)
            roll = rng.random()
            if roll < 0.1:
                db.update(rng.choice(live), text=f"revised {text}")
            elif roll < 0.15:
                db.forget(id=live.pop(rng.randrange(len(live))), reason="soak")
            if i % 300 == 299:
                writer.execute(
                    "INSERT INTO memories_fts (memories_fts, rank) VALUES ('integrity-check', 1)")
        assert _segments(writer) <= 8
        assert db.verify().ok
    finally:
        db.close()


def test_a_merge_that_fails_leaves_the_write_it_rides_with(tmp_path):
    """The merge step runs inside a write's transaction: its error undoes the merge
    alone (its savepoint), and the write's own rows still commit."""
    from engramdb.storage.sqlite.flush import merge_fulltext

    path = tmp_path / "plain.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")  # and no memories_fts to merge
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO notes VALUES ('kept')")
        merge_fulltext(conn)
        assert conn.in_transaction
        conn.execute("COMMIT")
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT text FROM notes").fetchall() == [("kept",)]
