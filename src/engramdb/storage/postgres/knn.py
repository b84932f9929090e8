"""Nearest-neighbour search on PostgreSQL: the HNSW projection plus the unindexed rows.

One statement (one snapshot) searches the HNSW projection (:mod:`.ann`) with
iterative scanning and, exactly, the vectors written since the projection's
watermark; a search that still comes back short falls back to an exact scan
over all filtered rows, so a filter never hides a match that exists. A search
scoped to namespaces holding few rows (:data:`SMALL_SCOPE_ROWS`, estimated
from the planner's statistics of the projection's ``namespace`` column) ranks
them exactly instead, from the projection alone (:func:`_scope_sql`): a graph
scan would walk past every other namespace's neighbours (one namespace of 20
took 140-190 ms at 100k memories through the graph), and looking each vector
up by key from ``memories`` cost 5,000 index probes (65 ms). The settings
(``hnsw.ef_search``, ``hnsw.iterative_scan``, no parallel workers: launching
one cost 15 ms for an empty tail scan) travel in the same pipeline as the
search, so a search is one round trip. Batches of queries go a few hundred
per statement (``LATERAL`` over ``VALUES``), or, for a small filtered set,
ranked in process with one matrix product.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import psycopg
from psycopg_pool import PoolTimeout

from engramdb.model import RecallFilter
from engramdb.storage.base import top_hits
from engramdb.storage.postgres import fulltext
from engramdb.storage.postgres._conn import to_pyformat
from engramdb.storage.postgres.ann import (
    INDEX_NAME,
    IVF_NAME,
    analyze_if_stale,
    ivf_expression,
    scalar,
    search_ef,
)
from engramdb.storage.postgres.candidates import Candidates, cacheable
from engramdb.storage.postgres.errors import translate
from engramdb.storage.postgres.snapshot import without_every_namespace
from engramdb.storage.schema import TABLES
from engramdb.storage.sql import Dialect, decode_row, memory_where

__all__ = ["SearchStats", "VectorSearch", "search_text_and_vector", "search_vector",
           "search_vectors"]


class PgPool(Protocol):
    """What the searches need from :class:`~engramdb.storage.postgres.PostgresStorage`."""

    dialect_impl: Dialect
    _search_stats: SearchStats
    _candidates: Candidates

    def _read_conn(self) -> AbstractContextManager[psycopg.Connection[Any]]: ...

    def _second_conn(self) -> AbstractContextManager[psycopg.Connection[Any] | None]: ...

    def _failed(self, exc: BaseException) -> None: ...


_VECTORS_PER_STATEMENT = 250
# search_vectors ranks in this process when it has at least this many vectors
# and the filter matches at most this many stored ones (1.5 kB each at 384-d).
_IN_PROCESS_MIN_QUERIES = 16
_IN_PROCESS_MAX_ROWS = 20_000
_TAIL_CHUNK = 20_000  # unindexed vectors ranked per step (30 MB at 384-d)
# Lists a batch candidate search probes in the inverted-file index (ann.IVF_NAME). At
# 100k random vectors, of 2,000 planted near-duplicates: 4 lists found 1,974, 6 found
# 1,998 (the graph 1,578); bench/pg_detections.py flags 196 of 200 with 4, 200 with 6.
IVF_PROBES = 6


# The vectors written since the projection's watermark. The first bound is the
# watermark as last read (it only grows), so the planner sees a constant and plans an
# index scan of the few rows past it; the second is the watermark in this snapshot.
_TAIL = "v.vseq > ? AND v.vseq > (SELECT vseq FROM vector_index_state WHERE id = 1)"
_MARK_SQL = "SELECT vseq FROM vector_index_state WHERE id = 1"


def _knn_sql(select: str, cond: str, n: int, query: str, half: int | None = None,
             ivf: bool = False) -> tuple[str, str]:
    """The approximate and the exact nearest-neighbour SQL for the vector ``query``.

    ``query`` is ``?`` (a bound vector) or a column of an outer ``LATERAL`` row.
    ``half``: the dimension, when the graph indexes half-precision copies
    (``vec::halfvec(N)``, as :mod:`.ann` builds it): the graph orders by
    those, the rows carry the full-precision distance. Parameters of the
    approximate search: ``query``, filter params, ``query`` again if ``half``,
    ``query``, the last watermark read, filter params (a bound ``query`` only
    when it is ``?``). ``ivf``: order by the inverted-file index's expression
    (:data:`~.ann.IVF_NAME`, ``half`` is the dimension then) instead of the graph's.
    """
    # Unit vectors: ranking by inner product (<#> is its negative) is cosine ranking.
    order = (f"{ivf_expression('a.vec', half)} <#> ({query})::halfvec({half})"
             if half and ivf else
             f"a.vec::halfvec({half}) <#> ({query})::halfvec({half})" if half
             else "distance")
    approximate = (
        f"(SELECT {select}, a.vec <#> {query} AS distance FROM memory_vectors_ann a "
        "JOIN memories m ON m.id = a.id AND m.version = a.version "
        f"WHERE {cond} ORDER BY {order} LIMIT {n}) "
        "UNION ALL "
        f"(SELECT {select}, v.vec <#> {query} AS distance FROM memory_vectors v "
        "JOIN memories m ON m.id = v.id AND m.version = v.version "
        f"WHERE {_TAIL} AND {cond} ORDER BY distance LIMIT {n})"
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


def _hnsw_settings(conn: psycopg.Connection[Any], n: int, ivf: bool = False) -> None:
    """Search settings for this transaction: enough HNSW candidates for ``n`` hits
    (:func:`~.ann.search_ef`), and no parallel workers (a search reads a few
    hundred rows; starting a worker costs more than that, 15 ms measured for the
    usually empty unindexed tail).
    ``ivf``: the inverted-file index's probes too (:data:`IVF_PROBES` lists, more
    while a filtered search is short of ``n`` rows)."""
    conn.execute(
        "SELECT set_config('hnsw.ef_search', %s, true), "
        "set_config('hnsw.iterative_scan', 'relaxed_order', true), "
        "set_config('max_parallel_workers_per_gather', '0', true)"
        + (", set_config('ivfflat.probes', %s, true), "
           "set_config('ivfflat.iterative_scan', 'relaxed_order', true)" if ivf else ""),
        [str(search_ef(n)), *([str(IVF_PROBES)] if ivf else [])],
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
# vectors (as estimated by the planner's statistics of memory_vectors_ann.namespace).
SMALL_SCOPE_ROWS = 20_000
_STATS_MAX_AGE_S = 60.0


@dataclass
class SearchStats:
    """What plans a vector search: how many projected vectors each namespace holds,
    from the planner's statistics, and the projection's watermark as last read.

    The statistics are read from ``pg_stats`` (two catalog rows, once a
    minute), so choosing a strategy costs no round trip; until the projection
    has statistics, a bounded count of the scope's current rows decides
    instead. The watermark is read again in the pipeline of every search.
    """

    rows: float = 0.0
    common: dict[str, float] = field(default_factory=dict)  # namespace -> fraction of rows
    rare: float = 0.0  # fraction of rows of any namespace not in ``common``
    known: bool = False
    loaded_at: float = -_STATS_MAX_AGE_S
    mark: int = 0  # vector_index_state.vseq when last read (it never decreases)
    half: bool = False  # the graph indexes vec::halfvec(N) (as ann.py builds it)
    ivf: bool = False  # the inverted-file index (ann.IVF_NAME) exists

    def refresh(self, conn: psycopg.Connection[Any]) -> None:
        # Until the projection has statistics (a new table), look again sooner.
        if time.monotonic() - self.loaded_at < (_STATS_MAX_AGE_S if self.known else 5.0):
            return
        row = conn.execute(
            "SELECT GREATEST(c.reltuples, 0), s.most_common_vals::text::text[], "
            "s.most_common_freqs, s.n_distinct FROM pg_class c LEFT JOIN pg_stats s "
            "ON s.schemaname = current_schema() AND s.tablename = 'memory_vectors_ann' "
            "AND s.attname = 'namespace' WHERE c.oid = 'memory_vectors_ann'::regclass"
        ).fetchone()
        rows, vals, freqs, distinct = row if row else (0.0, None, None, None)
        self.rows = float(rows or 0.0)
        self.common = dict(zip(vals or [], freqs or [], strict=False))
        distinct = float(distinct or 0.0)
        if distinct < 0:  # a fraction of the rows
            distinct = -distinct * self.rows
        others = max(1.0, distinct - len(self.common))
        self.rare = max(0.0, 1.0 - sum(self.common.values())) / others
        self.known = distinct > 0
        self.mark = int(scalar(conn, _MARK_SQL) or 0)
        self.half = bool(scalar(conn, "SELECT strpos(indexdef, 'halfvec') > 0 FROM pg_indexes "
                                "WHERE indexname = %s", [INDEX_NAME]))
        self.ivf = scalar(conn, "SELECT to_regclass(%s)", [IVF_NAME]) is not None
        self.loaded_at = time.monotonic()

    def surely_over(self, flt: RecallFilter, rows: int) -> bool:
        """Whether the statistics (as last refreshed) put more than ``rows`` vectors in
        ``flt``'s namespaces: then a batch does not count them to choose its path."""
        if not self.known:
            return False
        share = 1.0 if flt.namespaces is None else sum(
            self.common.get(ns, self.rare) for ns in flt.namespaces)
        return share * self.rows > rows

    def small(self, conn: psycopg.Connection[Any], flt: RecallFilter) -> bool:
        """Whether ``flt`` reads few enough namespaces' vectors to rank them exactly."""
        if flt.namespaces is None or len(flt.namespaces) > 64:
            return False
        self.refresh(conn)
        if self.known:
            return sum(self.common.get(ns, self.rare) for ns in flt.namespaces
                       ) * self.rows <= SMALL_SCOPE_ROWS
        row = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM memories WHERE tx_to IS NULL "
            f"AND namespace = ANY(%s) LIMIT {SMALL_SCOPE_ROWS + 1}) s",
            [list(flt.namespaces)]).fetchone()
        return row is not None and int(row[0]) <= SMALL_SCOPE_ROWS


