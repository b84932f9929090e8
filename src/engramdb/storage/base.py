"""The storage seam: what a backend must do, and nothing more.

The engine never writes SQL. It describes a change as frozen *effects*
(:class:`Insert`, :class:`Update`) on the logical tables of
:mod:`engramdb.storage.schema`, applies them inside one serialised write
transaction and logs them in the same transaction (:meth:`WriteTx.log`).
Because the log carries the effects, ``verify`` and ``import`` can replay it
without any knowledge of the engine's rules.

Reads are a handful of methods over frozen queries (:class:`RecallFilter`).
Filters are always applied inside the backend's query, never afterwards.
Backends translate their driver errors into :class:`engramdb.errors.StorageError`
(chained with ``from``) at this boundary.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engramdb.model import Event, RecallFilter

__all__ = [
    "DEFERRED_FLUSH_S",
    "Effect",
    "Head",
    "Insert",
    "RawEvent",
    "SearchAhead",
    "Span",
    "Storage",
    "StorageInfo",
    "Unprepared",
    "Update",
    "WriteTx",
    "effect_from_dict",
    "effect_to_dict",
    "top_hits",
]

Row = dict[str, Any]

#: The longest a deferred write (``write(durable=False)``) waits to be flushed to
#: disk. PostgreSQL's WAL writer flushes asynchronous commits on its own clock
#: (``wal_writer_delay``, 200 ms by default).
DEFERRED_FLUSH_S = 0.2


@dataclass(frozen=True, slots=True)
class Insert:
    """Insert one row into a logical table (values in their JSON-native form)."""

    table: str
    row: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Update:
    """Change columns of the row with ``key``; ``expect`` makes it a compare-and-swap.

    If no row matches ``key`` and ``expect``, the backend raises
    :class:`engramdb.errors.VersionConflict` and the whole transaction rolls back.
    """

    table: str
    key: Mapping[str, Any]
    changes: Mapping[str, Any]
    expect: Mapping[str, Any] = field(default_factory=dict)


Effect = Insert | Update


@dataclass(frozen=True, slots=True)
class Span:
    """A ``fetch`` condition on an ordered column: ``at_least <= value < below``
    (either bound may be ``None``: open on that side)."""

    at_least: Any = None
    below: Any = None


def effect_to_dict(effect: Effect) -> dict[str, Any]:
    if isinstance(effect, Insert):
        return {"op": "insert", "table": effect.table, "row": dict(effect.row)}
    return {
        "op": "update",
        "table": effect.table,
        "key": dict(effect.key),
        "changes": dict(effect.changes),
        "expect": dict(effect.expect),
    }


def effect_from_dict(data: Mapping[str, Any]) -> Effect:
    if data["op"] == "insert":
        return Insert(data["table"], data["row"])
    return Update(data["table"], data["key"], data["changes"], data.get("expect") or {})


class Unprepared(Exception):
    """A prepared write (:meth:`Storage.prepare`) cannot do this; nothing was written.

    Raised when the write reads or changes what only a write holding the chain
    lock may (current memories, a compare-and-swap, configuration), or, with
    ``again=True``, when the configuration or the log moved on since it was
    prepared: preparing it again may succeed. Either way, running the same work
    in :meth:`Storage.write` always does.
    """

    def __init__(self, why: str, *, again: bool = False) -> None:
        super().__init__(why)
        self.again = again


@dataclass(frozen=True, slots=True)
class Head:
    """The end of the log: last event, last transaction and its time."""

    seq: int
    hash: str
    tx: int
    recorded_at: int  # micros


@dataclass(frozen=True, slots=True)
class SearchAhead:
    """The searches a snapshot's reader will ask first (``Storage.snapshot(ahead=...)``):
    ``search_text_and_vector(query, vector, flt, limit, brief=brief)``."""

    query: str
    vector: np.ndarray
    flt: RecallFilter
    limit: int
    brief: bool = True


@dataclass(frozen=True, slots=True)
class RawEvent:
    """An event exactly as stored, including the salt, for verify and export."""

    seq: int
    tx: int
    kind: str
    namespace: str | None
    actor: str
    recorded_at: int
    subject_ref: str | None
    commitment: str
    prev_hash: str
    hash: str
    salt: bytes | None
    payload: str | None  # canonical JSON text, None once erased

    def envelope(self) -> dict[str, Any]:
        """The fields the chain hash covers (never the payload itself)."""
        return {
            "seq": self.seq,
            "tx": self.tx,
            "kind": self.kind,
            "namespace": self.namespace,
            "actor": self.actor,
            "recorded_at": self.recorded_at,
            "subject_ref": self.subject_ref,
            "commitment": self.commitment,
        }


class WriteTx(ABC):
    """One serialised write transaction. All or nothing, with its log entries.

    ``tx`` is the transaction-time number every row written here carries;
    ``recorded_at`` its wall-clock time (micros, never earlier than the
    previous transaction's).
    """

    tx: int
    recorded_at: int
    # The configuration (CONFIG_TABLES) this transaction reads is the committed one as
    # of this number for its whole life: it cannot change it, and what the engine
    # derives from it (settings, TTL policies, grants) may be kept under this number.
    # None: the transaction reads the configuration under the lock and may change it.
    fixed_config: int | None = None
    # It carries one engine write (a prepared write): nothing later in it reads what
    # that write planned.
    single_write: bool = False

    @property
    @abstractmethod
    def head(self) -> Head:
        """The end of the log as this transaction sees it (its own events included)."""

    @abstractmethod
    def apply(self, effects: Sequence[Effect]) -> None:
        """Apply effects to the state tables (no logging)."""

    @abstractmethod
    def log(
        self,
        kind: str,
        *,
        actor: str,
        namespace: str | None,
        subject_ref: str | None,
        payload: Mapping[str, Any],
    ) -> Event:
        """Append one hash-chained event to the log."""

    def log_many(self, kind: str, *, actor: str,
                 events: Sequence[tuple[str | None, str | None, Mapping[str, Any]]]) -> None:
        """:meth:`log` for each ``(namespace, subject_ref, payload)`` in order.

        The same events, hashes and chain as one :meth:`log` call each; a backend
        may append them in bulk (a ``remember_many`` logs one event per memory).
        """
        for namespace, subject_ref, payload in events:
            self.log(kind, actor=actor, namespace=namespace, subject_ref=subject_ref,
                     payload=payload)

    @abstractmethod
    def put_vectors(self, items: Sequence[tuple[str, int, np.ndarray]]) -> None:
        """Store embeddings for ``(memory id, version)`` pairs (a derived index)."""

    @abstractmethod
    def copy_vector(self, memory_id: str, from_version: int, to_version: int) -> None:
        """Reuse the embedding of an earlier version whose text is unchanged."""

    @abstractmethod
    def fetch(
        self,
        table: str,
        where: Mapping[str, Any],
        *,
        order_by: str | None = None,
        limit: int | None = None,
    ) -> list[Row]:
        """Rows of ``table`` whose columns equal ``where`` (``None`` means IS NULL, a
        list any of its values, a :class:`Span` a range)."""

    @abstractmethod
    def append_raw(self, event: RawEvent) -> None:
        """Append an event verbatim (import); the caller guarantees the chain."""

    @abstractmethod
    def erase(self, memories: Sequence[tuple[str, int]], seqs: Sequence[int]) -> dict[str, int]:
        """Remove content for good: the memory versions (their rows, full-text
        entries and vectors) and the payloads and salts of events ``seqs``;
        returns how many versions, vectors and payloads went.

        Only the erasure path calls this, and it logs the erasure (naming
        what, never the content) in the same transaction.
        """


@dataclass(frozen=True, slots=True)
class StorageInfo:
    """What a door may know about the backend: its kind, its (redacted) URL, its file.

    Attributes:
        backend: ``sqlite`` or ``postgresql``.
        url: where it is, with any password removed.
        path: the database file, or ``None`` when there is none (PostgreSQL).
    """

    backend: str
    url: str
    path: str | None = None


class Storage(ABC):
    """A backend. Thread-safe; many processes may share one database."""

    dialect: str
    url: str

    @abstractmethod
    def setup(self) -> None:
        """Create or migrate the schema. Safe to call any number of times."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def write(self, actor: str, *, wait: bool = True, durable: bool = True
              ) -> AbstractContextManager[WriteTx]:
        """A serialised write transaction; commits on normal exit, else rolls back.

        Args:
            actor: who writes (for the backend's own bookkeeping).
            wait: wait for the write lock up to the backend's timeout (default);
                ``False`` takes it only if it is free right now.
            durable: return once the commit is on disk (default). ``False``
                commits without waiting for the flush (deferred durability, for
                cheap telemetry such as tool outcomes): the write survives a
                crash of the process at once, and a crash of the machine once it
                is flushed, by the next durable write or within
                :data:`DEFERRED_FLUSH_S`. A machine crash before then loses the
                newest deferred writes whole: a suffix of the log, never part of
                a transaction, never one a durable write came after.

        Raises:
            Busy: the lock was not free in time (nothing was written; retryable).
        """

    #: Whether :meth:`prepare` exists (a backend whose round trips make it worth it).
    prepared_writes: bool = False

    def prepare(self, actor: str) -> AbstractContextManager[WriteTx]:
        """A write built without the chain lock and applied in one step on exit.

        Inside the block the write may insert rows, log events, store vectors and
        read the configuration (:data:`~engramdb.storage.schema.CONFIG_TABLES`),
        as the configuration stood when it is applied; anything else raises
        :class:`Unprepared`, and so does applying it if the configuration changed
        meanwhile. Its ``tx`` is a placeholder until then: ``stamp`` on the
        transaction turns the placeholder into the number the write got.
        """
        raise NotImplementedError("this backend has no prepared writes; use write()")

    # -- generic reads -------------------------------------------------

    @abstractmethod
    def fetch(
        self,
        table: str,
        where: Mapping[str, Any],
        *,
        order_by: str | None = None,
        limit: int | None = None,
    ) -> list[Row]: ...

    @abstractmethod
    def scan(self, table: str) -> Iterator[Row]:
        """Every row of a state table in key order (verify, export)."""

    @abstractmethod
    def meta(self, key: str) -> str | None: ...

    @abstractmethod
    def set_meta(self, key: str, value: str) -> None:
        """Set a configuration value (outside the log: embedder identity etc.)."""

    # -- memories --------------------------------------------------------

    @abstractmethod
    def list_memories(
        self, flt: RecallFilter, *, limit: int | None = None, order: str = "recent"
    ) -> list[Row]:
        """Memory rows matching ``flt``.

        ``order``: ``recent``, ``importance``, ``oldest``, or ``valid`` /
        ``valid_desc`` (by valid time: episodes in the order they happened).
        """

    @abstractmethod
    def search_text(self, query: str, flt: RecallFilter, limit: int, *, brief: bool = False
                    ) -> list[tuple[Row, float]]:
        """Full-text matches, best first, with a positive relevance score.

        ``brief``: the rows may hold only what recall's ranking reads (a backend
        for which that is cheaper says which in :meth:`whole_rows`); the chosen ones
        are then read in full with :meth:`whole_rows`, in the same snapshot: both
        calls belong inside one :meth:`snapshot` block (a backend that returns brief
        rows raises :class:`StorageError` outside one).
        """

    def search_text_current(self, w: WriteTx, query: str, flt: RecallFilter, limit: int,
                            *, other_than: str) -> list[tuple[str, Mapping[str, Any] | None]]:
        """The best ``limit`` full-text matches other than memory ``other_than`` (it is
        searched for one more), as ``(id, row)``: ``row`` is the match's current
        version as ``w.fetch`` reads it now (a read-only mapping), or None if it is
        no longer current.

        What a write's free-text contradiction check judges. This default asks
        ``w`` for each match again; a backend whose search read through ``w``'s own
        connection returns the rows it read.
        """
        ids = [str(found["id"]) for found, _ in self.search_text(query, flt, limit + 1)
               if found["id"] != other_than][:limit]
        out: list[tuple[str, Mapping[str, Any] | None]] = []
        for memory_id in ids:
            current = w.fetch("memories", {"id": memory_id, "tx_to": None})
            out.append((memory_id, current[0] if current else None))
        return out

    @abstractmethod
    def search_vector(
        self, vector: np.ndarray, flt: RecallFilter, limit: int, *, brief: bool = False
    ) -> list[tuple[Row, float]]:
        """Nearest memories by cosine similarity, best first (``brief``: as in
        :meth:`search_text`)."""

    def search_text_and_vector(
        self, query: str, vector: np.ndarray, flt: RecallFilter, limit: int, *,
        brief: bool = False,
    ) -> tuple[list[tuple[Row, float]], list[tuple[Row, float]]]:
        """``(search_text(query, ...), search_vector(vector, ...))``, the same lists.

        For a reader that needs both and neither depends on the other: a backend
        may ask them together (PostgreSQL: one round trip instead of two). This
        default asks one after the other.
        """
        return (self.search_text(query, flt, limit, brief=brief),
                self.search_vector(vector, flt, limit, brief=brief))

    def whole_rows(self, rows: Sequence[Row]) -> list[Row | None]:
        """``rows`` returned by a ``brief`` search, each with every memory column (None
        for one no longer stored: never inside the snapshot it was found in). This
        default: the searches return whole rows."""
        return list(rows)

    def snapshot(self, ahead: Callable[[], SearchAhead | None] | None = None
                 ) -> AbstractContextManager[None]:
        """Reads of this thread inside the block all see one committed state.

        A write committed by another connection or process meanwhile is seen
        by none of them. Recall reads its head, both candidate searches, their
        rows and the contested marks under one.
        Nested blocks share the outer snapshot. (Default: no pinning, for
        backends whose every read is already one snapshot.)

        ``ahead``: a hint, which a backend may ignore (this default does): the
        searches the block will ask first, planned by reading this storage as
        usual (head, namespaces, configuration). A backend may call it on values
        it predicts, send those searches as the snapshot opens, and answer the
        block's own search with their rows only when it is exactly the same
        (PostgreSQL: :mod:`~engramdb.storage.postgres.ahead`).
        """
        return nullcontext()

    def search_vectors(
        self, vectors: Sequence[np.ndarray], flt: RecallFilter, limit: int,
        min_similarity: float | None = None,
    ) -> list[list[tuple[Row, float]]]:
        """:meth:`search_vector` for each of ``vectors``, in order.

        Hits below ``min_similarity`` (when given) are left out. A backend
        overrides this when it can answer many queries at once more cheaply
        (e.g. one matrix product); the answers must be the same, except that
        an exact ranking may stand in for an approximate one.
        """
        return [[(r, s) for r, s in self.search_vector(v, flt, limit)
                 if min_similarity is None or s >= min_similarity] for v in vectors]

    @abstractmethod
    def namespaces(self) -> list[str]:
        """Every namespace that holds at least one memory version."""

    # -- lifecycle ----------------------------------------------------------

    @abstractmethod
    def due_to_expire(self, now: int, limit: int) -> list[Row]:
        """Current active or quarantined rows with ``expires_at <= now``, soonest first
        (by index: proportional to what is due)."""

    @abstractmethod
    def recorded_between(self, after: int, until: int, limit: int) -> list[Row]:
        """Current active rows with ``after < recorded_at <= until``, oldest first."""

    @abstractmethod
    def used_between(self, after: int, until: int, limit: int) -> list[Row]:
        """``memory_usage`` rows with ``after < last_used <= until``, oldest first."""

    @abstractmethod
    def find_events(self, subject_refs: Sequence[str], txs: Sequence[int]) -> list[RawEvent]:
        """Events naming one of ``subject_refs`` or written by one of ``txs``, in order."""

    @abstractmethod
    def namespaces_since(self, tx: int) -> list[str]:
        """Namespaces with a memory row written or closed after ``tx`` (by index)."""

    @abstractmethod
    def mentioning(self, table: str, columns: Sequence[str], needle: str) -> list[Row]:
        """Rows of ``table`` whose text or JSON ``columns`` may contain ``needle``: a
        superset (case may differ) that the caller narrows; used by ``forget``."""

    @abstractmethod
    def purge(self) -> dict[str, Any]:
        """Make erased bytes unrecoverable from the files (after :meth:`WriteTx.erase`):
        merge full-text segments, checkpoint and truncate the WAL (SQLite) or
        rewrite the tables and checkpoint (PostgreSQL). Returns what it did; a
        reader holding an old snapshot leaves it unfinished, said by ``wal_busy``
        (SQLite) or ``readers_busy`` (PostgreSQL) being true, and the engine then
        marks the erasure pending for ``maintain`` to purge again."""

    # -- log --------------------------------------------------------------

    @abstractmethod
    def head(self) -> Head: ...

    @abstractmethod
    def events(self, after: int = 0, limit: int = 1000) -> list[RawEvent]:
        """Events with ``seq > after`` in order."""

    @abstractmethod
    def tx_at(self, when: int) -> int:
        """The last transaction recorded at or before ``when`` (micros); 0 if none."""

    @abstractmethod
    def tx_time(self, tx: int) -> int:
        """When transaction ``tx`` (or the last one before it) was recorded, in micros."""

    @abstractmethod
    def counts(self) -> dict[str, int]:
        """Row counts for metrics: memories per status, events, ..."""

    def info(self) -> StorageInfo:
        """Which backend this is and where (for doors: they never see the storage itself)."""
        return StorageInfo(backend=self.dialect, url=self.url, path=getattr(self, "path", None))

    @abstractmethod
    def wait_for_events(self, after_seq: int, timeout: float) -> bool:
        """Block until the log has an event after ``after_seq``, or ``timeout`` seconds pass.

        A wake-up only (PostgreSQL: LISTEN/NOTIFY; SQLite: polling the file);
        re-read the log with :meth:`events` either way.

        Returns:
            True if the log now extends past ``after_seq``.
        """


