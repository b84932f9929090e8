"""A batch's full-text fill runs beside the planning of its next memories (SQLite).

``WriterConnection.send`` runs one statement on a helper thread; every other use
of the connection waits for it and raises what it raised. What a user must never
notice: a memory of a batch missing from full text, statements of a transaction
out of order, or a failure that leaves part of a batch behind.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import engramdb
from engramdb.errors import StorageError
from engramdb.model import RecallFilter
from engramdb.storage.sqlite.sender import WriterConnection


def _batch(n: int, tag: str) -> list[dict[str, object]]:
    return [{"text": f"Meter {tag}{i} read {i * 7} kWh", "namespace": "grid/a",
             "layer": "episodic"} for i in range(n)]


def test_every_memory_of_a_large_batch_is_found_by_its_words(tmp_path: Path) -> None:
    db = engramdb.open(tmp_path / "s.db", embedder=None)
    try:
        # 2,000 memories: four runs of 500, three of them indexed beside planning.
        made = db.remember_many(_batch(2000, "m"))
        head = db.storage.head().tx
        for i in range(0, 2000, 7):
            found = db.storage.search_text(f"m{i}", RecallFilter(as_of=head), 5)
            assert [r["id"] for r, _ in found] == [made[i].id]
        assert db.verify().ok
    finally:
        db.close()


def test_a_failed_fill_undoes_the_whole_batch(tmp_path: Path) -> None:
    path = tmp_path / "f.db"
    db = engramdb.open(path, embedder=None)
    try:
        db.remember_many(_batch(10, "before"))
        # A real failure inside the fill: FTS5 writes each document's size row as it
        # indexes it; refuse the 300th row of the batch (in its first run of 500).
        con = sqlite3.connect(path)
        con.execute("CREATE TRIGGER refuse BEFORE INSERT ON memories_fts_docsize "
                    "WHEN NEW.id > 310 BEGIN SELECT RAISE(ABORT, 'refused'); END")
        con.commit()
        con.close()
        seq = db.storage.head().seq
        with pytest.raises(StorageError):
            db.remember_many(_batch(1500, "x"))
        assert db.storage.head().seq == seq  # nothing of the batch was logged
        assert len(db.recent(namespace="grid/**", k=1000)) == 10
        assert db.verify().ok
        con = sqlite3.connect(path)
        con.execute("DROP TRIGGER refuse")
        con.commit()
        con.close()
        made = db.remember_many(_batch(1500, "x"))  # the same batch, now whole
        assert [db.get(m.id) for m in made] == made
        assert len(db.recent(namespace="grid/**", k=1000)) == 1000
        assert db.verify().ok
    finally:
        db.close()


def test_statements_after_a_sent_one_wait_for_it_and_see_its_rows(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "w.db", isolation_level=None, factory=WriterConnection,
                           check_same_thread=False)
    conn.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)")
    conn.execute("BEGIN")
    big = "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < ?) " \
          "INSERT INTO t SELECT n FROM c"
    conn.send(big, [200_000])
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 200_000
    conn.send("INSERT INTO t VALUES (1)", [])  # a duplicate key: fails on the helper
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("SELECT 1")
    conn.execute("SELECT 1")  # raised once; the connection goes on
    conn.send("INSERT INTO t VALUES (1)", [])
    conn.rollback()  # a rollback waits, and does not raise the failure it undoes
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 0
    conn.close()
