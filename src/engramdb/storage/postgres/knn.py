"""Nearest-neighbour search on PostgreSQL: the HNSW projection plus the unindexed rows.

One statement (one snapshot) searches the HNSW projection (:mod:`.ann`) with
iterative scanning and, exactly, the vectors written since the projection's
watermark; a search that still comes back short falls back to an exact scan
over all filtered rows, so a filter never hides a match that exists. A search
scoped to namespaces holding few current rows (:data:`SMALL_SCOPE_ROWS`) ranks
them exactly instead: a B-tree walk of the scope beats an iterative graph scan
past every other namespace's neighbours (one namespace of 20 took 140-190 ms
at 100k memories through the graph). Batches
of queries go a few hundred per statement (``LATERAL`` over ``VALUES``), or,
for a small filtered set, ranked in process with one matrix product.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import numpy as np
import psycopg
from psycopg_pool import PoolTimeout

from engramdb.model import RecallFilter
from engramdb.storage.base import top_hits
from engramdb.storage.postgres._conn import to_pyformat
from engramdb.storage.postgres.errors import translate
from engramdb.storage.schema import TABLES
from engramdb.storage.sql import Dialect, decode_row, memory_where

__all__ = ["search_vector", "search_vectors"]


class PgPool(Protocol):
    """What the searches need from :class:`~engramdb.storage.postgres.PostgresStorage`."""

    dialect_impl: Dialect

    def _read_conn(self) -> AbstractContextManager[psycopg.Connection[Any]]: ...

    def _failed(self, exc: BaseException) -> None: ...


_VECTORS_PER_STATEMENT = 250
# search_vectors ranks in this process when it has at least this many vectors
# and the filter matches at most this many stored ones (1.5 kB each at 384-d).
_IN_PROCESS_MIN_QUERIES = 16
_IN_PROCESS_MAX_ROWS = 20_000


def _knn_sql(select: str, cond: str, n: int, query: str) -> tuple[str, str]:
    """The approximate and the exact nearest-neighbour SQL for the vector ``query``.

    ``query`` is ``?`` (a bound vector) or a column of an outer ``LATERAL`` row.
    """
    # Unit vectors: ranking by inner product (<#> is its negative) is cosine ranking.
    approximate = (
        f"(SELECT {select}, a.vec <#> {query} AS distance FROM memory_vectors_ann a "
        "JOIN memories m ON m.id = a.id AND m.version = a.version "
        f"WHERE {cond} ORDER BY distance LIMIT {n}) "
        "UNION ALL "
        f"(SELECT {select}, v.vec <#> {query} AS distance FROM memory_vectors v "
        "JOIN memories m ON m.id = v.id AND m.version = v.version "
        "WHERE v.vseq > (SELECT vseq FROM vector_index_state WHERE id = 1) "
        f"AND {cond} ORDER BY distance LIMIT {n})"
    )
    exact = (
        f"SELECT {select}, v.vec <#> {query} AS distance FROM memory_vectors v "
        "JOIN memories m ON m.id = v.id AND m.version = v.version "
        f"WHERE {cond} ORDER BY distance LIMIT {n}"
    )
    return approximate, exact


def _lateral(search: str, count: int) -> str:
    """``search`` (over ``q.qv``) for ``count`` bound vectors, rows led by their position."""
    values = ", ".join(f"({i}, ?::vector)" for i in range(count))
    return (f"SELECT q.ord, x.* FROM (VALUES {values}) AS q(ord, qv) "
            f"CROSS JOIN LATERAL ({search}) AS x")


def _hnsw_settings(conn: psycopg.Connection[Any], n: int) -> None:
    """HNSW search settings for this transaction: enough candidates for ``n`` hits."""
    conn.execute(
        "SELECT set_config('hnsw.ef_search', %s, true), "
        "set_config('hnsw.iterative_scan', 'relaxed_order', true)",
        [str(min(1000, max(40, 2 * n)))],
    )


def _nearest_once(found: list[Any]) -> list[Any]:
    """Rows of both searches, each memory version once, at its smallest distance."""
    best: dict[tuple[str, int], Any] = {}
    for r in found:
        key = (r[0], r[1])  # (id, version): the first two memory columns
        if key not in best or r[-1] < best[key][-1]:
            best[key] = r
    return list(best.values())


# A scoped search ranks its namespaces' rows exactly when they hold at most this many
# current versions (counted through the partial index on current rows).
SMALL_SCOPE_ROWS = 20_000


def _small_scope(conn: psycopg.Connection[Any], flt: RecallFilter) -> bool:
    """Whether ``flt`` is a current read of few enough namespaces' rows to rank exactly."""
    if flt.namespaces is None or flt.include_superseded or len(flt.namespaces) > 64:
        return False
    row = conn.execute(
        "SELECT count(*) FROM (SELECT 1 FROM memories WHERE tx_to IS NULL "
        f"AND namespace = ANY(%s) LIMIT {SMALL_SCOPE_ROWS + 1}) s",
        [list(flt.namespaces)]).fetchone()
    return row is not None and int(row[0]) <= SMALL_SCOPE_ROWS


