"""The HNSW projection of ``memory_vectors``, kept up to date in the background.

Inserting into an HNSW graph costs about a millisecond of server CPU per
vector on a small server (1.6 ms at 100k vectors with degree 16, 0.8 ms with
the degree 8 used now, :data:`GRAPH_M`), as much as the rest of a write. So a
write transaction only appends the vector to ``memory_vectors`` (numbered by
``vseq`` in commit order), and this module
copies rows into ``memory_vectors_ann``, which carries the HNSW index, moving
the watermark ``vector_index_state.vseq`` in the same transaction. A search
reads the ANN table through its index *and* the rows above the watermark
exactly, in one statement (one snapshot), so a vector is searchable the
moment its write commits; the indexer only decides how fast that search is.

One indexer runs per database: each process that stores vectors starts a
thread, and the one holding a session-level advisory lock does the work (if
its process exits, another takes over). Small backlogs are copied in batches
(incremental graph inserts); a backlog that is large next to the index is
cheaper to rebuild, so a new table is filled and indexed in bulk (HNSW build)
and swapped in under a short lock. Either way the projection is derived data:
correctness never depends on it being current.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psycopg

from engramdb.errors import StorageError

__all__ = ["BATCH", "GRAPH_M", "INDEX_NAME", "IVF_NAME", "AnnIndexer", "analyze_if_stale",
           "backlog", "ensure_pgvector", "index_caught_up", "ivf_expression", "recorded_dimension",
           "scalar", "search_ef", "type_vector_columns"]

INDEX_NAME = "memory_vectors_ann_hnsw"
# The graph's degree (``m``; PostgresStorage's ``hnsw_m``). An insert updates about
# 2m neighbours' lists, and the indexer's inserts are most of the server CPU a
# sustained burst of writes adds (docs/scaling.md). Measured at 100k real-text
# vectors (384-d MiniLM embeddings of sentences, branch ann17): an insert cost the
# server ~1.6 ms of CPU with m = 16, ~1.2 ms with 12 and ~0.8 ms with 8
# (ef_construction 64 each; 32 saved little and cost recall). With m = 8 a search
# reads twice the candidates (search_ef) for the same quality as m = 16 gave:
# 0.990 of the exact top 10 and 0.979 of the top 50 both, 0.3 ms more per search.
# A graph built before keeps its degree (an index option) until the next rebuild;
# its searches read the doubled candidates too (better recall, slightly slower).
GRAPH_M = 8
# A second, inverted-file index over the same vectors, for the write path's batch
# candidate searches (knn.search_vectors): a search probes a few lists of the
# nearest centroids instead of walking the graph. At 100k random 384-d vectors,
# 4 of 322 lists cost 0.7 ms a query against 1.8-2.4 ms for the graph (ef_search 40,
# whose pages no longer fit the CPU caches) and found 296 of 300 planted
# near-duplicates against the graph's 241 (knn.IVF_PROBES: how many lists a
# search probes). About 0.9 kB of index per vector. Built with a rebuild of at least
# IVF_MIN_ROWS vectors (k-means needs rows to train on), sqrt(rows) lists.
IVF_NAME = "memory_vectors_ann_ivf"
IVF_MIN_ROWS = 10_000
BATCH = 500
# Rebuild instead of inserting when the backlog is at least REBUILD_MIN rows and at
# least 1/REBUILD_RATIO of the indexed rows. A bulk HNSW build is several times
# faster per row than incremental inserts, and rebuilding only once the index has
# grown by half bounds the total build work of a long bulk load to about 3x its size.
REBUILD_MIN = 5000
REBUILD_RATIO = 2
# While writers are adding vectors, a backlog below DEFER_MAX waits for them to pause
# (no new vector for QUIET seconds): an HNSW insert costs about as much server CPU as
# the rest of a write, so indexing during a burst of writes halves what the burst
# reaches on a small server. Searches stay exact meanwhile (they scan the backlog),
# at about a microsecond per backlog vector; past DEFER_MAX the indexer works
# alongside the writers as before.
DEFER_MAX = 4000
QUIET = 0.2
_INDEXER_LOCK = int.from_bytes(b"engramix", "big") - 2**63


def search_ef(n: int) -> int:
    """``hnsw.ef_search`` for a search asking ``n`` rows: the candidates the graph
    walk keeps (4n, at least 80: twice what a graph of degree 16 needed, for a
    graph of degree :data:`GRAPH_M`; at most 1,000, pgvector's limit)."""
    return min(1000, max(80, 4 * n))


def scalar(conn: psycopg.Connection[Any], sql: str, params: Sequence[Any] = ()) -> Any:
    """The first column of the first row of ``sql`` (None when there is no row)."""
    row = conn.execute(sql, list(params)).fetchone()
    return None if row is None else row[0]


def _backlog_sql(cap: int) -> str:
    return (
        "SELECT count(*) FROM (SELECT 1 FROM memory_vectors WHERE vseq > "
        f"(SELECT vseq FROM vector_index_state WHERE id = 1) LIMIT {int(cap)}) s"
    )


def backlog(conn: psycopg.Connection[Any], cap: int = 10**9) -> int:
    """Vectors written but not yet in the HNSW index (counted up to ``cap``)."""
    return int(scalar(conn, _backlog_sql(cap)))


def ensure_pgvector(conn: psycopg.Connection[Any]) -> None:
    """Create the ``vector`` extension if this database has none yet.

    Raises:
        StorageError: this role may not create it, or the server has no pgvector.
    """
    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone():
        return
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except psycopg.errors.InsufficientPrivilege as exc:
        raise StorageError(
            "the pgvector extension is not installed in this database and this role "
            "may not install it; ask a superuser to run CREATE EXTENSION vector"
        ) from exc
    except psycopg.errors.UndefinedFile as exc:
        raise StorageError(
            "the PostgreSQL server has no pgvector extension; install pgvector 0.8 or "
            "later on the server"
        ) from exc


def index_caught_up(conn: psycopg.Connection[Any]) -> bool:
    """Whether every stored vector is in the HNSW index (trivially so before the
    vector columns have a dimension)."""
    pending = backlog(conn)
    typed = scalar(conn, "SELECT atttypmod > 0 FROM pg_attribute WHERE attrelid = "
                   "'memory_vectors'::regclass AND attname = 'vec'")
    built = scalar(conn, "SELECT to_regclass('memory_vectors_ann_hnsw') IS NOT NULL")
    return bool(pending == 0 and (built or not typed))


def type_vector_columns(run: Callable[..., Any], dim: int) -> None:
    """Give the vector columns dimension ``dim`` if they have none yet (``run``
    executes one statement; the caller holds the schema lock).

    Raises:
        StorageError: the columns hold vectors of another dimension.
    """
    typmod = int(run(
        "SELECT atttypmod FROM pg_attribute "
        "WHERE attrelid = 'memory_vectors'::regclass AND attname = 'vec'"
    ).fetchone()[0])
    if typmod < 0:
        for table in ("memory_vectors", "memory_vectors_ann"):
            run(f"ALTER TABLE {table} ALTER COLUMN vec TYPE vector({int(dim)})")
        typmod = dim
    if typmod != dim:
        raise StorageError(
            f"this database stores {typmod}-dimensional vectors, not {dim}; open it with "
            "the embedder it was built with"
        )


def analyze_if_stale(conn: psycopg.Connection[Any]) -> None:
    """ANALYZE ``memories`` when it changed a lot since the last statistics, and
    the projection's ``namespace`` column when it did or has none.

    Autovacuum does this too, but only after its naptime (a minute by
    default); a freshly loaded table with no statistics gets plans that
    ignore the HNSW index (a batch's graph searches then probed every memory
    of the namespace, 100 ms per query at 22k), and the vector search picks
    its strategy from the namespace statistics, so the indexer refreshes them
    sooner while idle, and a batch search before it searches. Only that
    column of the projection: statistics keep sample values in
    ``pg_statistic``, which an erasure's purge does not rewrite.
    """
    for table, what, fresh in (("memories", "memories", False),
                               ("memory_vectors_ann", "memory_vectors_ann (namespace)", True)):
        row = conn.execute(
            "SELECT n_mod_since_analyze, GREATEST(c.reltuples, 0) FROM pg_stat_user_tables "
            "s JOIN pg_class c ON c.oid = s.relid WHERE s.relname = %s", [table]).fetchone()
        if row and (row[0] >= max(1000, 0.1 * float(row[1]))
                    or (fresh and row[0] > 0 and float(row[1]) == 0)):
            conn.execute(f"ANALYZE {what}")


class AnnIndexer:
    """A background thread that keeps ``memory_vectors_ann`` caught up."""

    def __init__(self, url: str, connect_kwargs: Mapping[str, Any], *, m: int,
                 ef_construction: int, maintenance_work_mem: str = "256MB") -> None:
        self._url = url
        self._kwargs = dict(connect_kwargs)
        self._m = m
        self._ef = ef_construction
        self._mwm = maintenance_work_mem
        self._kick = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self.rows_indexed = 0
        self.rebuilds = 0
        self._expect = 0

    def kick(self) -> None:
        """Start the thread if needed and tell it there may be new vectors."""
        thread = self._thread
        if self._kick.is_set() and thread is not None and thread.is_alive():
            # Told already and not yet cleared: the thread reads the backlog only after
            # it clears the flag, so it sees this write too (the flag's lock and the
            # notify are a writer's cost on every write otherwise).
            return
        with self._lock:
            if self._stop.is_set():
                return
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="engramdb-pg-ann",
                                                daemon=True)
                self._thread.start()
        self._kick.set()

    def close(self) -> None:
        self._stop.set()
        self._kick.set()
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.cancel_safe(timeout=2.0)  # a rebuild may be running
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10.0)

    # -- the thread -------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._url, autocommit=True, **self._kwargs) as conn:
                    self._conn = conn
                    conn.execute(f"SET maintenance_work_mem = '{self._mwm}'")
                    # One indexer per database: the others wait here for their turn.
                    while not scalar(conn, "SELECT pg_try_advisory_lock(%s)",
                                     [_INDEXER_LOCK]):
                        if self._stop.wait(2.0):
                            return
                    backoff = 0.1
                    while not self._stop.is_set():
                        if self.step(conn) == 0:
                            analyze_if_stale(conn)
                            self._kick.wait(0.5)
                            self._kick.clear()
            except psycopg.Error:
                pass  # server gone, restarting, or we were cancelled by close()
            finally:
                self._conn = None
            if self._stop.wait(backoff):
                return
            backoff = min(backoff * 2, 5.0)

    def step(self, conn: psycopg.Connection[Any]) -> int:
        """Do one unit of indexing work; return how many vectors it indexed."""
        dim = scalar(
            conn,
            "SELECT atttypmod FROM pg_attribute "
            "WHERE attrelid = 'memory_vectors'::regclass AND attname = 'vec'")
        if dim is None or int(dim) < 1:
            return 0  # no embedder yet: nothing to index
        has_index = scalar(conn, "SELECT to_regclass(%s)", [INDEX_NAME])
        pending = backlog(conn, cap=REBUILD_MIN * 1000)
        if has_index is not None and pending == 0:
            return 0
        indexed = int(scalar(
            conn, "SELECT GREATEST(reltuples, 0)::bigint FROM pg_class "
            "WHERE oid = 'memory_vectors_ann'::regclass"))
        if (has_index is not None and self._expect < pending < DEFER_MAX
                and self._writers_busy(conn, pending)):
            return 0
        if has_index is None or (pending >= REBUILD_MIN
                                 and pending * REBUILD_RATIO >= indexed):
            moved = self._rebuild(conn, int(dim))
            self.rebuilds += 1
        else:
            try:
                moved = self._copy_batch(conn)
            except psycopg.errors.LockNotAvailable:
                return 0  # a writer is removing one of these vectors: try again shortly
        self.rows_indexed += moved
        self._expect = pending - moved  # more than that next time: vectors arrived since
        return max(moved, 1 if has_index is None else 0)

    def _writers_busy(self, conn: psycopg.Connection[Any], pending: int) -> bool:
        """Whether vectors are still arriving: the backlog grew within :data:`QUIET`."""
        if self._stop.wait(QUIET):
            return True
        return backlog(conn, cap=DEFER_MAX) > pending

    def _copy_batch(self, conn: psycopg.Connection[Any]) -> int:
        with conn.transaction():
            mark = scalar(conn, "SELECT vseq FROM vector_index_state WHERE id = 1 FOR UPDATE")
            row = conn.execute(
                # FOR SHARE: an erasure that comes later waits for us, then its
                # trigger deletes the copy we made, so none is left behind. NOWAIT:
                # we never wait for a writer while holding locks it may need.
                "WITH batch AS ("
                " SELECT id, version, vec, vseq FROM memory_vectors WHERE vseq > %s"
                f" ORDER BY vseq LIMIT {BATCH} FOR SHARE NOWAIT),"
                " ins AS (INSERT INTO memory_vectors_ann (id, version, vec, namespace)"
                "  SELECT b.id, b.version, b.vec, m.namespace FROM batch b LEFT JOIN memories m"
                "  ON m.id = b.id AND m.version = b.version"
                "  ON CONFLICT (id, version) DO UPDATE SET vec = excluded.vec,"
                "  namespace = excluded.namespace RETURNING 1)"
                " UPDATE vector_index_state SET vseq = COALESCE((SELECT max(vseq) FROM batch),"
                " vseq) WHERE id = 1 RETURNING (SELECT count(*) FROM ins)",
                [mark],
            ).fetchone()
        return int(row[0]) if row else 0

    def _rebuild(self, conn: psycopg.Connection[Any], dim: int) -> int:
        """Build a fresh indexed copy of every vector, then swap it in."""
        with conn.transaction():
            mark = int(scalar(conn, "SELECT COALESCE(max(vseq), 0) FROM memory_vectors"))
            conn.execute(
                "CREATE TABLE memory_vectors_ann_next (id TEXT NOT NULL, version BIGINT NOT "
                f"NULL, vec vector({dim}) NOT NULL, namespace TEXT)"
            )
            # In namespace order: a scoped search reads one namespace's vectors from
            # neighbouring pages (knn's exact scope path). The sort may use as much
            # memory as the index build.
            conn.execute(f"SET LOCAL work_mem = '{self._mwm}'")
            conn.execute(
                "INSERT INTO memory_vectors_ann_next (id, version, vec, namespace) "
                "SELECT v.id, v.version, v.vec, m.namespace FROM memory_vectors v "
                "LEFT JOIN memories m ON m.id = v.id AND m.version = v.version "
                "WHERE v.vseq <= %s ORDER BY m.namespace", [mark])
            moved = int(scalar(conn, "SELECT count(*) FROM memory_vectors_ann_next"))
            conn.execute("ALTER TABLE memory_vectors_ann_next ADD CONSTRAINT "
                         "memory_vectors_ann_next_pkey PRIMARY KEY (id, version)")
            conn.execute("CREATE INDEX memory_vectors_ann_next_namespace "
                         "ON memory_vectors_ann_next (namespace)")
            # The graph over half-precision copies: half the size (it has to stay in
            # shared buffers to be fast), and searches re-score with the full vectors.
            conn.execute(
                f"CREATE INDEX {INDEX_NAME}_next ON memory_vectors_ann_next USING hnsw "
                f"((vec::halfvec({dim})) halfvec_ip_ops) "
                f"WITH (m = {self._m}, ef_construction = {self._ef})"
            )
            if moved >= IVF_MIN_ROWS:
                conn.execute(
                    f"CREATE INDEX {IVF_NAME}_next ON memory_vectors_ann_next USING ivfflat "
                    f"({ivf_expression('vec', dim)} halfvec_ip_ops) "
                    f"WITH (lists = {max(16, int(moved ** 0.5))})")
            # Statistics before the swap, so searches plan with them from its commit.
            conn.execute("ANALYZE memory_vectors_ann_next (namespace)")
            # The swap. Writers lock memory_vectors before memory_vectors_ann (the
            # erasure trigger), so take them in that order: no deadlock. Writers and
            # searches queue behind these locks, so never wait long for them: on a
            # timeout the rebuild is rolled back and tried again later.
            conn.execute("SET LOCAL lock_timeout = '5s'")
            conn.execute("LOCK TABLE memory_vectors IN SHARE MODE")
            conn.execute("LOCK TABLE memory_vectors_ann IN ACCESS EXCLUSIVE MODE")
            # Vectors removed or replaced while we were building.
            conn.execute(
                "DELETE FROM memory_vectors_ann_next n WHERE NOT EXISTS (SELECT 1 FROM "
                "memory_vectors v WHERE v.id = n.id AND v.version = n.version "
                "AND v.vseq <= %s)", [mark])
            conn.execute("DROP TABLE memory_vectors_ann")
            conn.execute("ALTER TABLE memory_vectors_ann_next RENAME TO memory_vectors_ann")
            conn.execute("ALTER INDEX memory_vectors_ann_next_pkey "
                         "RENAME TO memory_vectors_ann_pkey")
            conn.execute(f"ALTER INDEX {INDEX_NAME}_next RENAME TO {INDEX_NAME}")
            conn.execute(f"ALTER INDEX IF EXISTS {IVF_NAME}_next RENAME TO {IVF_NAME}")
            conn.execute("ALTER INDEX memory_vectors_ann_next_namespace "
                         "RENAME TO memory_vectors_ann_namespace")
            conn.execute("UPDATE vector_index_state SET vseq = %s WHERE id = 1", [mark])
        return moved


def ivf_expression(column: str, dim: int) -> str:
    """What :data:`IVF_NAME` indexes: the vector as a unit half-precision vector (the
    vectors are unit already; the normalisation only makes the expression differ
    from the graph's ``vec::halfvec(N)``, so a search picks the index it names)."""
    return f"(l2_normalize({column})::halfvec({int(dim)}))"


def recorded_dimension(value: str | None) -> int | None:
    """The vector dimension the ``embedder`` meta value records (None if none)."""
    if not value:
        return None
    import json

    try:
        dim = int(json.loads(value).get("dimension") or 0)
    except (ValueError, TypeError, AttributeError):
        return None
    return dim or None