def _scope_sql(select: str, cond: str, n: int) -> str:
    """Exact nearest rows of a few namespaces, read from the projection alone.

    The scope's projected vectors are ranked by distance (an index scan of
    ``memory_vectors_ann.namespace``; the rebuild stores them in namespace
    order), and only the best ``8 n`` are joined to ``memories`` for the
    filters, in distance order; the unindexed tail is searched as in the
    graph path. If fewer than ``n`` rows pass, the caller asks the plain exact
    search: then the answer is exact either way (the pool is an exact prefix
    of the scope's ranking). Parameters: vector, namespaces, filter params,
    vector, watermark, filter params.
    """
    pool = max(8 * n, 200)
    return (
        f"(SELECT {select}, c.distance FROM (SELECT a.id, a.version, a.vec <#> ? AS distance "
        "FROM memory_vectors_ann a WHERE a.namespace = ANY(?) "
        f"ORDER BY distance LIMIT {pool}) c "
        "JOIN memories m ON m.id = c.id AND m.version = c.version "
        f"WHERE {cond} ORDER BY c.distance LIMIT {n}) "
        "UNION ALL "
        f"(SELECT {select}, v.vec <#> ? AS distance FROM memory_vectors v "
        "JOIN memories m ON m.id = v.id AND m.version = v.version "
        f"WHERE {_TAIL} AND {cond} ORDER BY distance LIMIT {n})"
    )


