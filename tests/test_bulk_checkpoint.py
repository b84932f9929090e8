"""A large batch's WAL checkpoint runs on another thread; nothing a user relies on changes.

SQLite copies committed WAL frames into the database file (a checkpoint) in the
committing thread once the WAL is large; after a batch of thousands of memories the
caller waited for that copy and its fsync although its commit was already durable.
A large commit now leaves it to a background thread (storage/sqlite/flush.py,
``BackgroundCheckpoint``). What must hold: a batch acknowledged is on disk even if
the process is killed before any checkpoint ran, the WAL stays bounded over many
batches (it is moved into the database and reused), and small commits are untouched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import engramdb

_WRITER = """
import os, signal, sys
import numpy as np
import engramdb
db = engramdb.open(sys.argv[1], embedder=None)
made = db.remember_many([{"text": f"Meter {i} read {i * 7} kWh", "namespace": "grid/a",
                          "layer": "episodic"} for i in range(int(sys.argv[2]))])
print(len(made), made[-1].id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # no close, no checkpoint: only the WAL has it
"""


def _moved_by_thread(path: Path, *, deadline: float) -> bool:
    """Whether every WAL frame reaches the database file before ``deadline``,
    read from the WAL index (``-shm``) without running a checkpoint: its header's
    ``mxFrame`` (offset 16) against the checkpoint record's ``nBackfill`` (offset
    96), both native-order 32-bit (https://sqlite.org/walformat.html)."""
    shm = Path(str(path) + "-shm")
    while True:
        head = shm.read_bytes()[:100]
        frames, moved = (int.from_bytes(head[16:20], sys.byteorder),
                         int.from_bytes(head[96:100], sys.byteorder))
        if frames == moved:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


def test_a_batch_killed_before_its_checkpoint_is_all_there(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    engramdb.open(path, embedder=None).close()
    proc = subprocess.run([sys.executable, "-c", _WRITER, str(path), "3000"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    count, last_id = proc.stdout.split()
    db = engramdb.open(path, embedder=None)
    try:
        assert int(count) == 3000
        assert db.get(last_id).text == "Meter 2999 read 20993 kWh"
        assert len(db.recent(namespace="grid/**", k=1000)) == 1000
        assert db.verify().ok
    finally:
        db.close()


def test_many_batches_keep_the_wal_bounded_and_moved_into_the_file(
        tmp_path: Path, embedder: Any) -> None:
    path = tmp_path / "b.db"
    db = engramdb.open(path, embedder=embedder)
    rng = np.random.default_rng(5)
    wal = Path(str(path) + "-wal")
    try:
        sizes = []
        for b in range(8):
            vecs = rng.standard_normal((1000, embedder.dimension)).astype(np.float32)
            db.remember_many([{"text": f"Batch {b} reading {i}", "namespace": "iot/a",
                               "layer": "episodic", "embedding": vecs[i]}
                              for i in range(1000)])
            sizes.append(wal.stat().st_size)
            # The thread moves the batch into the file (this test runs no checkpoint of
            # its own). Waiting for it makes the bound below hold on a loaded machine
            # too: a batch begun while the thread still copies cannot restart the WAL.
            assert _moved_by_thread(path, deadline=time.monotonic() + 20), b
        # One batch of 1,000 memories writes about 4 MB of WAL; eight of them, had the
        # WAL never been moved into the file and reused, would be over 30 MB.
        assert max(sizes) < 16 << 20, sizes
        assert len(db.recent(namespace="iot/**", k=1000)) == 1000
        assert db.verify().ok
    finally:
        db.close()
    assert not wal.exists()  # the last connection closed moved the rest and removed it
