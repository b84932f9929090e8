"""Change-feed wake-ups: one LISTEN connection per process, shared by all waiters.

Every write transaction that logs events sends ``NOTIFY engram_log, '<seq>'``
before it commits, so PostgreSQL delivers the notification exactly when the
events become visible, and never for a rolled-back write. A notification is
only a hint: waiters learn *that* the log moved, then re-read it by cursor.
Notifications sent while the listener was disconnected are lost, so on every
(re)connect the listener re-reads the chain head before it reports ready.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import psycopg

__all__ = ["CHANNEL", "ChangeListener"]

CHANNEL = "engram_log"


class ChangeListener:
    """A background thread that LISTENs on :data:`CHANNEL` and tracks the newest seq."""

    def __init__(self, url: str, connect_kwargs: Mapping[str, Any]) -> None:
        self._url = url
        self._kwargs = dict(connect_kwargs)
        self._cond = threading.Condition()
        self._latest = 0
        self._ready = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection[Any] | None = None

    @property
    def ready(self) -> bool:
        """True while the LISTEN connection is up (notifications are arriving)."""
        return self._ready

    def ensure_started(self, timeout: float) -> bool:
        """Start the thread if needed; wait up to ``timeout`` for LISTEN to be active."""
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._run, name="engramdb-pg-listener", daemon=True
                )
                self._thread.start()
            deadline = time.monotonic() + timeout
            while not self._ready:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def wait_above(self, after_seq: int, timeout: float) -> bool:
        """Block until a notification names a seq above ``after_seq``, or time out."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while self._latest <= after_seq:
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    return False
                self._cond.wait(left)
            return True

    def close(self) -> None:
        self._stop.set()  # the thread notices within one notifies() timeout
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=3.0)
        with self._cond:
            self._cond.notify_all()

    # -- the thread ---------------------------------------------------------------

    def _heard(self, seq: int) -> None:
        with self._cond:
            if seq > self._latest:
                self._latest = seq
                self._cond.notify_all()

    def _run(self) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._url, autocommit=True, **self._kwargs) as conn:
                    self._conn = conn
                    conn.execute(f"LISTEN {CHANNEL}")
                    # Anything committed before LISTEN took effect was not announced.
                    row = conn.execute("SELECT seq FROM chain_head WHERE id = 1").fetchone()
                    with self._cond:
                        self._ready = True
                        self._cond.notify_all()
                    self._heard(int(row[0]) if row else 0)
                    backoff = 0.05
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            with contextlib.suppress(ValueError):
                                self._heard(int(note.payload))
            except psycopg.Error:
                pass  # the server went away or is restarting: reconnect below
            finally:
                self._conn = None
                with self._cond:
                    self._ready = False
                    self._cond.notify_all()
            if self._stop.wait(backoff):
                return
            backoff = min(backoff * 2, 2.0)

    def wait_past(self, after_seq: int, timeout: float, log_seq: Callable[[], int]) -> bool:
        """Block until the log (``log_seq()`` reads its head) passes ``after_seq``, or
        ``timeout`` seconds pass; True if it has. Starts listening if needed."""
        deadline = time.monotonic() + max(0.0, timeout)
        listening = self.ensure_started(max(0.0, deadline - time.monotonic()))
        if log_seq() > after_seq:
            return True
        if not listening:
            return False
        if self.wait_above(after_seq, deadline - time.monotonic()):
            return True
        # A notification may have been lost while the listener reconnected: ask the log.
        return not self.ready and log_seq() > after_seq