def search_vector(
    store: PgPool, vector: np.ndarray, flt: RecallFilter, limit: int, *, brief: bool = False
) -> list[tuple[dict[str, Any], float]]:
    """Nearest memory versions by cosine similarity, filters inside the query.

    One statement (one snapshot) searches the HNSW projection with
    iterative scanning (pgvector 0.8: a filtered query keeps scanning until
    it has ``limit`` hits) and, exactly, the vectors written since the
    projection's watermark. If that still comes back short of ``limit``, an
    exact scan over all filtered rows answers instead, so a filter never
    hides a match that exists. ``brief``: each row also carries its stored words,
    as in :func:`~.fulltext.search_text`.
    """
    if limit <= 0:
        return []
    try:
        with store._read_conn() as conn:
            search = VectorSearch(store, conn, vector, flt, limit, brief=brief)
            with conn.pipeline():  # one round trip
                search.send(conn)
            return search.hits(conn)
    except (psycopg.Error, PoolTimeout) as exc:
        store._failed(exc)
        raise translate(exc) from exc


def search_text_and_vector(
    store: Any, query: str, vector: np.ndarray, flt: RecallFilter, limit: int, *,
    brief: bool = False,
) -> tuple[list[tuple[dict[str, Any], float]], list[tuple[dict[str, Any], float]]]:
    """:func:`~.fulltext.search_text` and :func:`search_vector`, both statements in
    one pipeline: one round trip instead of two (the searches are independent
    given the filter). The same statements, run in the same order, on the same
    connection (inside a snapshot, the snapshot's): the same rows.
    """
    if limit <= 0:
        return [], []
    stats = fulltext.term_stats(store)  # before taking a connection: it may need one
    try:
        with store._read_conn() as conn:
            text = fulltext.text_statement(store, conn, stats, query, flt, limit, brief=brief)
            search = VectorSearch(store, conn, vector, flt, limit, brief=brief)
            # These very statements sent ahead with the snapshot (.ahead): their rows.
            sent = store._taken_ahead(text, search)
            if sent is not None:
                text_rows, search = sent
            else:
                with conn.pipeline():  # one round trip
                    # Planned for its words every time, as search_text runs it.
                    text_cur = None if text is None else conn.execute(
                        to_pyformat(text[0]), text[1], prepare=False)
                    search.send(conn)
                text_rows = [] if text_cur is None else text_cur.fetchall()
            return fulltext.text_hits(text_rows, brief=brief), search.hits(conn)
    except (psycopg.Error, PoolTimeout) as exc:
        store._failed(exc)
        raise translate(exc) from exc


