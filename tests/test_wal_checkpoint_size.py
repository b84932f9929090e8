"""SQLite's automatic checkpoint runs at 8 MB of WAL, for single writes and after batches.

A checkpoint copies the WAL's pages into the database file and syncs both files, in
the thread whose commit filled the WAL; small writes share that cost, so the engine
sets the threshold in bytes (``CHECKPOINT_BYTES``), whatever the file's page size, and
puts it back after a large commit, which turns it off for itself (``BackgroundCheckpoint``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import engramdb
from engramdb.storage.sqlite import CHECKPOINT_BYTES


def _checkpoint_bytes(db: engramdb.Database) -> int:
    writer = db.storage._conn("writer")  # type: ignore[attr-defined]
    pages = int(writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
    return pages * int(writer.execute("PRAGMA page_size").fetchone()[0])


def test_single_writes_and_batches_leave_the_checkpoint_at_8_mb(tmp_path: Path) -> None:
    db = engramdb.open(tmp_path / "c.db", embedder=None)
    try:
        db.remember("The boiler was serviced on Monday", namespace="house")
        assert _checkpoint_bytes(db) == CHECKPOINT_BYTES == 8 << 20
        # A batch large enough to leave its checkpoint to the background thread.
        db.remember_many([{"text": f"Meter {i} read {i * 7} kWh", "namespace": "grid/a",
                           "layer": "episodic"} for i in range(1_200)])
        assert _checkpoint_bytes(db) == CHECKPOINT_BYTES
        assert len(db.recent(namespace="grid/**", k=1_000)) == 1_000
    finally:
        db.close()


def test_a_file_with_other_pages_checkpoints_at_the_same_size(tmp_path: Path) -> None:
    path = tmp_path / "small-pages.db"
    conn = sqlite3.connect(path)  # a file made with 2 KiB pages (page size is the file's)
    conn.execute("PRAGMA page_size = 2048")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()
    db = engramdb.open(path, embedder=None)
    try:
        m = db.remember("The roof was checked in April", namespace="house")
        assert _checkpoint_bytes(db) == CHECKPOINT_BYTES
        assert db.get(m.id).text == "The roof was checked in April"
        assert db.verify().ok
    finally:
        db.close()
