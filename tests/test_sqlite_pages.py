"""The SQLite file's page size: 2 KiB for a new database, an existing file kept as it is.

A commit writes one WAL frame per page it changed, and a single write changes a
leaf of each b-tree it touches (~25), a row or an index entry each: the fsync that
makes the write durable waits for those bytes, so new files use 2 KiB pages
(storage/sqlite ``PAGE_SIZE``). SQLite fixes the page size when a file is created
and WAL mode cannot change it, so a database made by an earlier version keeps its
4 KiB pages; it must open, take writes and read back exactly as before.
"""

from __future__ import annotations

import sqlite3
import struct
from pathlib import Path

import engramdb
from engramdb.storage.sqlite import CHECKPOINT_BYTES, PAGE_SIZE


def _page_size(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA page_size").fetchone()[0])
    finally:
        conn.close()


def _wal_frame_size(path: Path) -> int:
    """The page size the WAL's header records (every frame carries one page of it)."""
    header = Path(str(path) + "-wal").read_bytes()[:32]
    return int(struct.unpack(">I", header[8:12])[0])


def test_a_new_database_writes_2_kib_pages_to_the_file_and_the_wal(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    db = engramdb.open(path, embedder=None)
    try:
        m = db.remember("The boiler was serviced on Monday", namespace="house")
        assert _wal_frame_size(path) == PAGE_SIZE == 2048
        writer = db.storage._conn("writer")  # type: ignore[attr-defined]
        pages = int(writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
        assert pages * PAGE_SIZE == CHECKPOINT_BYTES
        assert db.get(m.id).text == "The boiler was serviced on Monday"
    finally:
        db.close()
    assert _page_size(path) == 2048


def test_a_database_made_with_4_kib_pages_keeps_them_and_its_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    # A file created the way earlier versions did: SQLite's default 4 KiB pages.
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA page_size = 4096")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()
    db = engramdb.open(path, embedder=None)
    try:
        first = db.remember("The car's tyres were changed in March", namespace="house")
    finally:
        db.close()
    db = engramdb.open(path, embedder=None)
    try:
        second = db.remember("The roof was checked in April", namespace="house")
        assert _wal_frame_size(path) == 4096
        writer = db.storage._conn("writer")  # type: ignore[attr-defined]
        pages = int(writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
        assert pages * 4096 == CHECKPOINT_BYTES
        assert [m.text for m in db.recent(namespace="house/**", k=10)] == [
            second.text, first.text]
        assert db.recall("tyres changed", namespace="house/**", k=1).hits[0].memory.id == first.id
        assert db.verify().ok
    finally:
        db.close()
    assert _page_size(path) == 4096
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
