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

import os
import threading

from engramdb.storage.base import DEFERRED_FLUSH_S

__all__ = ["DeferredFlush"]


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
