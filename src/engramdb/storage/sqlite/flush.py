"""Deferred durability on SQLite: one WAL fsync for many cheap commits.

A deferred write (``Storage.write(durable=False)``) commits at ``synchronous =
NORMAL``: its WAL frames are written (so a crash of the process loses
nothing) but not synced. :class:`DeferredFlush` syncs the WAL file at most
:data:`~engramdb.storage.base.DEFERRED_FLUSH_S` after the first unsynced
commit, which puts every commit written before it on disk at once; a durable
(``FULL``) commit in between syncs them too, as the WAL is one file written in
order. A machine crash before either loses the newest deferred commits whole,
which SQLite's WAL recovery drops by their frame checksums: a suffix of the
log, never part of a transaction.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from engramdb.storage.base import DEFERRED_FLUSH_S

__all__ = ["CHECKPOINT_BYTES", "BackgroundCheckpoint", "DeferredFlush", "WalWriteback",
           "checkpoint_pages", "merge_fulltext"]

# SQLite checkpoints the WAL into the database file once it holds this much
# (``wal_autocheckpoint``, set in pages of the file's own size; SQLite's default is
# 1,000 pages, 4 MB at 4 KiB). Each checkpoint syncs the WAL and the file and copies
# a page once however many commits changed it: a single write's ~24 frames filled
# 4 MB every ~43 writes, and the checkpoint (~1.5 ms, most of it fixed) cost ~34 us a
# write; at 8 MB it runs every ~87 writes (~20 us a write; BENCHMARKS.md, wal12).
CHECKPOINT_BYTES = 8 << 20


def checkpoint_pages(conn: sqlite3.Connection) -> int:
    """``wal_autocheckpoint`` for :data:`CHECKPOINT_BYTES` of ``conn``'s file's pages
    (never fewer than SQLite's own 1,000: a file of pages over 8 KiB keeps that)."""
    return max(1000, CHECKPOINT_BYTES // int(conn.execute("PRAGMA page_size").fetchone()[0]))


class DeferredFlush:
    """Syncs ``wal_path`` once, ``delay_s`` after a deferred commit asks for it."""

    def __init__(self, wal_path: str, delay_s: float = DEFERRED_FLUSH_S) -> None:
        self._path = wal_path
        self._delay = delay_s
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def schedule(self) -> None:
        """A commit was written unsynced: sync within ``delay_s`` (one timer for all)."""
        with self._lock:
            if self._timer is None:
                self._timer = threading.Timer(self._delay, self.now)
                self._timer.daemon = True
                self._timer.start()

    def now(self) -> None:
        """Sync what is pending at once (close, or the timer firing)."""
        with self._lock:
            timer, self._timer = self._timer, None
        if timer is None:
            return
        timer.cancel()
        _sync_file(self._path)


def _sync_file(path: str) -> None:
    """fsync ``path``; nothing if it is gone (the last connection closed: SQLite synced
    and removed the WAL)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Wakeable:
    """One daemon thread, started on the first :meth:`kick`, that runs ``body``; the
    body loops on :meth:`wait`, which returns once kicked (kicks while it works
    coalesce into one more round) and is false once closed."""

    def __init__(self, name: str, body: Callable[[], None]) -> None:
        self._name = name
        self._body = body
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.closed = False

    def kick(self) -> None:
        with self._lock:
            if self.closed:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._body, daemon=True,
                                                name=self._name)
                self._thread.start()
        self._wake.set()

    def wait(self) -> bool:
        self._wake.wait()
        self._wake.clear()
        return not self.closed

    def close(self) -> None:
        """Stop the thread (after the round it may be running)."""
        with self._lock:
            self.closed = True
            thread, self._thread = self._thread, None
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()


class WalWriteback:
    """Writes a large transaction's WAL frames to disk while the transaction goes on.

    A batch of 2,000 memories writes ~8 MB of WAL. SQLite writes most of it before
    ``COMMIT`` (its page cache spills dirty pages into the WAL as the inserts run),
    but the disk only gets it at the commit's fsync, which then waited for all of it
    (~9-10 ms a batch here, ~5 us a memory). After each large run of inserts the
    writer asks this thread to fsync the WAL file now, so the disk takes the frames
    written so far while the writer inserts the next table, and the commit's own
    fsync finds less to write. Durability is unchanged: the commit still syncs
    (``synchronous=FULL``) before it returns, and frames of a transaction that never
    commits are ignored by recovery whether they reached the disk or not (SQLite
    spills them there itself).
    """

    ROWS = 1_000  # a run of inserts at least this long asks for the writeback

    def __init__(self, wal_path: str) -> None:
        self._path = wal_path
        self._thread = _Wakeable("engramdb-wal-writeback", self._run)

    def kick(self, rows: int) -> None:
        """``rows`` were just inserted: fsync the WAL soon if they were many."""
        if rows >= self.ROWS:
            self._thread.kick()

    def _run(self) -> None:
        while self._thread.wait():
            with contextlib.suppress(OSError):  # the commit's own sync is what counts
                _sync_file(self._path)

    def close(self) -> None:
        """Stop the thread (after the sync it may be running)."""
        self._thread.close()


class BackgroundCheckpoint:
    """Moves a large commit's WAL frames into the database file on another thread.

    SQLite checkpoints in the committing thread once the WAL holds
    ``wal_autocheckpoint`` pages (:data:`CHECKPOINT_BYTES`): after a batch of
    thousands of memories (8 MB of WAL for 2,000) the caller waited for every
    page to be copied into the database file and that file's fsync, after its
    own commit was already durable. A large commit turns the automatic checkpoint off for itself
    (:data:`BULK_CHANGES`) and asks this thread for a ``PASSIVE`` checkpoint
    instead, which overlaps the caller's next work. Durability is unchanged: a
    commit is on disk once the WAL is synced, and a checkpoint only copies
    committed frames (a crash mid-way is recovered from the WAL). Small commits
    keep SQLite's own checkpoint, and so does a large one while the WAL file has
    grown past :data:`WAL_LIMIT` bytes (the thread is falling behind).
    """

    BULK_CHANGES = 1_000  # rows a transaction changed for its checkpoint to move here
    WAL_LIMIT = 64 << 20

    def __init__(self, path: str, connect: Callable[[], sqlite3.Connection]) -> None:
        self._wal = path + "-wal"
        self._connect = connect
        self._thread = _Wakeable("engramdb-checkpoint", self._run)

    def takes(self, changes: int) -> bool:
        """Whether a commit that changed ``changes`` rows leaves its checkpoint here."""
        if changes < self.BULK_CHANGES or self._thread.closed:
            return False
        try:
            return Path(self._wal).stat().st_size < self.WAL_LIMIT
        except FileNotFoundError:  # no WAL file (an in-memory database): nothing to move
            return False

    def kick(self) -> None:
        """A large commit is done: checkpoint soon (one thread, started on first use)."""
        self._thread.kick()

    def _run(self) -> None:
        conn = self._connect()
        try:
            while self._thread.wait():
                # Busy (a purge's checkpoint, a reader pinning frames): the next
                # commit, or SQLite's own checkpoint, moves what is left.
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            conn.close()

    def close(self) -> None:
        """Stop the thread (after the checkpoint it may be running)."""
        self._thread.close()


# The full-text index's incremental merge (migration 0037): every FTS_MERGE_EVERY
# writes that added a segment, FTS_MERGE_PAGES pages of merge work. Keep the pages
# positive: a negative 'merge' (merge whatever levels exist) corrupted an index of
# this shape on SQLite 3.40.1 within a few hundred commits, where positive ones
# passed integrity-check over 3,000-8,000 commits with deletes, text updates and
# large batches (BENCHMARKS.md, put10 and the lead's check after it).
FTS_MERGE_EVERY = 4
FTS_MERGE_PAGES = 100


def merge_fulltext(conn: sqlite3.Connection) -> None:
    """A small step of FTS5's incremental merge, in the writer's transaction, before
    its commit.

    Each write that adds memories adds a level-0 segment to ``memories_fts``, and
    every full-text query reads each of its words in every segment (twice under
    BM25): FTS5's automerge kept ~15 segments at 10,000 memories, and a write's
    candidate search is such a query. ``'merge', N`` (levels of ``usermerge`` = 2
    segments, migration 0037) keeps ~6, at the cost of rewriting index pages.
    It runs on the writer's own connection, whose page cache another
    connection's commit would reset, inside the write that holds the lock
    already: no transaction, lock or commit of its own, and the index pages the
    write and the merge both change are written to the WAL once. It only
    reorganises the index (the same rows and terms), and commits with the write.
    Never in the write's way: any error rolls back the merge alone (its
    savepoint) and leaves it to a later write.
    """
    conn.execute("SAVEPOINT engram_merge")
    try:
        conn.execute("INSERT INTO memories_fts (memories_fts, rank) VALUES ('merge', ?)",
                     (FTS_MERGE_PAGES,))
    except sqlite3.Error:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK TO engram_merge")
    if conn.in_transaction:
        conn.execute("RELEASE engram_merge")
