"""The read audit: who read which memory versions, when, batched into the log.

Each ``recall`` / ``context`` call by a principal becomes one ``reads`` row
(principal, time, query digest, returned versions, their namespaces) plus one
``read_items`` row per version, so ``who_read(memory_id)`` is an index lookup.
Rows are buffered in memory and written as one logged ``reads.recorded``
event per batch, so a read costs a list append, not a disk write, and the
records are as tamper-evident as any other event. Per namespace glob the
mode is ``all`` (default), ``sampled`` (a fraction of reads) or ``off``,
stored in ``namespace_settings`` under the keys ``read_audit`` and
``read_sample_rate`` (other keys of a settings row are left alone).
"""

from __future__ import annotations

import atexit
import logging
import random
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from engramdb.codec import new_id
from engramdb.engine._commit import commit
from engramdb.errors import EngramError
from engramdb.model import Memory, Receipt, namespace_matches
from engramdb.storage.base import Effect, Insert

if TYPE_CHECKING:
    from engramdb.storage.base import Storage

__all__ = ["READ_AUDIT_MODES", "ReadAudit"]

log = logging.getLogger("engramdb.audit")

READ_AUDIT_MODES = ("all", "sampled", "off")


class ReadAudit:
    """The read-audit buffer of one database handle.

    Reads are buffered in memory and written as one logged ``reads.recorded``
    event per batch. Flushes happen in the reading thread, never behind the
    caller's back: when the buffer reaches ``batch_size``, when the oldest
    buffered read is older than ``interval_s`` (checked at the next read), on
    ``close`` (and at interpreter exit for handles never closed), and before
    ``verify``, ``export``, ``checkpoint`` and ``who_read``. A long-running
    server that may sit idle can call :meth:`start_background` to also flush
    every ``interval_s`` from a thread.

    A crash (or ``kill -9``) loses the buffer: at most ``batch_size`` reads,
    or the reads of the last ``interval_s`` seconds of activity, plus reads of
    an idle handle since its last flush. ``synchronous = True`` trades that
    window for one write transaction per read.

    Attributes:
        batch_size: reads per ``reads.recorded`` event.
        interval_s: the oldest buffered read waits at most this long once
            reads continue (or at all, with the background thread).
        synchronous: write each read before ``recall`` returns.
        max_buffer: if writing keeps failing, the oldest records beyond this
            many are dropped and counted in ``dropped``.
    """

    SETTINGS_TTL_S = 1.0

    def __init__(self, storage: Storage, *, actor: str, batch_size: int = 256,
                 interval_s: float = 1.0, synchronous: bool = False, max_buffer: int = 100_000,
                 seed: int | None = None) -> None:
        self._storage = storage
        self._actor = actor
        self.batch_size = batch_size
        self.interval_s = interval_s
        self.synchronous = synchronous
        self.max_buffer = max_buffer
        self.dropped = 0
        self._rng = random.Random(seed)
        self._buf: list[dict[str, Any]] = []
        self._inflight = 0
        self._oldest = 0.0
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._settings: list[tuple[str, str, float]] | None = None
        self._settings_at = 0.0
        self._modes: dict[str | None, tuple[str, float]] = {}
        _open_audits.add(self)

    def seed(self, value: int) -> None:
        """Make ``sampled`` draws reproducible (tests, benchmarks)."""
        self._rng.seed(value)

    # -- settings -------------------------------------------------------------

    def _load_settings(self) -> list[tuple[str, str, float]]:
        now = time.monotonic()
        if self._settings is None or now - self._settings_at > self.SETTINGS_TTL_S:
            out = []
            for r in self._storage.fetch("namespace_settings", {}):
                s = r["settings"] or {}
                if isinstance(s, Mapping) and s.get("read_audit") in READ_AUDIT_MODES:
                    out.append((str(r["pattern"]), str(s["read_audit"]),
                                float(s.get("read_sample_rate") or 0.0)))
            self._settings, self._settings_at, self._modes = out, now, {}
        return self._settings

    def invalidate(self) -> None:
        """Forget cached settings (another handle's changes show within a second anyway)."""
        self._settings = None

    def mode_for(self, namespace: str | None) -> tuple[str, float]:
        """The ``(mode, rate)`` for reads of ``namespace``.

        The most specific matching pattern wins (more literal segments, then
        fewer ``**``, then more segments); ``None`` (a read that returned
        nothing) uses the setting of ``**``. Default: ``("all", 1.0)``.
        """
        settings = self._load_settings()
        cached = self._modes.get(namespace)
        if cached is not None:
            return cached
        best: tuple[tuple[int, int, int], str, float] | None = None
        for pattern, mode, rate in settings:
            if namespace is None:
                if pattern != "**":
                    continue
            elif not namespace_matches(pattern, namespace):
                continue
            parts = pattern.split("/")
            rank = (sum(p not in ("*", "**") for p in parts), -parts.count("**"), len(parts))
            if best is None or rank > best[0]:
                best = (rank, mode, rate)
        if best is None:
            result = ("all", 1.0)
        else:
            result = (best[1], best[2] if best[1] == "sampled" else 1.0)
        self._modes[namespace] = result
        return result

    # -- recording ---------------------------------------------------------------

    def record(self, principal: str, receipt: Receipt, memories: Sequence[Memory]) -> bool:
        """Buffer one read; returns whether it was kept (settings may skip it).

        One random draw per read decides every ``sampled`` namespace it
        touched, so a sampled read is recorded whole or not at all there.
        """
        draw = self._rng.random()
        kept: list[Memory] = []
        for m in memories:
            mode, rate = self.mode_for(m.namespace)
            if mode == "all" or (mode == "sampled" and draw < rate):
                kept.append(m)
        if memories and not kept:
            return False
        if not memories:
            mode, rate = self.mode_for(None)
            if mode == "off" or (mode == "sampled" and draw >= rate):
                return False
        row = {
            "id": new_id(), "principal": principal, "tx": int(receipt.as_of),
            "recorded_at": time.time_ns() // 1000, "query_digest": receipt.query_digest,
            "items": [{"id": m.id, "version": m.version} for m in kept],
            "namespaces": sorted({m.namespace for m in kept}),
        }
        now = time.monotonic()
        with self._lock:
            if not self._buf:
                self._oldest = now
            self._buf.append(row)
            n = len(self._buf)
            if n > self.max_buffer:
                del self._buf[: n - self.max_buffer]
                self.dropped += n - self.max_buffer
            due = n >= self.batch_size or now - self._oldest >= self.interval_s
        if self.synchronous:
            self.flush()
        elif due:
            try:
                # A read never waits for the write lock: if another writer (another
                # thread or process) holds it, the records stay buffered for the next
                # read, the background flusher or close.
                self.flush(wait=False)
            except EngramError as exc:
                # E.g. the lock is busy, or a recall inside the same thread's open
                # write transaction: the records stay buffered for the next flush.
                log.debug("read audit flush deferred: %s", exc)
        return True

    @property
    def pending(self) -> int:
        """Reads recorded and not yet committed (buffered or being written)."""
        with self._lock:
            return len(self._buf) + self._inflight

    def flush(self, *, wait: bool = True) -> int:
        """Write every buffered read now; returns how many were written.

        Args:
            wait: wait for the write lock (default). ``False`` (what reads use)
                writes only if the lock is free now, else leaves the records
                buffered and raises :class:`~engramdb.errors.Busy`.

        Raises:
            StorageError: the write failed (the records stay buffered).
        """
        if not self._flush_lock.acquire(blocking=wait):
            return 0  # another thread is flushing right now; it writes these too
        try:
            return self._flush(wait)
        finally:
            self._flush_lock.release()

    def _flush(self, wait: bool) -> int:
        with self._lock:
            rows, self._buf = self._buf, []
            self._inflight = len(rows)
        done = 0
        try:
            while done < len(rows):
                chunk = rows[done: done + max(1, self.batch_size)]
                self._write(chunk, wait)
                done += len(chunk)
                with self._lock:
                    self._inflight = len(rows) - done
        except BaseException:
            with self._lock:
                self._buf[:0] = rows[done:]
                self._inflight = 0
                self._oldest = time.monotonic()
            raise
        return done

    def _write(self, rows: Sequence[dict[str, Any]], wait: bool = True) -> None:
        effects: list[Effect] = [Insert("reads", r) for r in rows]
        effects += [Insert("read_items", {"read_id": r["id"], "memory_id": i["id"],
                                          "version": i["version"]})
                    for r in rows for i in r["items"]]
        with self._storage.write(self._actor, wait=wait) as w:
            commit(w, "reads.recorded", self._actor, None, None, effects)

    # -- optional background flusher ---------------------------------------------------

    def start_background(self) -> None:
        """Also flush every ``interval_s`` from a daemon thread (for idle servers)."""
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="engramdb-read-audit",
                                                daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            if not self.pending:
                continue
            try:
                self.flush()
            except EngramError as exc:  # keep buffering; the next round retries
                log.warning("read audit flush failed, will retry: %s", exc)

    def close(self) -> None:
        """Stop the background thread, if any, and write what is left."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        _open_audits.discard(self)
        try:
            self.flush()
        except EngramError as exc:
            log.warning("read audit records lost on close: %s", exc)


_open_audits: weakref.WeakSet[ReadAudit] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    # Handles the program never closed: write their buffered reads on a normal exit.
    for audit in list(_open_audits):
        audit.close()
