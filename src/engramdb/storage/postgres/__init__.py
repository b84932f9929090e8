"""The server backend: PostgreSQL with pgvector, shared by many processes and hosts.

``engramdb.open("postgresql://...")`` lands here. Everything that decides what
is written or hashed is the shared SQL of :mod:`engramdb.storage.sql`, so
SQLite and PostgreSQL store byte-identical logs; this module supplies
connections, the write lock, migrations, full-text and vector search.

Concurrency, the PostgreSQL way:

* Every write transaction starts with ``SELECT ... FROM chain_head ... FOR
  UPDATE``: the one lock point of the audit chain, taken in the same
  transaction as the data write, so writers from any number of processes are
  serialised exactly where the hash chain needs it, at READ COMMITTED.
  Compare-and-swap stays inside the statement (``UPDATE ... WHERE id = $1
  AND version = $2``, a zero row count is a :class:`VersionConflict`).
  Because the row lock orders all writers before they read anything,
  serialization failures cannot occur at READ COMMITTED and every writer
  takes its locks in the same order (chain head first), so there are no
  deadlocks between writers; should PostgreSQL report either anyway, it
  surfaces as a retryable :class:`StorageError`.
* Early lock release: writers do not hold the chain lock through their WAL
  flush, and are acknowledged after it (:mod:`.durability`).
* A write's statements go through one pipeline (psycopg pipeline mode): the
  inserts of a batch stream to the server without a round trip each; anything
  whose result the engine reads (a compare-and-swap's row count, a SELECT)
  is synchronised first.
* Connections come from a :class:`psycopg_pool.ConnectionPool`, per process:
  a child forked after the handle connected opens its own (:mod:`._fork`). A lost
  connection, a lock wait over ``lock_timeout`` or a dead server become
  ``StorageError(retryable=True)``; the pool then drops its dead connections
  so the next request reconnects.

Full text is a generated ``tsvector`` column (``english``) with a GIN index,
queried as an OR of the query's content words ranked by ``ts_rank_cd``.
Vectors live in ``memory_vectors.vec vector(N)`` (typed once the dimension is
known); an HNSW projection of them is maintained in the background
(:mod:`.ann`) and searched together with the not-yet-indexed rows, so a
vector is searchable as soon as its write commits. Embeddings are unit
vectors (the engine normalises them), so the index uses inner product
(``vector_ip_ops``), which ranks exactly as cosine and is cheaper. Every
filter is inside the SQL of both searches.

Change-feed wake-ups use LISTEN/NOTIFY (:mod:`.listener`); readers always
re-read the log by cursor.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import numpy as np
import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from engramdb.errors import InvalidInput, StorageError
from engramdb.model import RecallFilter
from engramdb.storage.base import Head, RawEvent, SearchAhead, Unprepared
from engramdb.storage.migrations import load, migrate
from engramdb.storage.postgres import fulltext, knn
from engramdb.storage.postgres._conn import (
    _SELECT_FROM,
    _WRITES_TO,
    PgDialect,
    _redact,
    _Rows,
    _TxConn,
    _vector_dumper,
    _VectorLoader,
    to_pyformat,
)
from engramdb.storage.postgres._fork import keep_unused, watch
from engramdb.storage.postgres.ahead import Predictor, Unpredictable
from engramdb.storage.postgres.ahead import plan as plan_ahead
from engramdb.storage.postgres.ahead import take as take_ahead
from engramdb.storage.postgres.ann import (
    GRAPH_M,
    AnnIndexer,
    backlog,
    ensure_pgvector,
    index_caught_up,
    recorded_dimension,
    scalar,
    type_vector_columns,
)
from engramdb.storage.postgres.bulk import insert_many, upsert_vectors
from engramdb.storage.postgres.candidates import Candidates
from engramdb.storage.postgres.combiner import Combiner, combine_options
from engramdb.storage.postgres.durability import durability_barrier, transaction
from engramdb.storage.postgres.errors import is_connection_loss, translate
from engramdb.storage.postgres.fulltext import TermStats
from engramdb.storage.postgres.listener import CHANNEL, ChangeListener
from engramdb.storage.postgres.prepared import PreparedWrite, PreparedWriteTx
from engramdb.storage.postgres.purge import purge
from engramdb.storage.postgres.snapshot import (
    DISTINCT_NAMESPACES,
    KnownNamespaces,
    pinned_rows,
    read_snapshot,
)
from engramdb.storage.schema import TABLES
from engramdb.storage.sql import SqlStorage, SqlWriteTx, decode_row

__all__ = ["PgDialect", "PostgresStorage"]

# pg_advisory_xact_lock key for schema changes (migrations, the vector column):
# the bytes of "engramdb" as a bigint, so it is recognisable in pg_locks.
_SCHEMA_LOCK = int.from_bytes(b"engramdb", "big") - 2**63

# Statements inside a write whose results the engine never reads: they stay queued
# in the pipeline. Everything else (SELECT, compare-and-swap UPDATE, DDL) is synced.
_NO_RESULT = ("INSERT", "NOTIFY", "UPDATE chain_head")
# How long a read holding one connection waits for a second (_second_conn), else it
# runs on the one it holds.
_SECOND_CONN_WAIT_S = 0.05


class PostgresStorage(SqlStorage):
    """PostgreSQL + pgvector backend.

    Args:
        url: a ``postgresql://`` URL (libpq syntax; any libpq parameter works).
        pool_min_size: connections kept open.
        pool_max_size: most connections this process opens.
        pool_timeout_s: how long a request waits for a free connection.
        connect_timeout_s: how long one connection attempt may take.
        lock_timeout_s: how long a writer waits for the chain lock before
            failing with a retryable :class:`StorageError`.
        hnsw_m: HNSW graph degree (index build parameter ``m``; 8 by default:
            half the server CPU per indexed vector of 16, the same recall
            quality with searches reading twice the candidates, see :mod:`.ann`).
        hnsw_ef_construction: HNSW build candidate list (``ef_construction``).
            Both apply when the background indexer (re)builds the index.
        application_name: shown in ``pg_stat_activity``.
        text_candidates: about how many full-text matches a query may rank
            before its most common words are dropped (see :mod:`.fulltext`).
        release_before_flush: release the chain lock before the WAL flush
            (:mod:`.durability`; opt-in: current-state reads may then see a
            write during its flush); ``False`` (default) holds it through the flush.
        combine: send this process's prepared writes through the write combiner
            (:mod:`.combiner`: a leader process on this host applies the writes of
            several in one call); opt-in, ``False`` by default. ``True``, or a dict of
            :class:`.combiner.Combiner`'s options (``leaders``, ``connections``,
            ``wait_s``, ``max_writes``).
    """

    def __init__(
        self,
        url: str,
        *,
        pool_min_size: int = 1,
        pool_max_size: int = 10,
        pool_timeout_s: float = 30.0,
        connect_timeout_s: float = 10.0,
        lock_timeout_s: float = 60.0,
        hnsw_m: int = GRAPH_M,
        hnsw_ef_construction: int = 64,
        application_name: str = "engramdb",
        text_candidates: int = 1000,
        release_before_flush: bool = False,
        combine: bool | Mapping[str, Any] = False,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("postgresql://", "postgres://")):
            raise InvalidInput("a PostgreSQL URL must start with postgresql://")
        if not 0 <= pool_min_size <= pool_max_size or pool_max_size < 1:
            raise InvalidInput("pool sizes must satisfy 0 <= pool_min_size <= pool_max_size, "
                               "pool_max_size >= 1")
        for name, value in (("pool_timeout_s", pool_timeout_s),
                            ("connect_timeout_s", connect_timeout_s),
                            ("lock_timeout_s", lock_timeout_s)):
            if not value > 0:
                raise InvalidInput(f"{name} must be a positive number of seconds")
        if not 2 <= hnsw_m <= 100 or not 4 <= hnsw_ef_construction <= 1000:
            raise InvalidInput("hnsw_m must be 2..100 and hnsw_ef_construction 4..1000")
        self.dialect_impl = PgDialect()
        self.url = _redact(url)
        self._conninfo = url
        self._pool_min = pool_min_size
        self._pool_max = pool_max_size
        self._pool_timeout = pool_timeout_s
        self._connect_kwargs: dict[str, Any] = {
            "connect_timeout": max(1, round(connect_timeout_s)),
            "application_name": application_name,
        }
        self._lock_timeout_ms = int(lock_timeout_s * 1000)
        self._hnsw = (int(hnsw_m), int(hnsw_ef_construction))
        self._pool: ConnectionPool[Any] | None = None
        self._pool_lock = threading.Lock()
        self._vector_oid: int | None = None
        self._vector_dim: int | None = None
        self._local = threading.local()
        self._listener: ChangeListener | None = None
        self._text_candidates = max(1, int(text_candidates))
        self._stats = TermStats()
        self._lexemes: dict[str, tuple[str, ...]] = {}  # word -> its english lexemes
        self._search_stats = knn.SearchStats()  # plans vector searches (knn.py)
        self._candidates = Candidates()  # large namespaces' batch searches (candidates.py)
        self._indexer = AnnIndexer(url, self._connect_kwargs, m=int(hnsw_m),
                                   ef_construction=int(hnsw_ef_construction))
        self._closed = False
        self.release_before_flush = bool(release_before_flush)  # as asked; setup() decides
        self._durable_sql = ""  # the durability barrier, when writes release early
        self.config_epoch: int | None = None  # chain_head.config_tx as last seen
        self.last_recorded_at = 0  # the latest recorded_at this process wrote or was told of
        self.known_namespaces = KnownNamespaces()  # what snapshots list (.snapshot)
        self.predictor = Predictor()  # the last snapshot's values (.ahead)
        self.combiner: Combiner | None = None
        if combine:
            self.combiner = Combiner(self, **combine_options(combine))
        watch(self)

    # -- connections -------------------------------------------------------------

    def _after_fork(self) -> None:
        """In a forked child: leave what the parent opened alone, open anew on first use."""
        keep_unused(self._pool, self._listener, self._indexer)
        self._pool, self._listener = None, None
        self._pool_lock = threading.Lock()
        self._local = threading.local()
        self.known_namespaces = KnownNamespaces()
        self.predictor = Predictor()
        self._candidates = Candidates()  # its locks may have been held by a parent's thread
        self._indexer = AnnIndexer(self._conninfo, self._connect_kwargs, m=self._hnsw[0],
                                   ef_construction=self._hnsw[1])
        if self.combiner is not None:
            self.combiner.forget()

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(f"SET lock_timeout = {self._lock_timeout_ms}")
        oid = self._vector_oid
        if oid is None:
            row = conn.execute("SELECT to_regtype('vector')::oid").fetchone()
            oid = int(row[0]) if row and row[0] is not None else None
        if oid is not None:
            conn.adapters.register_dumper(np.ndarray, _vector_dumper(oid))
            conn.adapters.register_loader(oid, _VectorLoader)

    def _get_pool(self) -> ConnectionPool[Any]:
        if self._closed:
            raise StorageError("the database is closed; open it again")
        pool = self._pool
        if pool is not None:
            return pool
        with self._pool_lock:
            if self._pool is None:
                pool = ConnectionPool(
                    self._conninfo,
                    min_size=self._pool_min,
                    max_size=self._pool_max,
                    timeout=self._pool_timeout,
                    kwargs={"autocommit": True, **self._connect_kwargs},
                    configure=self._configure,
                    name="engramdb",
                    open=False,
                )
                try:
                    pool.open(wait=self._pool_min > 0, timeout=self._pool_timeout)
                except PoolTimeout as exc:
                    pool.close()
                    raise StorageError(
                        f"cannot connect to PostgreSQL at {self.url}; check the URL and that "
                        "the server is running, then retry",
                        retryable=True,
                    ) from exc
                self._pool = pool
            return self._pool

    def _failed(self, exc: BaseException) -> None:
        """After a driver error: if the server went away, drop dead pooled connections."""
        if is_connection_loss(exc) and self._pool is not None:
            # Best effort: the error that brought us here is reported either way.
            with contextlib.suppress(Exception):
                self._pool.check()

    prepared_writes = True
    write_flush_rows = 1_000  # a batch's rows reach the server while the rest is planned

    def prepare(self, actor: str) -> AbstractContextManager[PreparedWriteTx]:
        """A write built without the chain lock, applied in one round trip (:mod:`.prepared`)."""
        return PreparedWrite(self)

    @contextmanager
    def _read_conn(self) -> Iterator[psycopg.Connection[Any]]:
        if getattr(self._local, "prepared", False):
            raise Unprepared("a prepared write reads current state under the chain lock")
        if getattr(self._local, "predicting", False):
            raise Unpredictable("a read while searches are planned ahead (.ahead)")
        pinned = getattr(self._local, "snapshot", None)
        if pinned is not None:  # inside snapshot(): every read of this thread uses it
            yield pinned
            return
        try:
            with self._get_pool().connection() as conn:
                yield conn
        except (psycopg.Error, PoolTimeout) as exc:
            self._failed(exc)
            raise translate(exc) from exc

    @contextmanager
    def _second_conn(self) -> Iterator[psycopg.Connection[Any] | None]:
        """Another pool connection, for a read to run statements on beside its own;
        None inside :meth:`snapshot` (this thread's reads share one snapshot), when
        the pool holds a single connection, or when none is free within
        :data:`_SECOND_CONN_WAIT_S`: a thread that holds one connection never waits
        long for another (threads each holding one and waiting for a second would
        drain the pool until its timeout)."""
        if getattr(self._local, "snapshot", None) is not None or self._pool_max < 2:
            yield None
            return
        pool = self._get_pool()
        try:
            conn = pool.getconn(timeout=_SECOND_CONN_WAIT_S)
        except PoolTimeout:
            yield None
            return
        try:
            yield conn
        finally:
            pool.putconn(conn)

    def snapshot(self, ahead: Callable[[], SearchAhead | None] | None = None
                 ) -> AbstractContextManager[None]:
        """One REPEATABLE READ, READ ONLY transaction for this thread's reads; the
        searches ``ahead`` plans on predicted values go in its first round trip
        (:mod:`.ahead`)."""
        if ahead is None:
            return read_snapshot(self)
        return read_snapshot(self, lambda conn: plan_ahead(self, conn, ahead))

    def _taken_ahead(self, text: tuple[str, list[Any]] | None, search: knn.VectorSearch
                     ) -> tuple[list[Any], knn.VectorSearch] | None:
        """What this thread's snapshot sent ahead for exactly these statements."""
        return take_ahead(self, text, search)

    @contextmanager
    def _write_conn(self, wait: bool = True, durable: bool = True) -> Iterator[_TxConn]:
        if getattr(self._local, "writing", False):
            raise StorageError(
                "a write transaction is already open in this thread; nest work inside it "
                "instead of opening another"
            )
        committing = False
        self._local.writing = True
        try:
            with self._get_pool().connection() as conn, conn.pipeline() as pipeline, \
                    transaction(conn, pipeline, self._durable_sql, durable=durable):
                yield _TxConn(conn, pipeline)
                committing = True
        except (psycopg.Error, PoolTimeout) as exc:
            self._failed(exc)
            raise translate(exc, committing=committing) from exc
        finally:
            self._local.writing = False

    def _exec(self, conn: Any, sql: str, params: Sequence[Any] = (), *,
              prepare: bool | None = None) -> Any:
        """Run ``sql`` on ``conn``; ``prepare=False``: never as a prepared statement
        (psycopg prepares a statement run five times; see ``fulltext.search_text``)."""
        query = to_pyformat(sql)
        try:
            if isinstance(conn, _TxConn):
                return self._exec_in_tx(conn, sql, query, params)
            return conn.execute(query, list(params), prepare=prepare)
        except psycopg.Error as exc:
            self._failed(exc)
            raise translate(exc) from exc

    def _exec_many(self, conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        # Inside a write the statements ride the pipeline unsynchronised, like a
        # single INSERT does; a prepared statement serves every row.
        written = _WRITES_TO.match(sql)
        if isinstance(conn, _TxConn):
            if written is None:
                conn.cache.clear()
            else:
                conn.forget(written.group(1))
            conn = conn.conn
        try:
            if not insert_many(conn, sql, rows):  # a run of plain inserts: multi-row (.bulk)
                with conn.cursor() as cur:
                    cur.executemany(to_pyformat(sql), rows)
        except psycopg.Error as exc:
            self._failed(exc)
            raise translate(exc) from exc

    def _exec_in_tx(self, tx: _TxConn, sql: str, query: str, params: Sequence[Any]) -> Any:
        written = _WRITES_TO.match(sql)
        read = None if written else _SELECT_FROM.match(sql)
        if written:
            tx.forget(written.group(1))
        elif read is None:
            tx.cache.clear()  # a statement we cannot classify may write anything
        key: tuple[Any, ...] | None = None
        if read and read.group(1) in TABLES and "FOR UPDATE" not in sql:
            key = (sql, *params)
            try:
                cached = tx.cache.get(key)
            except TypeError:  # an unhashable parameter: not cacheable
                key, cached = None, None
            if cached is not None:
                return _Rows(cached[1])
        cur = tx.conn.execute(query, list(params))
        if not sql.lstrip().startswith(_NO_RESULT):
            tx.pipeline.sync()
        if key is not None and read is not None:
            rows = cur.fetchall()
            tx.cache[key] = (read.group(1), rows)
            return _Rows(rows)
        return cur

    def _before_commit(self, conn: Any, wtx: SqlWriteTx) -> None:
        # Delivered by PostgreSQL at COMMIT, never for a rolled-back write.
        if wtx.logged:
            self._exec(conn, f"NOTIFY {CHANNEL}, '{int(wtx.head.seq)}'")

    def _after_commit(self, wtx: SqlWriteTx) -> None:
        if self._vector_dim is not None and wtx.logged:
            self._indexer.kick()

    def close(self) -> None:
        if self.combiner is not None:
            self.combiner.close()
        self._closed = True
        self._indexer.close()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._pool_lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    # -- schema --------------------------------------------------------------------

    def setup(self) -> None:
        """Create the ``vector`` extension and apply pending migrations.

        Safe to call any number of times and from several processes at once:
        the work runs in one transaction under a transaction-level advisory lock.
        """
        try:
            with psycopg.connect(self._conninfo, autocommit=True,
                                 **self._connect_kwargs) as conn:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", [_SCHEMA_LOCK])
                    ensure_pgvector(conn)
                    migrate(lambda q, p: conn.execute(q, list(p)),
                            load("engramdb.storage.postgres"), placeholder="%s")
                    row = conn.execute(
                        "SELECT value FROM meta WHERE key = 'embedder'").fetchone()
                    dim = recorded_dimension(row[0] if row else None)
                    if dim:
                        self._ensure_vector_column(
                            lambda q, p=(): conn.execute(to_pyformat(q), list(p)), dim,
                            locked=True)
                self._vector_oid = int(scalar(conn, "SELECT to_regtype('vector')::oid"))
                self._durable_sql = durability_barrier(conn) if self.release_before_flush else ""
                self.release_before_flush = bool(self._durable_sql)
        except psycopg.Error as exc:
            raise translate(exc) from exc
        self._get_pool()
        if self._vector_dim is not None:
            self._indexer.kick()  # finish whatever indexing an earlier process left

    def schema_version(self) -> int:
        """The highest migration applied to this database."""
        with self._read_conn() as conn:
            return int(self._exec(conn, "SELECT MAX(version) FROM schema_migrations")
                       .fetchone()[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._write_conn() as conn:
            self._exec(
                conn,
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [key, value],
            )
        if key == "embedder" and (dim := recorded_dimension(value)):
            self._type_vectors(dim)

    # -- vectors ---------------------------------------------------------------------

    def _type_vectors(self, dim: int) -> None:
        """Give the vector columns their dimension, in a transaction of its own.

        Never inside a write: the ALTER locks the vector tables until commit, and
        the engine searches vectors from other connections while it writes.
        """
        if self._vector_dim == dim:
            return
        try:
            with self._get_pool().connection() as conn, conn.transaction():
                self._ensure_vector_column(
                    lambda q, p=(): conn.execute(to_pyformat(q), list(p)), dim)
        except (psycopg.Error, PoolTimeout) as exc:
            self._failed(exc)
            raise translate(exc) from exc

    def _ensure_vector_column(self, run: Callable[..., Any], dim: int, *,
                              locked: bool = False) -> None:
        if self._vector_dim == dim:
            return
        if not locked:
            run("SELECT pg_advisory_xact_lock(?)", [_SCHEMA_LOCK])
        type_vector_columns(run, dim)
        self._vector_dim = dim

    def _put_vectors(self, conn: Any, items: Sequence[tuple[str, int, np.ndarray]]) -> None:
        if not items:
            return
        rows = [(i, v, np.asarray(vec, dtype=np.float32).reshape(-1)) for i, v, vec in items]
        self._type_vectors(rows[0][2].size)
        try:
            upsert_vectors(conn.conn, rows)
        except psycopg.Error as exc:
            self._failed(exc)
            raise translate(exc) from exc

    def search_vector(
        self, vector: np.ndarray, flt: RecallFilter, limit: int, *, brief: bool = False
    ) -> list[tuple[dict[str, Any], float]]:
        """Nearest memory versions by cosine similarity, filters inside the query.

        See :func:`engramdb.storage.postgres.knn.search_vector`.
        """
        return knn.search_vector(self, vector, flt, limit, brief=brief)

    def search_text_and_vector(
        self, query: str, vector: np.ndarray, flt: RecallFilter, limit: int, *,
        brief: bool = False,
    ) -> tuple[list[tuple[dict[str, Any], float]], list[tuple[dict[str, Any], float]]]:
        """Both searches in one round trip.

        See :func:`engramdb.storage.postgres.knn.search_text_and_vector`.
        """
        return knn.search_text_and_vector(self, query, vector, flt, limit, brief=brief)

    def search_vectors(
        self, vectors: Sequence[np.ndarray], flt: RecallFilter, limit: int,
        min_similarity: float | None = None,
    ) -> list[list[tuple[dict[str, Any], float]]]:
        """:meth:`search_vector` for each vector, a few hundred per statement.

        See :func:`engramdb.storage.postgres.knn.search_vectors`.
        """
        return knn.search_vectors(self, vectors, flt, limit, min_similarity)

    def vector_backlog(self) -> int:
        """Vectors stored but not yet in the HNSW index (searched exactly meanwhile)."""
        with self._read_conn() as conn:
            try:
                return backlog(conn)
            except psycopg.Error as exc:
                raise translate(exc) from exc

    def wait_for_vector_index(self, timeout: float | None = None) -> bool:
        """Wait until the background indexer has indexed every stored vector.

        Recall is correct without waiting (unindexed vectors are searched
        exactly); this is for benchmarks and bulk loads that want the steady
        state. Returns True once the backlog is empty, False on timeout.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._read_conn() as conn:
                try:
                    if index_caught_up(conn):
                        return True
                except psycopg.Error as exc:
                    raise translate(exc) from exc
            if deadline is not None and time.monotonic() >= deadline:
                return False
            self._indexer.kick()
            time.sleep(0.05)

    # -- full text ---------------------------------------------------------------------

    def search_text(
        self, query: str, flt: RecallFilter, limit: int, *, brief: bool = False
    ) -> list[tuple[dict[str, Any], float]]:
        """Full-text matches (OR of content words), best ``ts_rank_cd`` first.

        See :func:`engramdb.storage.postgres.fulltext.search_text`.
        """
        return fulltext.search_text(self, query, flt, limit, brief=brief)

    # -- reads the shared SQL would do slowly ------------------------------------------

    def scan(self, table: str) -> Iterator[dict[str, Any]]:
        """Every row of a state table in key order, streamed (a server-side cursor)."""
        spec = TABLES.get(table)
        if spec is None:
            raise StorageError(f"unknown table {table!r}")
        cols = list(spec.columns)
        sql = f"SELECT {', '.join(cols)} FROM {spec.name} ORDER BY {', '.join(spec.key)}"
        with self._read_conn() as conn:
            try:
                with conn.transaction(), conn.cursor(name="engramdb_scan") as cur:
                    cur.itersize = 2000
                    cur.execute(sql)
                    for r in cur:
                        yield decode_row(spec, cols, r)
            except psycopg.Error as exc:
                self._failed(exc)
                raise translate(exc) from exc

    def purge(self) -> dict[str, Any]:
        """After an erasure: rewrite the tables that held the content and checkpoint
        (:func:`.purge.purge`)."""
        self._candidates.clear()  # no erased vector stays in this process either
        return purge(self)

    def fetch(self, table: str, where: Mapping[str, Any], *, order_by: str | None = None,
              limit: int | None = None) -> list[dict[str, Any]]:
        rows = None if order_by or limit else pinned_rows(self, table, where)
        return super().fetch(table, where, order_by=order_by, limit=limit) if rows is None \
            else rows

    def namespaces(self) -> list[str]:
        pinned = getattr(self._local, "pinned", None)
        if pinned is not None:  # read in the snapshot's first round trip (.snapshot)
            return list(pinned.namespaces)
        with self._read_conn() as conn:
            return [r[0] for r in self._exec(conn, DISTINCT_NAMESPACES).fetchall()]

    # -- the log, durable only ----------------------------------------------------------

    def head(self) -> Head:
        """The chain head, once durable: a checkpoint never signs one a crash takes back."""
        pinned = getattr(self._local, "pinned", None)  # read as the snapshot opened
        return self._once_durable(pinned.head if pinned is not None else super().head())

    def events(self, after: int = 0, limit: int = 1000) -> list[RawEvent]:
        """Events after ``after``, once durable: no cursor holds one a crash takes back."""
        out = super().events(after, limit)
        return self._once_durable(out) if out else out

    def _once_durable(self, value: Any) -> Any:
        # Wait until all committed so far is flushed (not for a prediction, .ahead).
        if self._durable_sql and not getattr(self._local, "predicting", False):
            with self._read_conn() as conn:
                self._exec(conn, self._durable_sql)
        return value

    # -- change feed -------------------------------------------------------------------

    def wait_for_events(self, after_seq: int, timeout: float) -> bool:
        """Block until the log has an event after ``after_seq``, or ``timeout`` seconds pass.

        A wake-up only: re-read the log with :meth:`events` (by cursor) either way.

        Returns:
            True if the log now extends past ``after_seq``.
        """
        listener = self._listener
        if listener is None:
            with self._pool_lock:
                if self._listener is None:
                    self._listener = ChangeListener(self._conninfo, self._connect_kwargs)
                listener = self._listener
        # A wake-up compares seqs only, so it reads the head without the barrier.
        return listener.wait_past(after_seq, timeout, lambda: SqlStorage.head(self).seq)
