"""SQLite schema 39: three b-trees fewer for each memory written, every read still indexed.

``events_recorded_at`` is gone (a transaction's time is its last event's, found through
``events_tx``); ``memories_row_tx`` holds only rows changed after the transaction that
wrote them (the rest are found through ``memories_tx``); ``memories_current`` and
``memories_namespace`` are one index on (namespace, layer, tx_to). The readers that used
them must answer as before, through an index, on a new file and on one that migrates.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

import engramdb
from engramdb.storage.sqlite.dialect import changed_since

_OLD_INDEXES = (
    "DROP INDEX memories_row_tx",
    "CREATE INDEX memories_row_tx ON memories (row_tx)",
    "CREATE INDEX events_recorded_at ON events (recorded_at)",
    "DROP INDEX memories_namespace",
    "CREATE INDEX memories_namespace ON memories (namespace)",
    "CREATE INDEX memories_current ON memories (namespace, layer) WHERE tx_to IS NULL",
)


def _history(db: engramdb.Database) -> dict[str, str]:
    """New memories, a new version, a retraction, an erasure, in three namespaces."""
    a = db.remember("The boiler was serviced on Monday", namespace="house/a")
    b = db.remember("The roof was checked in April", namespace="house/b", layer="semantic")
    db.remember_many([{"text": f"Meter {i} read {i * 7} kWh", "namespace": "grid/a"}
                      for i in range(30)])
    c = db.remember("Ana's flat is on the third floor", namespace="people",
                    subject="user:ana")
    db.update(a.id, text="The boiler was serviced on Tuesday", expected_version=a.version)
    db.retract(b.id, reason="wrong roof")
    db.remember("The garden gate squeaks", namespace="house/a")
    db.forget(subject="user:ana", reason="asked to be forgotten")
    db.remember("The gutter needs cleaning", namespace="house/b", layer="semantic")
    return {"a": a.id, "b": b.id, "c": c.id}


def _indexes(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as conn:
        return dict(conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
            "AND tbl_name IN ('memories', 'events')"))


def _plan(conn: sqlite3.Connection, sql: str, params: list[int]) -> str:
    return " | ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params))


def _answers(db: engramdb.Database, ids: dict[str, str], tx: int) -> dict[str, object]:
    return {
        "namespaces": db.namespaces(),
        "recall": [(h.memory.id, h.memory.version)
                   for h in db.recall("boiler roof gate gutter", k=10).hits],
        "house": sorted((m.id, m.version) for m in db.recent(namespace="house/**", k=50)),
        "semantic": sorted((m.id, m.version) for m in db.recent(namespace="house/**", k=50,
                                                                 layers=["semantic"])),
        "history": [(m.version, m.text) for m in db.history(ids["a"])],
        "as_of": [(h.memory.id, h.memory.version)
                  for h in db.recall("boiler", k=5, as_of=tx - 3).hits],
        "times": [db.storage.tx_time(t) for t in range(tx + 1)],
    }


def test_a_new_file_has_the_narrower_indexes(tmp_path: Path) -> None:
    db = engramdb.open(tmp_path / "n.db", embedder=None)
    db.remember("The boiler was serviced on Monday", namespace="house")
    db.close()
    idx = _indexes(tmp_path / "n.db")
    assert "events_recorded_at" not in idx and "memories_current" not in idx
    assert idx["memories_row_tx"].endswith("(row_tx) WHERE row_tx <> tx_from")
    assert idx["memories_namespace"].endswith("(namespace, layer, tx_to)")
    with sqlite3.connect(tmp_path / "n.db") as conn:  # a new memory is not in the partial index
        assert conn.execute("SELECT COUNT(*) FROM memories WHERE row_tx <> tx_from"
                            ).fetchone() == (0,)


def test_rows_changed_since_and_transaction_times_read_as_before(tmp_path: Path) -> None:
    db = engramdb.open(tmp_path / "h.db", embedder=None)
    try:
        _history(db)
        head = db.storage.head()
    finally:
        db.close()
    db = engramdb.open(tmp_path / "h.db", embedder=None)
    with sqlite3.connect(tmp_path / "h.db") as conn:
        changed = conn.execute("SELECT COUNT(*) FROM memories WHERE row_tx <> tx_from"
                               ).fetchone()[0]
        assert changed >= 2  # versions closed by an update and a retraction
        for tx in range(head.tx + 1):
            cond, params = changed_since(tx)
            plain = conn.execute("SELECT row_id FROM memories WHERE row_tx > ?", [tx]).fetchall()
            assert sorted(conn.execute(f"SELECT row_id FROM memories WHERE {cond}", params
                                       ).fetchall()) == sorted(plain)
            latest = conn.execute("SELECT MAX(recorded_at) FROM events WHERE tx <= ?",
                                  [tx]).fetchone()[0] or 0
            assert db.storage.tx_time(tx) == latest
        # Every reader of the changed rows (after a first load, which reads every row)
        # and of a transaction's time seeks an index.
        since, args = changed_since(3)
        since_m, args_m = changed_since(3, "m.")
        for sql, params in (
                (f"SELECT row_id FROM memories WHERE {since} ORDER BY row_tx", args),
                (f"SELECT namespace FROM memories WHERE {since}", args),
                (f"SELECT COUNT(*) FROM memories WHERE {since}", args),
                (f"SELECT m.row_id FROM memories m LEFT JOIN memory_vectors v ON v.id = m.id "
                 f"AND v.version = m.version WHERE {since_m} ORDER BY m.row_tx", args_m),
                ("SELECT recorded_at FROM events WHERE tx <= ? ORDER BY tx DESC, seq DESC "
                 "LIMIT 1", [3])):
            plan = _plan(conn, sql, params)
            assert "SCAN" not in plan, (sql, plan)
        plan = _plan(conn, f"SELECT row_id FROM memories WHERE {since}", args)
        assert "memories_tx" in plan and "memories_row_tx" in plan
    db.close()


def test_an_existing_file_migrates_and_answers_the_same(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = engramdb.open(path, embedder=None)
    try:
        ids = _history(db)
        tx = db.storage.head().tx
    finally:
        db.close()
    # The file as schema 38 left it: main's indexes, version 39 not applied.
    with sqlite3.connect(path) as conn:
        for sql in _OLD_INDEXES:
            conn.execute(sql)
        conn.execute("DELETE FROM schema_migrations WHERE version = 39")
    assert "memories_current" in _indexes(path)
    old = engramdb.open(path, embedder=None)
    try:
        before = _answers(old, ids, tx)
    finally:
        old.close()
    # Opening it applied 39; a write and the answers after it, as on a new file.
    assert _indexes(path) == _indexes(_new_file(tmp_path))
    db = engramdb.open(path, embedder=None)
    try:
        assert _answers(db, ids, tx) == before
        db.remember("The chimney was swept", namespace="house/c")
        assert "house/c" in db.namespaces()
        assert db.verify().ok
    finally:
        db.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0] >= 39


def _new_file(tmp_path: Path) -> Path:
    path = tmp_path / "fresh.db"
    engramdb.open(path, embedder=None).close()
    return path


@pytest.mark.parametrize("field", ["recorded_at", "tx"])
def test_an_import_that_goes_back_in_time_is_refused(tmp_path: Path, field: str) -> None:

    from engramdb.storage.sqlite import SQLiteStorage

    db = engramdb.open(tmp_path / "src.db", embedder=None)
    try:
        db.remember("The boiler was serviced on Monday", namespace="house")
        db.remember("The roof was checked in April", namespace="house")
        events = db.storage.events()
    finally:
        db.close()
    target = SQLiteStorage(tmp_path / "dst.db")  # empty, as an import finds it
    target.setup()
    try:
        first, second = (e for e in events if e.seq in (1, 2))
        back = {"recorded_at": first.recorded_at - 1, "tx": first.tx - 1}[field]
        with pytest.raises(engramdb.InvalidInput, match="goes back in transaction time"):
            with target.write("import") as w:
                w.append_raw(first)
                w.append_raw(replace(second, **{field: back, "prev_hash": first.hash}))
        assert target.head().seq == 0  # nothing of it written
    finally:
        target.close()