class VectorSearch:
    """One :func:`search_vector`, in steps, so its statements can share a pipeline
    with others (``PostgresStorage.search_text_and_vector``): plan it (the
    constructor; it may read the planner's statistics on ``conn``), :meth:`send`
    it inside the caller's pipeline, and read :meth:`hits` once that pipeline
    has been synced (it asks the exact search when the answer came back short).
    """

    def __init__(self, store: PgPool, conn: psycopg.Connection[Any], vector: np.ndarray,
                 flt: RecallFilter, limit: int, *, brief: bool = False) -> None:
        vec = np.asarray(vector, dtype=np.float32).reshape(-1)
        cols = list(TABLES["memories"].columns)
        select = ", ".join("m." + c for c in cols) + (", m.words" if brief else "")
        self.brief = brief
        # The plan follows flt (a narrow scope is ranked exactly); the condition may
        # drop a list of every namespace (the same rows).
        cond, params = memory_where(without_every_namespace(store, flt), store.dialect_impl)
        self.n = n = int(limit)
        self.stats = stats = store._search_stats
        stats.refresh(conn)
        half = vec.size if stats.half else None
        approximate, exact = _knn_sql(select, cond, n, "?", half)
        if stats.small(conn, flt):
            # A narrow scope: exact over its rows beats walking the graph past
            # the other namespaces' neighbours (iterative scan) by far.
            self.sql = to_pyformat(_scope_sql(select, cond, n))
            self.args = [vec, list(flt.namespaces or ()), *params, vec, stats.mark, *params]
        else:
            self.sql = to_pyformat(approximate)
            self.args = [vec, *params, *([vec] if half else []), vec, stats.mark, *params]
        self.exact, self.exact_args = to_pyformat(exact), [vec, *params]
        self._cur: Any = None
        self._mark: Any = None

    def send(self, conn: psycopg.Connection[Any], *, savepoint: bool = True) -> None:
        """Queue the search in ``conn``'s open pipeline (settings, search, watermark).
        ``savepoint=False``: in the caller's transaction as it is (the settings then
        hold until it ends; :mod:`.ahead`, whose transaction is a read snapshot)."""
        with conn.transaction() if savepoint else nullcontext():
            _hnsw_settings(conn, self.n)
            self._cur = conn.execute(self.sql, self.args)
            self._mark = conn.execute(_MARK_SQL)

    def hits(self, conn: psycopg.Connection[Any]) -> list[tuple[dict[str, Any], float]]:
        """The nearest rows, best first, once :meth:`send`'s pipeline was synced."""
        found = _nearest_once(self._cur.fetchall())
        self.stats.mark = int((self._mark.fetchone() or (0,))[0])
        if len(found) < self.n:
            with conn.pipeline(), conn.transaction():
                _hnsw_settings(conn, self.n)
                cur = conn.execute(self.exact, self.exact_args)
            found = cur.fetchall()
        # relaxed_order may return neighbours slightly out of order: sort them.
        found.sort(key=lambda r: (r[-1], r[0], r[1]))
        return [(fulltext.memory_row(r[:-1], self.brief), -float(r[-1]))
                for r in found[:self.n]]