def search_vector(
    store: PgPool, vector: np.ndarray, flt: RecallFilter, limit: int
) -> list[tuple[dict[str, Any], float]]:
    """Nearest memory versions by cosine similarity, filters inside the query.

    One statement (one snapshot) searches the HNSW projection with
    iterative scanning (pgvector 0.8: a filtered query keeps scanning until
    it has ``limit`` hits) and, exactly, the vectors written since the
    projection's watermark. If that still comes back short of ``limit``, an
    exact scan over all filtered rows answers instead, so a filter never
    hides a match that exists.
    """
    if limit <= 0:
        return []
    vec = np.asarray(vector, dtype=np.float32).reshape(-1)
    spec = TABLES["memories"]
    cols = list(spec.columns)
    select = ", ".join("m." + c for c in cols)
    cond, params = memory_where(flt, store.dialect_impl)
    n = int(limit)
    approximate, exact = _knn_sql(select, cond, n, "?")
    try:
        with store._read_conn() as conn:
            if _small_scope(conn, flt):
                # A narrow scope: exact over its rows beats walking the graph past
                # the other namespaces' neighbours (iterative scan) by far.
                found = conn.execute(to_pyformat(exact), [vec, *params]).fetchall()
            else:
                with conn.pipeline(), conn.transaction():
                    _hnsw_settings(conn, n)
                    found = conn.execute(to_pyformat(approximate),
                                         [vec, *params, vec, *params]).fetchall()
                found = _nearest_once(found)
                if len(found) < n:
                    found = conn.execute(to_pyformat(exact), [vec, *params]).fetchall()
    except (psycopg.Error, PoolTimeout) as exc:
        store._failed(exc)
        raise translate(exc) from exc
    # relaxed_order may return neighbours slightly out of order: sort them.
    found.sort(key=lambda r: (r[-1], r[0], r[1]))
    return [(decode_row(spec, cols, r[:-1]), -float(r[-1])) for r in found[:n]]

