"""A recall's vector search on a second connection, while the full-text search runs.

A recall asks its two candidate searches one after the other, in one
snapshot (:mod:`.snapshot`): full text, then the vector search, each a few
milliseconds of server work on one backend while the other core idles.
:meth:`~engramdb.storage.postgres.PostgresStorage.prefetch_vector` (the
engine's hint that this vector search comes next) starts it at once on a
second pooled connection that imports the recall's snapshot
(``pg_export_snapshot()``, read in the snapshot's first round trip; ``SET
TRANSACTION SNAPSHOT`` in the second connection's single pipeline), so both
searches run at the same time and see exactly the same committed state: a
write, update, retraction or erasure committed meanwhile, by any process, is
in both or in neither.

The search that then comes (``search_vector``) takes the started answer when
it asks for the very same vector, filter and limit, and runs as before on the
snapshot's own connection otherwise (a different vector, e.g. the query
asked in the first person; no connection free in the pool right now; any
error on the second connection, such as a table lock not granted within
:data:`_LOCK_WAIT_MS`). Nothing started outlives the snapshot: it is waited
for before the snapshot ends.
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from engramdb.model import RecallFilter
from engramdb.storage.postgres import knn

__all__ = ["Overlap", "search_vector"]

# How long a recall waits for a free pooled connection for its vector search; past
# that it searches on its own connection, one search after the other, as without.
_FREE_CONNECTION_S = 0.002
# How long the second connection waits for a table lock. A read waits only behind a
# pending ACCESS EXCLUSIVE request (an erasure's VACUUM FULL, the indexer's swap), and
# such a request may itself wait for the snapshot's own connection, which waits for
# this search: a cycle the server cannot see. Past this the search gives up, and runs
# on the snapshot's own connection, which holds its locks already or gets them first.
_LOCK_WAIT_MS = 50


class _Store(knn.PgPool, Protocol):
    _local: threading.local
    _overlap: Overlap

    def _get_pool(self) -> ConnectionPool[Any]: ...


@dataclass(frozen=True, slots=True)
class _Started:
    vec: np.ndarray
    flt: RecallFilter
    limit: int
    plan: knn.VectorPlan
    rows: Future[list[Any]]


class Overlap:
    """The threads that run started vector searches (one per search in flight)."""

    def __init__(self, workers: int) -> None:
        self._workers = max(1, int(workers))
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def submit(self, fn: Any, *args: Any) -> Future[list[Any]]:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._workers,
                                                thread_name_prefix="engramdb-vector")
            return self._pool.submit(fn, *args)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def start(self, store: _Store, vector: np.ndarray, flt: RecallFilter, limit: int) -> None:
        """Start ``search_vector(vector, flt, limit)`` on a second connection (see module)."""
        pinned = getattr(store._local, "pinned", None)
        if pinned is None or not pinned.exported or limit <= 0:
            return  # outside a snapshot, or it could not be shared
        self.settle(store)
        vec = np.asarray(vector, dtype=np.float32).reshape(-1)
        try:
            second = store._get_pool().getconn(timeout=_FREE_CONNECTION_S)
        except PoolTimeout:
            return  # every connection is busy: search on the snapshot's own later
        try:
            plan = knn.plan_vector(store, pinned.conn, vec, flt, limit)
            rows = self.submit(_search, store, second, pinned.exported, plan)
        except BaseException:
            store._get_pool().putconn(second)
            raise
        store._local.started = _Started(vec, flt, int(limit), plan, rows)

    def take(self, store: _Store, vec: np.ndarray, flt: RecallFilter, limit: int
             ) -> tuple[knn.VectorPlan, list[Any]] | None:
        """The started search's plan and rows if it was this one and it succeeded."""
        started: _Started | None = getattr(store._local, "started", None)
        if started is None:
            return None
        store._local.started = None
        try:
            rows = started.rows.result()
        except psycopg.Error:
            return None  # e.g. a lost connection: the search on the snapshot's own reports it
        if (started.limit != limit or started.flt != flt
                or not np.array_equal(started.vec, vec)):
            return None
        return started.plan, rows

    def settle(self, store: _Store) -> None:
        """Wait for a started search nobody took (before its snapshot ends)."""
        started: _Started | None = getattr(store._local, "started", None)
        if started is not None:
            store._local.started = None
            with contextlib.suppress(Exception):
                started.rows.result()


def _search(store: _Store, conn: psycopg.Connection[Any], exported: str,
            plan: knn.VectorPlan) -> list[Any]:
    """``plan``'s search on ``conn``, in the exported snapshot: one round trip."""
    try:
        with conn.pipeline():
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            conn.execute(f"SET TRANSACTION SNAPSHOT '{exported}'")
            conn.execute(f"SET LOCAL lock_timeout = '{_LOCK_WAIT_MS}ms'")
            cur, mark = knn.send_vector(conn, plan)
            conn.execute("ROLLBACK")
        return knn.receive_vector(store, cur, mark)
    except BaseException:
        with contextlib.suppress(psycopg.Error):
            conn.execute("ROLLBACK")
        raise
    finally:
        store._get_pool().putconn(conn)


def search_vector(store: _Store, vector: np.ndarray, flt: RecallFilter, limit: int
                  ) -> list[tuple[dict[str, Any], float]]:
    """:func:`.knn.search_vector`, taking the answer of the search started for it."""
    vec = np.asarray(vector, dtype=np.float32).reshape(-1)
    started = store._overlap.take(store, vec, flt, int(limit))
    return knn.search_vector(store, vec, flt, limit, started=started)