def search_vectors(
    store: PgPool, vectors: Sequence[np.ndarray], flt: RecallFilter, limit: int,
    min_similarity: float | None = None,
) -> list[list[tuple[dict[str, Any], float]]]:
    """:meth:`search_vector` for each vector, a few hundred per statement.

    The same two searches per vector, as ``LATERAL`` subqueries over a
    ``VALUES`` list of the vectors: one round trip answers a chunk of
    vectors instead of one (or two) per vector. Vectors whose approximate
    answer comes back short get the exact search, again together. The
    approximate search probes the inverted-file index (:data:`~.ann.IVF_NAME`,
    :data:`IVF_PROBES` lists) where the indexer has built one, else the graph.
    """
    if limit <= 0 or len(vectors) == 0:
        return [[] for _ in vectors]
    vecs = [np.asarray(v, dtype=np.float32).reshape(-1) for v in vectors]
    spec = TABLES["memories"]
    cols = list(spec.columns)
    select = ", ".join("m." + c for c in cols)
    cond, params = memory_where(flt, store.dialect_impl)
    n = int(limit)
    found: list[list[tuple[Any, ...]]] = [[] for _ in vecs]
    answers = found  # per vector asked; ``found`` follows ``vecs`` (the ones left)
    slots: list[int] | None = None  # which of ``answers`` each of ``found`` is, if held
    try:
        with store._read_conn() as conn:
            stats = store._search_stats
            stats.refresh(conn)  # the graph's form, for the plan
            held = None
            if (len(vecs) >= _IN_PROCESS_MIN_QUERIES and min_similarity is not None
                    and cacheable(flt)):
                # A candidate search of one namespace: its vectors held in this process
                # (candidates.py), the server asked only for the proposed rows (and for
                # queries whose proposals were cut short).
                held = store._candidates.search(conn, vecs, flt, select, cond, params, n,
                                                min_similarity)
                if held is not None:
                    answers, left = held
                    vecs = [vecs[i] for i in left]
                    found = [[] for _ in vecs]
                    slots = left
            if (held is None and len(vecs) >= _IN_PROCESS_MIN_QUERIES
                    and not stats.surely_over(flt, 2 * _IN_PROCESS_MAX_ROWS)):
                exact_found = _exact_in_process(conn, vecs, select, cond, params, n,
                                                min_similarity)
                if exact_found is not None:
                    found = exact_found
                    vecs = []  # answered: skip the statements below
            # The inverted-file index when there is one: a few lists probed per query,
            # several times cheaper than a graph walk past 20,000 vectors.
            ivf = stats.ivf
            approximate, exact = _knn_sql(select, cond, n, "q.qv", vecs[0].size
                                          if vecs and (stats.half or ivf) else None, ivf)
            tail: list[Any] = []
            if vecs:
                # The watermark as it is now: the tail's plan takes it as a constant,
                # and a stale one would scan every vector written since, per query.
                stats.mark = int(scalar(conn, _MARK_SQL) or 0)
                tail = _tail_in_process(conn, vecs, select, cond, params, n,
                                        min_similarity, stats.mark)
            if tail:
                approximate = approximate.split(" UNION ALL ")[0]  # the graph alone
                found = tail
            if len(vecs) >= _IN_PROCESS_MIN_QUERIES:
                # Thousands of graph searches follow: plan them with statistics that
                # know the bulk load before them (else each probes the whole namespace).
                analyze_if_stale(conn)
            args = (vecs, approximate, exact, [*params], None if tail else stats.mark, n,
                    ivf, found)
            starts = range(0, len(vecs), _VECTORS_PER_STATEMENT)
            if len(starts) < 2:
                _search_chunks(conn, starts, *args)
            else:
                # Two connections, so the server searches on two cores (each statement
                # is its own snapshot either way; settle_batch covers what is newer).
                with store._second_conn() as other:
                    if other is None:
                        _search_chunks(conn, starts, *args)
                    else:
                        with ThreadPoolExecutor(1) as pool:
                            done = pool.submit(_search_chunks, other, starts[1::2], *args)
                            _search_chunks(conn, starts[0::2], *args)
                            done.result()
    except (psycopg.Error, PoolTimeout) as exc:
        store._failed(exc)
        raise translate(exc) from exc
    if slots is None:
        answers = found
    else:
        for i, hits in zip(slots, found, strict=True):
            answers[i] = hits
    out = []
    for hits in answers:
        hits.sort(key=lambda r: (r[-1], r[0], r[1]))
        out.append([(decode_row(spec, cols, r[:-1]), -float(r[-1])) for r in hits[:n]
                    if min_similarity is None or -float(r[-1]) >= min_similarity])
    return out


