"""A large batch's WAL frames go to disk while it still inserts; durability is unchanged.

A batch of thousands of memories writes megabytes of WAL before its ``COMMIT`` (SQLite's
page cache spills into the WAL as the inserts run); the commit's fsync waited for all of
it. After each large run of inserts a thread now fsyncs the WAL file early
(storage/sqlite/flush.py, ``WalWriteback``). What must hold: frames of a batch that never
committed are not data, even once synced (the process killed just before ``COMMIT``
leaves the database as it was, verifiable, writable), an acknowledged batch is all there,
and single writes never start the thread.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import engramdb
from engramdb.storage.sqlite import flush

_KILLED_BEFORE_COMMIT = """
import os, signal, sys, threading
import engramdb
from engramdb.storage import sql_write
from engramdb.storage.sqlite import flush

synced = threading.Event()
plain = flush._sync_file
def sync(path):
    plain(path)
    synced.set()
flush._sync_file = sync

db = engramdb.open(sys.argv[1], embedder=None)
kept = db.remember_many([{"text": f"Kept reading {i}", "namespace": "grid/a",
                          "layer": "episodic"} for i in range(1500)])
print(kept[-1].id, db.storage.head().seq, flush=True)
synced.clear()

finish = sql_write.SqlWriteTx.finish
def killed(self):
    finish(self)  # every row sent, the head moved: only COMMIT is left
    if not synced.wait(30):
        sys.exit(3)  # the writeback never ran: the test would prove nothing
    os.kill(os.getpid(), signal.SIGKILL)
sql_write.SqlWriteTx.finish = killed
db.remember_many([{"text": f"Lost reading {i}", "namespace": "grid/a",
                   "layer": "episodic"} for i in range(3000)])
"""


def test_a_batch_killed_after_its_frames_were_synced_but_before_commit_is_not_there(
        tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    engramdb.open(path, embedder=None).close()
    proc = subprocess.run([sys.executable, "-c", _KILLED_BEFORE_COMMIT, str(path)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr)
    kept_last, kept_head = proc.stdout.split()
    db = engramdb.open(path, embedder=None)
    try:
        assert db.get(kept_last).text == "Kept reading 1499"
        newest = db.recent(namespace="grid/**", k=1000)
        assert newest[0].text == "Kept reading 1499"
        assert all(m.text.startswith("Kept") for m in newest)
        head = db.storage.head().seq
        assert head == int(kept_head)
        assert db.verify().ok
        more = db.remember_many([{"text": f"After reading {i}", "namespace": "grid/a",
                                  "layer": "episodic"} for i in range(1200)])
        assert len(more) == 1200 and db.storage.head().seq > head + 1199
        assert db.recent(namespace="grid/**", k=1)[0].text == "After reading 1199"
        assert db.verify().ok
    finally:
        db.close()


def test_large_batches_sync_their_wal_early_and_single_writes_do_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.db"
    wal = str(path) + "-wal"
    syncs: list[str] = []
    plain = flush._sync_file
    done = threading.Event()

    def counted(p: str) -> None:
        plain(p)
        syncs.append(p)
        done.set()

    monkeypatch.setattr(flush, "_sync_file", counted)
    db = engramdb.open(path, embedder=None)
    try:
        for i in range(20):
            db.remember(f"Single reading {i}", namespace="grid/a", layer="episodic")
        assert syncs == []
        made = db.remember_many([{"text": f"Batch reading {i}", "namespace": "grid/a",
                                  "layer": "episodic"} for i in range(2000)])
        assert done.wait(30)
        assert set(syncs) == {wal}
        assert db.get(made[-1].id).text == "Batch reading 1999"
    finally:
        db.close()
