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

__all__ = ["BackgroundCheckpoint", "DeferredFlush"]


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
        try:
            fd = os.open(self._path, os.O_RDONLY)
        except FileNotFoundError:  # the last connection closed: SQLite synced and removed it
            return
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class BackgroundCheckpoint:
    """Moves a large commit's WAL frames into the database file on another thread.

    SQLite checkpoints in the committing thread once the WAL holds
    ``wal_autocheckpoint`` pages: after a batch of thousands of memories (8 MB
    of WAL for 2,000) the caller waited for every page to be copied into the
    database file and that file's fsync, after its own commit was already
    durable. A large commit turns the automatic checkpoint off for itself
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
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def takes(self, changes: int) -> bool:
        """Whether a commit that changed ``changes`` rows leaves its checkpoint here."""
        if changes < self.BULK_CHANGES or self._closed:
            return False
        try:
            return Path(self._wal).stat().st_size < self.WAL_LIMIT
        except FileNotFoundError:  # no WAL file (an in-memory database): nothing to move
            return False

    def kick(self) -> None:
        """A large commit is done: checkpoint soon (one thread, started on first use)."""
        with self._lock:
            if self._closed:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="engramdb-checkpoint")
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        conn = self._connect()
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._closed:
                    return
                # Busy (a purge's checkpoint, a reader pinning frames): the next
                # commit, or SQLite's own checkpoint, moves what is left.
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            conn.close()

    def close(self) -> None:
        """Stop the thread (after the checkpoint it may be running)."""
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