def _search_chunks(conn: psycopg.Connection[Any], starts: Sequence[int],
                   vecs: list[np.ndarray], approximate: str, exact: str, params: list[Any],
                   mark: int | None, n: int, ivf: bool, found: list[list[tuple[Any, ...]]]
                   ) -> None:
    """The statements of :func:`search_vectors` for the chunks beginning at ``starts``
    (:data:`_VECTORS_PER_STATEMENT` vectors each), answers into ``found``. ``mark``:
    the watermark the SQL searches the unindexed tail past (None: it was ranked in
    process and ``approximate`` is the index search alone)."""
    for start in starts:
        chunk = range(start, min(len(vecs), start + _VECTORS_PER_STATEMENT))
        with conn.pipeline(), conn.transaction():
            _hnsw_settings(conn, n, ivf)
            rows = conn.execute(
                to_pyformat(_lateral(approximate, len(chunk))),
                [*(vecs[i] for i in chunk), *params,
                 *(() if mark is None else (mark, *params))]).fetchall()
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


def _tail_in_process(conn: psycopg.Connection[Any], vecs: list[np.ndarray], select: str,
                     cond: str, params: list[Any], n: int, min_similarity: float | None,
                     mark: int) -> list[list[tuple[Any, ...]]]:
    """Exact nearest rows among the vectors past the watermark ``mark`` (the ones the
    graph has not indexed yet), for many vectors at once: the tail is streamed once
    (:data:`_TAIL_CHUNK` rows at a time) and ranked in process, instead of scanned
    by every query's statement (a burst of writes leaves thousands there, a bulk
    load all of it while the graph is rebuilt, and a batch asks thousands of
    queries). Empty when there are few queries: the SQL searches the tail then.
    Read before the graph is searched, so a row the indexer moves past the
    watermark meanwhile is found by one search or both, never by neither."""
    if len(vecs) < _IN_PROCESS_MIN_QUERIES:
        return []
    queries = np.stack(vecs)
    best: list[list[tuple[float, str, int]]] = [[] for _ in vecs]
    with conn.transaction(), conn.cursor(name="engramdb_tail", binary=True) as cur:
        cur.itersize = _TAIL_CHUNK
        cur.execute(to_pyformat(
            "SELECT v.id, v.version, v.vec FROM memory_vectors v JOIN memories m "
            f"ON m.id = v.id AND m.version = v.version WHERE v.vseq > {int(mark)} AND {cond}"),
            params)
        while rows := cur.fetchmany(_TAIL_CHUNK):
            if not all(isinstance(r[2], np.ndarray) for r in rows):
                return []  # no binary vector loader on this connection
            matrix = np.stack([r[2] for r in rows])
            step = max(1, (8 << 20) // len(rows))
            for start in range(0, len(queries), step):
                ranked = top_hits(queries[start:start + step] @ matrix.T, n, min_similarity)
                for q, hits in enumerate(ranked, start):
                    if hits:
                        kept = best[q] + [(sim, rows[i][0], int(rows[i][1])) for i, sim in hits]
                        best[q] = sorted(kept, key=lambda h: -h[0])[:n]
    wanted = sorted({memory_id for hits in best for _, memory_id, _ in hits})
    full = {(r[0], int(r[1])): r for r in conn.execute(
        to_pyformat(f"SELECT {select} FROM memories m WHERE m.id = ANY(?)"),
        [wanted]).fetchall()} if wanted else {}
    return [[(*full[(m, v)], -sim) for sim, m, v in hits if (m, v) in full] for hits in best]


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
