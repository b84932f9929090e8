"""The embedded backend: one SQLite file, WAL, serialised writers.

Durability: ``synchronous=FULL`` by default, so a write is acknowledged only
once its COMMIT is on disk; a deferred write (``durable=False``) commits at
``NORMAL`` and is flushed by :mod:`.flush`. Writers take ``BEGIN IMMEDIATE``, which is the
single lock point of the audit chain; any number of processes may open the
same file. Full text is FTS5 (kept by triggers), vectors are an in-process
exact index (:mod:`.vectors`) refreshed from the file before each search.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np

from engramdb.errors import Busy, InvalidInput, StorageError
from engramdb.model import RecallFilter
from engramdb.storage.base import Head, RawEvent, Row, SearchAhead, WriteTx
from engramdb.storage.migrations import load, migrate
from engramdb.storage.schema import CONFIG_TABLES, TABLES
from engramdb.storage.sql import SqlStorage, SqlWriteTx, decode_row, memory_where
from engramdb.storage.sqlite.ann import VectorSearch
from engramdb.storage.sqlite.candidates import text_candidates
from engramdb.storage.sqlite.dialect import SQLiteDialect, statements
from engramdb.storage.sqlite.flush import (
    CHECKPOINT_BYTES,
    FTS_MERGE_EVERY,
    BackgroundCheckpoint,
    DeferredFlush,
    WalWriteback,
    checkpoint_pages,
    merge_fulltext,
)
from engramdb.storage.sqlite.fulltext import FullText, fts_query
from engramdb.storage.sqlite.lexical import LexicalSearch, in_rank_order
from engramdb.storage.sqlite.pinned import PIN_SQL, ConfigReads, Pinned, pin
from engramdb.storage.sqlite.rows import (
    BRIEF,
    CANDIDATE,
    brief,
    candidate,
    is_brief,
    whole_rows,
)
from engramdb.storage.sqlite.vectors import VectorIndex
from engramdb.storage.words import stored_words

__all__ = ["CHECKPOINT_BYTES", "SQLiteStorage", "fts_query"]

# The most of the file each connection reads through a memory map (address space,
# not memory: only pages read are resident, shared with the page cache).
MMAP_BYTES = 1 << 30
# How long an erasure's purge waits for readers of an old snapshot before it leaves
# the WAL to ``maintain`` (``wal_busy``): its checkpoint holds off every writer meanwhile.
PURGE_WAIT_S = 1.0

# Connections a forked child inherited: kept alive and unused (see _after_fork).
_INHERITED: list[sqlite3.Connection] = []


class SQLiteStorage(SqlStorage):
    """SQLite backend. ``synchronous`` may be ``FULL`` (default) or ``NORMAL``."""

    def __init__(self, path: str | Path, *, synchronous: str = "FULL",
                 busy_timeout_s: float = 60.0) -> None:
        self.dialect_impl = SQLiteDialect()
        self.path = str(path)
        self.url = f"sqlite:///{self.path}"
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise InvalidInput("synchronous must be FULL, NORMAL or EXTRA")
        self._synchronous = synchronous.upper()
        self._busy_timeout = busy_timeout_s
        self._local = threading.local()
        self._all_conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._vindex: VectorSearch | None = None
        self._lexical = LexicalSearch(self._plain_conn, self.path)
        self._erased_tx = 0
        self._config_reads = ConfigReads()
        self._closed = False
        self._pid = os.getpid()
        self._flush = DeferredFlush(self.path + "-wal")
        self._checkpoint = BackgroundCheckpoint(self.path, self._checkpoint_conn)
        self._writeback = WalWriteback(self.path + "-wal")

    # -- connections -------------------------------------------------------

    def _new_conn(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA wal_autocheckpoint = {checkpoint_pages(conn)}")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            conn.execute("PRAGMA temp_store = MEMORY")
            # Deleted content is overwritten with zeros, not left in free pages:
            # what erasure removes must not be readable from the file.
            conn.execute("PRAGMA secure_delete = ON")
            # Fills the ranking's stored words of existing rows (migration 0020).
            conn.create_function("engram_words", 1, stored_words, deterministic=True)
        except sqlite3.Error as exc:
            raise StorageError(
                f"cannot open SQLite database at {self.path!r}: {exc}; check the path "
                "and that the directory is writable"
            ) from exc
        with self._conns_lock:
            self._all_conns.append(conn)
        return conn

    def _conn(self, which: str) -> sqlite3.Connection:
        if self._closed:
            raise StorageError("the database is closed; open it again")
        if self._pid != os.getpid():
            self._after_fork()
        conn = getattr(self._local, which, None)
        if conn is None:
            conn = self._new_conn()
            if which == "reader":
                # Searches read pages through a memory map, not a read() call per page
                # (recall looks up ~100 candidate rows by id: a third less time). Only
                # the reader: a bulk load's pages would all count as resident.
                conn.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")
            else:  # full text may be searched on the writer (see _warm): its temp tables now
                self._fulltext().prepare(conn)  # DDL inside a write that rolls back would undo them
            setattr(self._local, which, conn)
        return conn

    def _warm(self, *, writing: bool) -> sqlite3.Connection:
        """The writer for a read that follows this thread's own writes, else the reader.

        Any commit resets the page cache of every other connection to the file,
        so the reader starts each read after a write cold (a put's full-text
        candidate search and its change-feed poll were mostly that re-read); the
        writer's cache stays warm. ``writing``: read inside this thread's open
        write transaction (under the write lock: the latest commit plus this
        transaction's own rows, as its ``fetch`` reads); otherwise only while the
        writer is idle (autocommit: the latest commit). Never while the reader
        holds a snapshot (one read point for a whole recall).
        """
        writer = getattr(self._local, "writer", None)
        reader = getattr(self._local, "reader", None)
        if writer is None or writer.in_transaction is not writing or (
                reader is not None and reader.in_transaction) or self._closed:
            return self._conn("reader")
        return writer

    def _after_fork(self) -> None:
        """In a forked child: never touch the parent's connections, open new ones.

        SQLite connections must not cross ``fork()``; closing them here could
        also disturb the parent's locks, so they are kept referenced and unused.
        Locks held by other parent threads at fork time would never be
        released, so they are new too, and the in-memory vector index (its
        lock included) is rebuilt from the file on first use.
        """
        _INHERITED.extend(self._all_conns)
        self._pid = os.getpid()
        self._local = threading.local()
        self._all_conns = []
        self._conns_lock = threading.Lock()
        self._vindex = None
        self._lexical = LexicalSearch(self._plain_conn, self.path)
        self._flush = DeferredFlush(self.path + "-wal")  # the parent's timer stays there
        self._checkpoint = BackgroundCheckpoint(self.path, self._checkpoint_conn)
        self._writeback = WalWriteback(self.path + "-wal")

    @contextmanager
    def _read_conn(self) -> Iterator[sqlite3.Connection]:
        yield self._conn("reader")

    def _in_snapshot(self, call: str) -> None:
        """Brief rows are read whole later, which is exact only in the snapshot they
        were found in: refuse them outside one (each statement would read its own)."""
        if not self._conn("reader").in_transaction:
            raise StorageError(f"{call} must run inside storage.snapshot(): brief rows are "
                               "read whole in the snapshot they were found in")

    @contextmanager
    def snapshot(self, ahead: Callable[[], SearchAhead | None] | None = None
                 ) -> Iterator[None]:
        """One WAL read transaction on this thread's reader (see ``Storage.snapshot``;
        ``ahead`` is not used: no round trips to save)."""
        conn = self._conn("reader")
        if conn.in_transaction:  # nested: the outer block's snapshot holds
            yield
            return
        try:
            conn.execute("BEGIN")
            # A deferred transaction takes its snapshot at its first read: take it now,
            # with the one-row facts the snapshot's reads need (.pinned).
            self._local.pinned = pin(conn, self._exec(conn, PIN_SQL).fetchone())
        except BaseException:
            self._local.pinned = None
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        try:
            yield
        finally:
            self._local.pinned = None
            if conn.in_transaction:
                conn.execute("COMMIT")  # read-only: nothing to keep or lose

    def _pinned(self, conn: Any) -> Pinned | None:
        """The open snapshot's facts if ``conn`` reads in it, else None (read them)."""
        pinned: Pinned | None = getattr(self._local, "pinned", None)
        return pinned if pinned is not None and pinned.conn is conn else None

    def _head_tx(self, conn: Any) -> int:
        pinned = self._pinned(conn)
        return pinned.head.tx if pinned is not None else super()._head_tx(conn)

    def fetch(self, table: str, where: Mapping[str, Any], *, order_by: str | None = None,
              limit: int | None = None) -> list[Row]:
        pinned = getattr(self._local, "pinned", None)
        if (pinned is None or table not in CONFIG_TABLES
                or getattr(self._local, "config_scope", None) is not None):
            return super().fetch(table, where, order_by=order_by, limit=limit)
        # In a snapshot: a configuration query's rows as kept under its config_tx.
        raw = self._config_reads.rows(
            table, where, order_by, limit, pinned.config_tx,
            lambda: self._select(pinned.conn, table, where, order_by=order_by, limit=limit))
        spec = TABLES[table]
        return [decode_row(spec, list(spec.columns), r) for r in raw]

    @contextmanager
    def _write_conn(self, wait: bool = True, durable: bool = True
                    ) -> Iterator[sqlite3.Connection]:
        conn = self._conn("writer")
        if conn.in_transaction:
            raise StorageError(
                "a write transaction is already open in this thread; nest work inside it "
                "instead of opening another"
            )
        deferred = not durable and self._synchronous != "NORMAL"
        if deferred:  # the WAL is written at COMMIT, not synced: DeferredFlush syncs it
            conn.execute("PRAGMA synchronous = NORMAL")
            try:
                with self._write_conn(wait) as inner:
                    yield inner
            finally:
                conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            self._flush.schedule()
            return
        if wait:
            self._exec(conn, "BEGIN IMMEDIATE")
        else:  # take the lock only if it is free now
            conn.execute("PRAGMA busy_timeout = 0")
            try:
                self._exec(conn, "BEGIN IMMEDIATE")
            finally:
                conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        self._local.max_row_id = ()  # kept for this transaction only: see _max_row_id
        changes = conn.total_changes
        try:
            yield conn
        except BaseException:
            self._local.max_row_id = None
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._local.max_row_id = None
        # A large commit (a batch) leaves its checkpoint to BackgroundCheckpoint.
        bulk = self._checkpoint.takes(conn.total_changes - changes)
        if bulk:
            conn.execute("PRAGMA wal_autocheckpoint = 0")
        elif getattr(self._local, "fts_segments", 0) >= FTS_MERGE_EVERY:
            # Not in a large commit (a batch keeps FTS5's automerge alone): a single
            # write's commit takes a step of the full-text merge with it.
            self._local.fts_segments = 0
            merge_fulltext(conn)
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StorageError(f"commit failed: {exc}") from exc
        finally:
            if bulk:
                conn.execute(f"PRAGMA wal_autocheckpoint = {checkpoint_pages(conn)}")
        if bulk:
            self._checkpoint.kick()

    def _max_row_id(self, conn: sqlite3.Connection) -> int:
        """The largest ``memories.row_id`` (0: none), read through ``conn``.

        Read once per state of a write transaction of :meth:`_write_conn`: a
        semantic write's candidate search and its insert, which comes next, both
        ask, with nothing written in between. Kept from its BEGIN to its end only,
        keyed by the connection's change count, which every insert and delete
        moves; no other connection writes while this one holds the lock, and no
        savepoint on the writer undoes a memory row (the scratch tables' savepoints
        only write temp tables, and their inserts move the count: read again).
        """
        local = self._local
        known = getattr(local, "max_row_id", None)
        kept = known is not None and conn is local.writer and conn.in_transaction
        if kept and known and known[0] == conn.total_changes:
            return int(known[1])
        value = int(self._exec(conn, "SELECT COALESCE(MAX(row_id), 0) FROM memories"
                               ).fetchone()[0])
        if kept:
            local.max_row_id = (conn.total_changes, value)
        return value

    def _exec(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._run(conn.execute, sql, params)

    def _exec_many(self, conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._run(conn.executemany, sql, rows)

    def _insert_many(self, conn: Any, table: str, sql: str, rows: Sequence[Sequence[Any]]
                     ) -> None:
        if table != "memories":
            self._exec_many(conn, sql, rows)
        else:
            # Full text in one statement for the rows just inserted (migration 0017):
            # under the write lock, new rows take the row ids after the largest.
            last = self._max_row_id(conn)
            self._exec_many(conn, sql, rows)
            self._exec(conn, _FTS_FILL, [last])
            self._local.fts_segments = getattr(self._local, "fts_segments", 0) + 1
        self._writeback.kick(len(rows))  # a batch's WAL frames start for the disk now

    @staticmethod
    def _run(method: Any, sql: str, params: Any) -> Any:
        try:
            return method(sql, params)
        except sqlite3.IntegrityError as exc:
            raise StorageError(f"constraint violated: {exc}") from exc
        except sqlite3.OperationalError as exc:
            msg = str(exc)
            if "locked" in msg or "busy" in msg:
                raise Busy(
                    "the database stayed locked by another writer; nothing was written: "
                    "retry the request") from exc
            raise StorageError(f"SQLite error: {msg}") from exc
        except sqlite3.Error as exc:
            raise StorageError(f"SQLite error: {exc}") from exc
        except OverflowError as exc:
            # A value given where an id or number goes, beyond 64 bits: bad input.
            raise InvalidInput("a number is beyond the 64-bit range the database stores; "
                               "check ids and numbers passed in") from exc

    def close(self) -> None:
        self._closed = True
        self._checkpoint.close()
        self._writeback.close()
        self._flush.now()  # deferred writes are on disk once the database is closed
        with self._conns_lock:
            for conn in self._all_conns:
                with suppress(sqlite3.Error):
                    conn.close()
            self._all_conns.clear()

    # -- schema --------------------------------------------------------------

    def setup(self) -> None:
        conn = self._new_conn()
        try:
            self._exec(conn, "BEGIN IMMEDIATE")
            migrate(conn.execute, load("engramdb.storage.sqlite"), statements=statements)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StorageError(f"cannot set up the SQLite schema at {self.path!r}: {exc}") from exc

    def schema_version(self) -> int:
        with self._read_conn() as conn:
            return int(conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._write_conn() as conn:
            self._exec(
                conn,
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [key, value],
            )

    # -- vectors ---------------------------------------------------------------

    def _put_vectors(self, conn: Any, items: Sequence[tuple[str, int, np.ndarray]]) -> None:
        # The little-endian float32 array itself is bound (its buffer, copied once by
        # SQLite), not a bytes copy of it made first.
        conn.executemany(
            "INSERT OR REPLACE INTO memory_vectors (id, version, vec) VALUES (?, ?, ?)",
            [(i, v, np.ascontiguousarray(vec, dtype="<f4")) for i, v, vec in items],
        )
        self._writeback.kick(len(items))

    def search_vector(
        self, vector: np.ndarray, flt: RecallFilter, limit: int, *, brief: bool = False
    ) -> list[tuple[dict[str, Any], float]]:
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if brief:
            self._in_snapshot("search_vector(brief=True)")
        with self._read_conn() as conn:
            index, allowed = self._fresh_index(conn, vector.size, flt)
            pinned = self._pinned(conn)
            found = index.search(conn, vector, flt, limit, allowed,
                                 head_tx=None if pinned is None else pinned.head.tx)
            return self._rows_by_row_id(conn, found, brief)

    def search_vectors(
        self, vectors: Sequence[np.ndarray], flt: RecallFilter, limit: int,
        min_similarity: float | None = None,
    ) -> list[list[tuple[dict[str, Any], float]]]:
        """:meth:`search_vector` for each vector: one refresh, one mask, one matrix product."""
        if len(vectors) == 0:
            return []
        matrix = np.asarray(np.stack([np.asarray(v, dtype=np.float32).reshape(-1)
                                      for v in vectors]), dtype=np.float32)
        with self._read_conn() as conn:
            index, allowed = self._fresh_index(conn, matrix.shape[1], flt)
            found = index.search_many(conn, matrix, flt, limit, allowed, min_similarity)
            rows = self._rows_by_ids(conn, sorted({r for hits in found for r, _ in hits}))
            return [[(rows[r], s) for r, s in hits if r in rows] for hits in found]

    def _fresh_index(self, conn: Any, dimension: int, flt: RecallFilter
                     ) -> tuple[VectorSearch, list[int] | None]:
        """The vector search of this dimension, and the SQL-only filter's rows."""
        search = self._vindex
        # An erasure (in any process) deletes rows this process may hold in memory
        # (the delta of rows newer than the snapshot): start over, so no process keeps
        # an erased memory's vector. ``purge`` has already removed the snapshot files.
        pinned = self._pinned(conn)
        erased_tx = pinned.erased_tx if pinned is not None else conn.execute(
            "SELECT COALESCE(MAX(tx), 0) FROM erasures").fetchone()[0]
        if search is None or search.dimension != dimension or erased_tx != self._erased_tx:
            search = self._vindex = VectorSearch(
                None if self.path == ":memory:" else self.path, dimension, self._plain_conn)
            self._erased_tx = erased_tx
        allowed = None
        if VectorIndex.needs_sql(flt):
            cond, params = memory_where(flt, self.dialect_impl)
            allowed = [r[0] for r in self._exec(
                conn, f"SELECT m.row_id FROM memories m WHERE {cond}", params)]
        return search, allowed

    def _plain_conn(self) -> sqlite3.Connection:
        """A private connection (the index builder's), not shared with any thread."""
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        return conn

    def _checkpoint_conn(self) -> sqlite3.Connection:
        """BackgroundCheckpoint's connection: it syncs the file as the writers would."""
        conn = self._plain_conn()
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        return conn

    def rebuild_vector_index(self) -> None:
        """Build the shared vector snapshot now (bulk loads, benchmarks, ``engram`` tools)."""
        recorded = self.meta("embedder")
        dimension = int(json.loads(recorded).get("dimension") or 0) if recorded else 0
        if dimension <= 0:
            return  # no embedder: no vectors to index
        with self._read_conn() as conn:
            search, _ = self._fresh_index(conn, dimension, RecallFilter())
        search.rebuild()

    def _rows_by_row_id(
        self, conn: Any, found: list[tuple[int, float]], brief_rows: bool = False
    ) -> list[tuple[dict[str, Any], float]]:
        if not found:
            return []
        rows = self._rows_by_ids(conn, [r for r, _ in found], brief_rows=brief_rows)
        return [(rows[r], s) for r, s in found if r in rows]

    def _rows_by_ids(self, conn: Any, row_ids: Sequence[int], flt: RecallFilter | None = None,
                     brief_rows: bool = False) -> dict[int, dict[str, Any]]:
        """Memory rows by row id (brief ones: :mod:`.rows`), keeping only those that
        pass ``flt`` if given."""
        if not row_ids:
            return {}
        cond, params = ("1 = 1", []) if flt is None else memory_where(flt, self.dialect_impl)
        cols, decode = (BRIEF, brief) if brief_rows else (CANDIDATE, candidate)
        # The ids as one JSON array, each looked up by row id (CROSS JOIN keeps that
        # order of the loops): an IN list is sorted into a temporary index first, and
        # with a filter the planner may walk a filter column's index instead.
        return {r[0]: decode(r[1:]) for r in self._exec(
            conn,
            f"SELECT m.row_id, {cols} FROM json_each(?) j "
            f"CROSS JOIN memories m ON m.row_id = j.value WHERE {cond}",
            [json.dumps(list(row_ids)), *params])}

    def whole_rows(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any] | None]:
        """``rows`` of :meth:`search_text` and :meth:`search_vector` (``brief=True``)
        read in full, on the connection (and in the snapshot) the searches read."""
        if any(map(is_brief, rows)):
            self._in_snapshot("whole_rows")
        conn = self._warm(writing=True)
        return whole_rows(lambda sql, params: self._exec(conn, sql, params), rows)

    # -- full text ---------------------------------------------------------------

    def search_text(
        self, query: str, flt: RecallFilter, limit: int, *, brief: bool = False
    ) -> list[tuple[dict[str, Any], float]]:
        if brief:
            self._in_snapshot("search_text(brief=True)")
        conn = self._warm(writing=True)
        if conn is not getattr(self._local, "reader", None):
            return self._search_text(conn, query, flt, limit, brief_rows=brief)
        with self.snapshot():  # the in-process index reads one snapshot (lexical.py)
            return self._search_text(conn, query, flt, limit, lexical=True, brief_rows=brief)

    def search_text_current(self, w: WriteTx, query: str, flt: RecallFilter, limit: int,
                            *, other_than: str) -> list[tuple[str, Mapping[str, Any] | None]]:
        conn = self._warm(writing=True)
        reads_through = getattr(w, "reads_through", None)
        if reads_through is None or not reads_through(conn):
            return super().search_text_current(w, query, flt, limit, other_than=other_than)
        # The search reads w's own connection, so its rows are what w.fetch would read
        # again: w's updates reach the connection at once, and the inserts it still
        # buffers are new rows (a new version's update closing the old one is sent first).
        found = text_candidates(conn, self._fulltext(), self.dialect_impl, self._run,
                                lambda: len(self.namespaces()), query, flt, limit + 1,
                                self._max_row_id(conn))
        out: list[tuple[str, Mapping[str, Any] | None]] = [
            (str(row["id"]), row) for row in found if row["id"] != other_than]
        return out[:limit]

    def _search_text(self, conn: sqlite3.Connection, query: str, flt: RecallFilter,
                     limit: int, max_words: int | None = None, lexical: bool = False,
                     brief_rows: bool = False) -> list[tuple[dict[str, Any], float]]:
        if limit <= 0:
            return []
        cols, decode = (BRIEF, brief) if brief_rows else (CANDIDATE, candidate)
        fts = self._fulltext()
        pinned = self._pinned(conn)
        total = pinned.max_row_id if pinned is not None else conn.execute(
            "SELECT MAX(row_id) FROM memories").fetchone()[0] or 0
        cond, params = memory_where(flt, self.dialect_impl)
        found = self._lexical.ranked(conn, fts, query, flt, total, pinned) if lexical else None
        if found is not None:  # ranked in process, the filter's columns applied inside
            return [(decode(r[1:]), s) for r, s in in_rank_order(
                *found, limit, lambda ids, n: self._passing(conn, ids, cond, params, n, cols))]
        words = fts.match(conn, query, total, max_words)
        if words is None:
            return []
        # The reader's list of committed names (its cache outlives a write), read
        # only for a filter of several namespaces.
        scope = fts.scope(conn, flt.namespaces, lambda: len(self.namespaces()), total)
        match = words if scope is None else f"{words} AND {scope}"
        # Rank in FTS5 alone, then filter the best candidates. Exact whenever
        # at least `limit` candidates pass the filter (any better-ranked match
        # passing it is among them) or FTS5 had no more matches; otherwise the
        # filtered query below runs in full.
        pool = limit * 2 + 20
        ranked = self._run(conn.execute, *_ranked(match, pool)).fetchall()
        if not ranked:
            return []
        passing = self._passing(conn, [r for r, _ in ranked], cond, params, limit, cols)
        if len(passing) >= limit or len(ranked) < pool:
            return [(decode(r[1:]), -float(ranked[r[0]][1])) for r in passing]
        cur = self._exec(
            conn,
            f"SELECT {cols}, {_BM25} AS rank "
            "FROM memories_fts JOIN memories m ON m.row_id = memories_fts.rowid "
            f"WHERE memories_fts MATCH ? AND {cond} "
            f"ORDER BY rank, m.row_id LIMIT {int(limit)}",
            [match, *params],
        )
        return [(decode(r[:-1]), -float(r[-1])) for r in cur.fetchall()]

    def _passing(self, conn: sqlite3.Connection, row_ids: list[int], cond: str,
                 params: list[Any], limit: int, cols: str = CANDIDATE) -> list[Any]:
        """The first ``limit`` of ``row_ids`` (ranked) passing ``cond``: (index, columns...).

        CROSS JOIN: look the candidates up by row id, in rank order (not by a filter
        column's index). The loop runs over the JSON array in order, so LIMIT reads no
        further (should a SQLite build ever return them out of order: asked again, sorted).
        """
        sql = (f"SELECT j.key, {cols} FROM json_each(?) j "
               f"CROSS JOIN memories m ON m.row_id = j.value WHERE {cond}")
        args = [json.dumps(row_ids), *params]
        passing = self._exec(conn, f"{sql} LIMIT {int(limit)}", args).fetchall()
        if any(a[0] >= b[0] for a, b in itertools.pairwise(passing)):
            passing = self._exec(conn, f"{sql} ORDER BY j.key LIMIT {int(limit)}",
                                 args).fetchall()
        return list(passing)

    def _fulltext(self) -> FullText:
        fts: FullText | None = getattr(self._local, "fulltext", None)
        if fts is None:
            fts = self._local.fulltext = FullText()
        return fts

    # -- erasure -----------------------------------------------------------------

    def purge(self) -> dict[str, Any]:
        """After an erasure: merge the full-text index into one segment (FTS5 keeps a
        deleted row's terms in older segments until a merge rewrites them), then
        checkpoint and truncate the WAL. With ``secure_delete`` on, every page
        freed on the way is zeroed, so the erased bytes are in no file.
        A checkpoint cannot finish while another connection reads an old
        snapshot; ``wal_busy`` says so and ``maintain`` retries later. It waits
        for such readers at most :data:`PURGE_WAIT_S`, not the busy timeout:
        while it waits, no other writer may commit.
        """
        conn = self._conn("writer")
        self._exec(conn, "INSERT INTO memories_fts (memories_fts) VALUES ('optimize')")
        conn.execute(f"PRAGMA busy_timeout = {int(PURGE_WAIT_S * 1000)}")
        try:
            busy, wal_pages, moved = self._exec(
                conn, "PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        # The vector index's snapshot files (a projection, rebuilt from the database on
        # the next search) still hold the erased vectors: remove them. A process that
        # has them mapped drops them at its next search (see _fresh_index).
        snapshots = 0
        if self.path != ":memory:":
            vindex = Path(self.path + "-vindex")
            snapshots = int(vindex.exists())
            shutil.rmtree(vindex, ignore_errors=True)
        self._vindex = None
        self._lexical.drop()
        return {"fts_optimized": True, "wal_busy": bool(busy), "wal_pages": int(wal_pages),
                "checkpointed_pages": int(moved), "vector_snapshots_removed": snapshots}

    # -- change feed -------------------------------------------------------------

    def head(self) -> Head:
        # A follower (an adapter's feed) reads the head right after its own commit:
        # on the idle writer its page is cached; the reader would re-read it.
        conn = self._warm(writing=False)
        pinned = self._pinned(conn)
        if pinned is not None:  # inside a snapshot: the head it read first
            return pinned.head
        seq, digest, tx, recorded_at = self._exec(
            conn, "SELECT seq, hash, tx, recorded_at FROM chain_head WHERE id = 1").fetchone()
        return Head(seq, digest, tx, recorded_at)

    def events(self, after: int = 0, limit: int = 1000) -> list[RawEvent]:
        # A follower polls right after its own commit: read the log on the warm writer.
        conn = self._warm(writing=False)
        if conn is getattr(self._local, "reader", None):
            return super().events(after, limit)
        return self._read_events(conn, after, limit)

    def wait_for_events(self, after_seq: int, timeout: float, *, poll_s: float = 0.05) -> bool:
        """Block until the log has an event after ``after_seq``, or ``timeout`` seconds pass.

        SQLite has no notifications, so this polls the one-row chain head. A
        wake-up only: re-read the log with :meth:`events` (by cursor) either way.

        Returns:
            True if the log now extends past ``after_seq``.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        while self.head().seq <= after_seq:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(poll_s, left))
        return True


def _ranked(match: str, pool: int) -> tuple[str, list[Any]]:
    return (f"SELECT rowid, {_BM25} AS rank FROM memories_fts WHERE memories_fts MATCH ? "
            f"ORDER BY rank, rowid LIMIT {int(pool)}", [match])


# The table's configured rank (migration 0013), called by name: SQLite's sorter then
# orders the matches, about a third faster than FTS5's own `ORDER BY rank` sorter
# (same scores). Ties go by row id, the same in the pool and the filtered query.
_BM25 = "bm25(memories_fts, 1.0, 0.0)"


_FTS_FILL = ("INSERT INTO memories_fts (rowid, text, scope) "
             "SELECT row_id, text, 'n' || hex(namespace) || '0' FROM memories WHERE row_id > ?")
_ = SqlWriteTx  # re-exported type for annotations in tests