def top_hits(sims: np.ndarray, limit: int, min_similarity: float | None = None
             ) -> list[list[tuple[int, float]]]:
    """Per row of a (queries x candidates) similarity matrix: the best ``limit``
    (column, similarity) pairs, best first, those below ``min_similarity`` left out.

    With a floor most candidates are dropped by one comparison, which is far
    cheaper than partitioning every row.
    """
    out: list[list[tuple[int, float]]] = []
    if min_similarity is not None:
        rows, cols = np.nonzero(sims >= min_similarity)
        bounds = np.searchsorted(rows, np.arange(sims.shape[0] + 1))
        for q in range(sims.shape[0]):
            idx = cols[bounds[q]:bounds[q + 1]]
            vals = sims[q, idx]
            if len(idx) > limit:
                keep = np.argpartition(-vals, limit - 1)[:limit]
                idx, vals = idx[keep], vals[keep]
            order = np.argsort(-vals, kind="stable")
            out.append(list(zip(idx[order].tolist(), vals[order].tolist(), strict=True)))
        return out
    k = min(limit, sims.shape[1])
    if k <= 0:
        return [[] for _ in range(sims.shape[0])]
    top = (np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < sims.shape[1]
           else np.broadcast_to(np.arange(sims.shape[1]), sims.shape))
    top_sims = np.take_along_axis(sims, top, axis=1)
    order = np.argsort(-top_sims, axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    top_sims = np.take_along_axis(top_sims, order, axis=1)
    for idx, vals in zip(top.tolist(), top_sims.tolist(), strict=True):
        out.append([(i, v) for i, v in zip(idx, vals, strict=True) if math.isfinite(v)])
    return out
