"""The read audit: who read which memory versions, when, batched into the log.

Every read that returns memory content (``recall``, ``context``, ``get``,
``history``, ``changes``, ``recent``, ``explain``, ``knowledge``) by a
principal becomes one record (principal, time, query digest or read path,
returned versions, their namespaces). Records are buffered in memory and
written as one logged ``reads.recorded`` event per batch whose payload holds
the batch compressed, plus a ``read_batches`` row naming the event and one
two-integer ``read_index`` row per distinct memory of the batch
(``audit/read_batches.py``), so ``who_read(memory_id)`` is an index lookup
and a k=10 recall costs about a hundred bytes on disk. Reads recorded before
schema version 21 (a ``reads`` row plus a ``read_items`` row per version)
keep answering. A read costs a list append and its coding into the open
batch's dictionaries (a few microseconds), not a disk write (the handle's
flusher thread writes full batches), and the records
are as tamper-evident as any other event. Per namespace glob the
mode is ``all`` (default), ``sampled`` (a fraction of reads) or ``off``,
stored in ``namespace_settings`` under the keys ``read_audit`` and
``read_sample_rate`` (other keys of a settings row are left alone).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from engramdb.audit.read_batches import Batch, key_rows, memory_key, unpack
from engramdb.codec import sha256_hex
from engramdb.engine._commit import commit
from engramdb.engine.collector import collector_paused
from engramdb.errors import EngramError, StorageError
from engramdb.model import Memory, Receipt, namespace_matches
from engramdb.storage.base import Effect, Insert

if TYPE_CHECKING:
    from engramdb.storage.base import Storage

__all__ = ["READ_AUDIT_MODES", "ReadAudit", "ReadItem", "read_rows", "reads_of"]

log = logging.getLogger("engramdb.audit")

READ_AUDIT_MODES = ("all", "sampled", "off")


# A buffered read: principal, tx, recorded_at (microseconds), query digest, and
# (id, version, namespace) of each memory version kept. Tuples of strings and
# integers: the collector stops tracking them, however long they wait.
_Read = tuple[str, int, int, str | None, tuple[tuple[str, int, str], ...]]


class ReadItem(NamedTuple):
    """A memory version a read returned, when the read has rows, not :class:`Memory` values."""

    id: str
    version: int
    namespace: str


class ReadAudit:
    """The read-audit buffer of one database handle.

    Reads are buffered in memory and written as one logged ``reads.recorded``
    event per batch. A read that makes the buffer due (``batch_size`` reads
    buffered, or the oldest older than ``interval_s``, checked at each read)
    wakes the handle's flusher thread, which writes the full batches (all of
    the buffer once the oldest read is over ``interval_s``) without waiting for
    the write lock; the read itself returns at once (a batch's write is ~13 ms
    of CPU at 256 reads, which one read in every ``batch_size`` used to pay).
    The buffer is also written on ``close`` (and at interpreter exit for
    handles never closed), and before ``verify``, ``export``, ``checkpoint``
    and ``who_read``, in the calling thread. A long-running server that may sit
    idle can call :meth:`start_background` to also flush every ``interval_s``.

    A crash (or ``kill -9``) loses the buffer: the open batch (fewer than
    ``batch_size`` reads) or the reads of the last ``interval_s`` seconds of
    activity, plus a full batch the flusher was still writing, and reads of an
    idle handle since its last flush. ``synchronous = True`` trades that window
    for one write transaction per read, in the reading thread.

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
        self._buf: list[_Read] = []
        # The buffer coded into batches as it fills (batch_size reads each, the last
        # one open), so a flush only finishes and writes them; None when they no
        # longer line up with the buffer (records dropped, batch_size changed).
        self._batches: list[Batch] | None = []
        self._inflight = 0
        self._oldest = 0.0
        self._opened = 0.0  # when the open (last) batch got its first read
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._periodic = False
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
        return self._record(principal, int(receipt.as_of), receipt.query_digest, memories)

    def record_read(self, principal: str, kind: str, memories: Sequence[ReadItem | Memory],
                    tx: int | None = None) -> bool:
        """Buffer a read that is not a recall: ``get``, ``history``, ``changes``, ...

        ``kind`` names the read path (its digest takes the query's place);
        ``tx`` is the read point, by default the newest version returned. A
        read that returned no memory is not recorded: it revealed none.
        """
        if not memories:
            return False
        if tx is None:
            tx = max(int(getattr(m, "tx_from", 0) or 0) for m in memories)
        return self._record(principal, tx, sha256_hex(f"read:{kind}".encode()), memories)

    def _record(self, principal: str, tx: int, digest: str | None,
                memories: Sequence[ReadItem | Memory]) -> bool:
        draw = self._rng.random()
        kept: list[ReadItem | Memory] = []
        seen: set[tuple[str, int]] = set()
        for m in memories:
            if (m.id, m.version) in seen:  # one version shown twice is one read of it
                continue
            seen.add((m.id, m.version))
            mode, rate = self.mode_for(m.namespace)
            if mode == "all" or (mode == "sampled" and draw < rate):
                kept.append(m)
        if memories and not kept:
            return False
        if not memories:
            mode, rate = self.mode_for(None)
            if mode == "off" or (mode == "sampled" and draw >= rate):
                return False
        row: _Read = (principal, int(tx), time.time_ns() // 1000, digest,
                      tuple((m.id, int(m.version), m.namespace) for m in kept))
        now = time.monotonic()
        with self._lock:
            if not self._buf:
                self._oldest = now
            self._buf.append(row)
            self._code([row])
            n = len(self._buf)
            if n > self.max_buffer:
                del self._buf[: n - self.max_buffer]
                self.dropped += n - self.max_buffer
                self._batches = None
            due = n >= self.batch_size or now - self._oldest >= self.interval_s
        if self.synchronous:
            self.flush()
        elif due:
            # Written by the flusher thread, not in this read: a batch's write (~13 ms of
            # CPU at 256 reads) made one read in every batch_size that much slower.
            self._wake_flusher()
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

    def _code(self, rows: Sequence[_Read]) -> None:
        # Under self._lock: code rows just appended to the buffer into its batches.
        batches, size = self._batches, max(1, self.batch_size)
        if batches is None:
            return
        for row in rows:
            if not batches or batches[-1].count >= size:
                batches.append(Batch())
                self._opened = time.monotonic()
            batches[-1].add(*row)

    def _flush(self, wait: bool, whole: bool = False) -> int:
        size = max(1, self.batch_size)
        batches: list[Batch] | None
        with self._lock:
            kept = self._batches
            if whole and kept is not None and all(b.count == size for b in kept[:-1]) \
                    and sum(b.count for b in kept) == len(self._buf):
                # Only the full batches: the open one waits for its reads (or its age).
                full = len(self._buf) // size
                if not full:
                    return 0
                rows, self._buf = self._buf[:full * size], self._buf[full * size:]
                batches, self._batches = kept[:full], kept[full:]
                if self._buf:
                    self._oldest = self._opened
            else:
                rows, self._buf = self._buf, []
                batches, self._batches = kept, []
            self._inflight = len(rows)
        if batches is not None and (
                sum(b.count for b in batches) != len(rows)
                or any(b.count != size for b in batches[:-1])):
            batches = None  # batch_size changed since: code each chunk now
        done = 0
        try:
            while done < len(rows):
                chunk = rows[done: done + size]
                if batches is None:
                    batch = Batch()
                    for row in chunk:
                        batch.add(*row)
                else:
                    batch = batches[done // size]
                self._write(batch, wait)
                done += len(chunk)
                with self._lock:
                    self._inflight = len(rows) - done
        except BaseException:
            with self._lock:
                later = self._buf
                self._buf = rows[done:] + later
                # The batches not written go back as they are; reads recorded meanwhile
                # are coded after them again (the last one may have room left).
                self._batches = None if batches is None else batches[done // size:]
                self._code(later)
                self._inflight = 0
                over = len(self._buf) - self.max_buffer
                if over > 0:  # reads recorded while the flusher tried: still the bound
                    del self._buf[:over]
                    self.dropped += over
                    self._batches = None
                self._oldest = time.monotonic()
            raise
        return done

    def _write(self, batch: Batch, wait: bool = True) -> None:
        # A batch's write allocates ~10,000 short-lived containers (its coded body,
        # ~2,500 index rows) and no cycle: with the collector running, its young
        # passes ran inside the recall that flushes, promoted those objects, and so
        # brought on full passes over the whole heap (25-80 ms) in later flushes.
        with collector_paused():
            self._write_batch(batch, wait)

    def _write_batch(self, batch: Batch, wait: bool) -> None:
        base, text, keys = batch.finish()
        with self._storage.write(self._actor, wait=wait) as w:
            # The event this commit logs is the next one: the row names it.
            seq = w.head.seq + 1
            effects: list[Effect] = [Insert("read_batches", {"seq": seq, "recorded_at": base})]
            event = commit(w, "reads.recorded", self._actor, None, None, effects,
                           {"batch": text})
            if event.seq != seq:  # the row must name its own event; never write it wrong
                raise StorageError(f"read batch logged as event {event.seq}, expected {seq}; "
                                   "retry", retryable=True)
            # Derived from the payload, not logged (replay derives them the same way).
            w.apply(key_rows(seq, keys))

    # -- the flusher thread ------------------------------------------------------------

    def start_background(self) -> None:
        """Also flush every ``interval_s`` while no read comes (for idle servers)."""
        self._periodic = True
        self._wake_flusher()

    def _wake_flusher(self) -> None:
        """Have the flusher thread write the buffer now (started on first need)."""
        with self._lock:
            if self._stop.is_set():
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="engramdb-read-audit",
                                                daemon=True)
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval_s if self._periodic else None)
            self._wake.clear()
            if self._stop.is_set():
                return
            with self._lock:
                if not self._buf:
                    continue
                aged = time.monotonic() - self._oldest >= self.interval_s
            if not self._flush_lock.acquire(blocking=False):
                continue  # another thread is flushing: it writes these too
            try:
                # Never waits for the write lock: if another writer holds it, the records
                # stay buffered for the next read that finds them due, or close. Full
                # batches only, unless the oldest read waited interval_s.
                self._flush(False, whole=not aged)
            except EngramError as exc:
                log.debug("read audit flush deferred: %s", exc)
            finally:
                self._flush_lock.release()

    def close(self) -> None:
        """Stop the background thread, if any, and write what is left."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        _open_audits.discard(self)
        try:
            self.flush()
        except EngramError as exc:
            log.warning("read audit records lost on close: %s", exc)


    def _after_fork_in_child(self) -> None:
        # The buffered reads are the parent's to write: flushed here too, they
        # would be written twice. Locks another parent thread held, and the
        # flusher thread, do not exist in the child.
        self._buf = []
        self._batches = []
        self._inflight = 0
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._rng.seed()  # a forked child would otherwise repeat the parent's draws
        self._thread = None  # the parent's flusher does not exist here; started on need
        if self._periodic:
            self.start_background()


class _Rows(Protocol):
    def fetch(self, table: str, where: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]: ...


def _unpacked(log: Storage, batches: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for batch in batches:
        seq = int(batch["seq"])
        event = log.events(after=seq - 1, limit=1)
        if event and event[0].seq == seq and event[0].payload is not None:
            out += unpack(seq, int(batch["recorded_at"]), json.loads(event[0].payload)["batch"])
    return out


def read_rows(rows: _Rows, log: Storage) -> list[dict[str, Any]]:
    """Every recorded read, shaped like a row of ``reads``; the older form first.

    ``rows`` answers the state tables (the storage, or an open write
    transaction); ``log`` is the storage whose events hold the batches.
    """
    return ([dict(r) for r in rows.fetch("reads", {})]
            + _unpacked(log, rows.fetch("read_batches", {})))


def reads_of(rows: _Rows, log: Storage, memory_id: str) -> list[tuple[dict[str, Any], int]]:
    """``(read, version)`` for each version of ``memory_id`` a recorded read returned.

    Both stored forms are found by index: the older ``read_items`` rows by memory
    id, the batches through ``read_index`` (only the batches naming the
    memory's key are decoded).
    """
    items = rows.fetch("read_items", {"memory_id": memory_id})
    old = {r["id"]: r for r in rows.fetch(
        "reads", {"id": sorted({i["read_id"] for i in items})})} if items else {}
    out = [(dict(old[i["read_id"]]), int(i["version"])) for i in items if i["read_id"] in old]
    seqs = sorted({int(r["seq"]) for r in rows.fetch(
        "read_index", {"memory_key": memory_key(memory_id)})})
    if not seqs:
        return out
    for read in _unpacked(log, rows.fetch("read_batches", {"seq": seqs})):
        out += [(read, int(i["version"])) for i in read["items"] if i["id"] == memory_id]
    return out


_open_audits: weakref.WeakSet[ReadAudit] = weakref.WeakSet()


def _reset_in_child() -> None:
    for audit in list(_open_audits):
        audit._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_in_child)


@atexit.register
def _flush_at_exit() -> None:
    # Handles the program never closed: write their buffered reads on a normal exit.
    for audit in list(_open_audits):
        audit.close()