def search_vectors(
    store: PgPool, vectors: Sequence[np.ndarray], flt: RecallFilter, limit: int,
    min_similarity: float | None = None,
) -> list[list[tuple[dict[str, Any], float]]]:
    """:meth:`search_vector` for each vector, a few hundred per statement.

    The same two searches per vector, as ``LATERAL`` subqueries over a
    ``VALUES`` list of the vectors: one round trip answers a chunk of
    vectors instead of one (or two) per vector. Vectors whose approximate
    answer comes back short get the exact search, again together.
    """
    if limit <= 0 or len(vectors) == 0:
        return [[] for _ in vectors]
    vecs = [np.asarray(v, dtype=np.float32).reshape(-1) for v in vectors]
    spec = TABLES["memories"]
    cols = list(spec.columns)
    select = ", ".join("m." + c for c in cols)
    cond, params = memory_where(flt, store.dialect_impl)
    n = int(limit)
    approximate, exact = _knn_sql(select, cond, n, "q.qv")
    found: list[list[tuple[Any, ...]]] = [[] for _ in vecs]
    try:
        with store._read_conn() as conn:
            if len(vecs) >= _IN_PROCESS_MIN_QUERIES:
                exact_found = _exact_in_process(conn, vecs, select, cond, params, n,
                                                     min_similarity)
                if exact_found is not None:
                    found = exact_found
                    vecs = []  # answered: skip the statements below
            for start in range(0, len(vecs), _VECTORS_PER_STATEMENT):
                chunk = range(start, min(len(vecs), start + _VECTORS_PER_STATEMENT))
                with conn.pipeline(), conn.transaction():
                    _hnsw_settings(conn, n)
                    rows = conn.execute(
                        to_pyformat(_lateral(approximate, len(chunk))),
                        [*(vecs[i] for i in chunk), *params, *params]).fetchall()
                for r in rows:
                    found[start + int(r[0])].append(r[1:])
                for i in chunk:
                    found[i] = _nearest_once(found[i])
                short = [i for i in chunk if len(found[i]) < n]
                if short:
                    rows = conn.execute(to_pyformat(_lateral(exact, len(short))),
                                        [*(vecs[i] for i in short), *params]).fetchall()
                    for i in short:
                        found[i] = []
                    for r in rows:
                        found[short[int(r[0])]].append(r[1:])
    except (psycopg.Error, PoolTimeout) as exc:
        store._failed(exc)
        raise translate(exc) from exc
    out = []
    for hits in found:
        hits.sort(key=lambda r: (r[-1], r[0], r[1]))
        out.append([(decode_row(spec, cols, r[:-1]), -float(r[-1])) for r in hits[:n]
                    if min_similarity is None or -float(r[-1]) >= min_similarity])
    return out

def _exact_in_process(conn: psycopg.Connection[Any], vecs: list[np.ndarray],
                      select: str, cond: str, params: list[Any], n: int,
                      min_similarity: float | None
                      ) -> list[list[tuple[Any, ...]]] | None:
    """Exact nearest rows for many vectors at once, or None if the filter matches too many.

    Fetches the filtered rows with their vectors once (binary) and ranks them
    with one matrix product: for a batch, far cheaper than a search per vector, which scans
    every vector the HNSW projection has not indexed yet (all of a fresh bulk
    load). The answer is exact, never worse than the approximate search's.
    """
    join = ("FROM memory_vectors v JOIN memories m ON m.id = v.id "
            f"AND m.version = v.version WHERE {cond}")
    # No snapshot to share: this runs inside a write, which holds the chain
    # lock, so no state changes between the two statements.
    counted = conn.execute(to_pyformat(f"SELECT count(*) {join}"), params).fetchone()
    count = int(counted[0]) if counted else 0
    if count > _IN_PROCESS_MAX_ROWS:
        return None
    if count == 0:
        return [[] for _ in vecs]
    with conn.cursor(binary=True) as cur:
        cur.execute(to_pyformat(f"SELECT v.id, v.version, v.vec {join}"), params)
        stored = cur.fetchall()
    if not all(isinstance(r[2], np.ndarray) for r in stored):
        return None  # no binary vector loader on this connection
    matrix = np.stack([r[2] for r in stored])
    queries = np.stack(vecs)
    ranked: list[list[tuple[int, float]]] = []
    step = max(1, (8 << 20) // len(stored))
    for start in range(0, len(queries), step):
        ranked += top_hits(queries[start:start + step] @ matrix.T, n, min_similarity)
    # Whole rows only for the hits (with a similarity floor, usually few).
    wanted = sorted({stored[i][0] for hits in ranked for i, _ in hits})
    rows = {(r[0], int(r[1])): r for r in conn.execute(
        to_pyformat(f"SELECT {select} FROM memories m WHERE m.id = ANY(?)"),
        [wanted]).fetchall()} if wanted else {}
    # (memory columns..., distance), as the SQL searches return them; the
    # caller ranks them by distance, id and version.
    return [[(*rows[key], -sim) for i, sim in hits
             if (key := (stored[i][0], int(stored[i][1]))) in rows] for hits in ranked]
