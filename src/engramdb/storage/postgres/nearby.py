"""An in-process index of the namespaces a batch's contradiction check searches.

A semantic ``remember_many`` asks, for every memory, the nearest committed
semantic memories of its namespace (engine/trust.py). One pgvector graph
search per memory costs 2.5-3.5 ms on this kind of server, so a batch of
2,000 spends seconds there. This module keeps, per namespace, the vectors and
the filterable columns of its memory versions in NumPy arrays, plus (past
:data:`GRAPH_MIN` vectors) a usearch HNSW graph over them, and answers a
whole batch's searches at once: an exact matrix product for a small
namespace, the graph with exact re-scoring for a large one.

Freshness is SQLite's ``VectorIndex`` rule, read from PostgreSQL: before
each search, in one ``REPEATABLE READ`` snapshot, the namespace's
``memories`` rows whose ``row_tx`` is past what this process has seen (new
versions, retractions, supersessions: every change stamps ``row_tx``) and
the vectors whose ``vseq`` is past the last one seen (new or re-embedded
vectors). Writers hold the chain lock through their commit, so a snapshot
that shows chain head ``tx`` shows every row stamped at or before it: the
arrays then hold exactly the committed state at that head, whichever
process wrote it. Erasure deletes rows, which no watermark shows: a
``memory.erased`` event past the watermark drops every namespace held here
(and :meth:`PostgresStorage.purge` drops them in its own process), so no
erased vector outlives the purge, or the next search of another process that
held it.

The answer is exact with respect to committed data (a superseded, retracted
or erased version is never a hit); the graph path is as approximate as
pgvector's HNSW search it replaces, and when its pool may have cut off
qualifying rows (fewer than ``limit`` pass the filter and the pool never
fell below ``min_similarity``) that query is ranked exactly instead.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg

from engramdb.model import RecallFilter
from engramdb.storage.base import top_hits

__all__ = ["GRAPH_MIN", "Nearby", "cacheable"]

# A namespace with at least this many vectors is searched through a graph; below it
# a batch's exact product (2,000 queries x GRAPH_MIN x 384 floats, ~0.2-0.4 s here)
# costs about what the graph's search and insertions do, and finds every candidate.
GRAPH_MIN = 32_000
# Vectors held in one process over all namespaces (1.5 kB each at 384-d): past it,
# a namespace is not taken in and its searches go to the server as before.
MAX_VECTORS = 400_000
_GRAPH_POOL_MIN = 16  # graph candidates per query, at least (re-scored exactly)
# A pool whose worst row is this far below the floor is taken to hold every row above
# it (the graph's int8 ranking is close to the exact one).
_MARGIN = 0.05
# The scouting walk: this many graph nodes first (0: none); a query whose best row found
# is more than _SCOUT_MARGIN below the floor is taken to have none above it. Off: on
# random vectors (no structure: a graph's worst case) with a planted near-duplicate
# each, 200 planted at 100k, the contradictions flagged were 185 with scouting (ef 24)
# and a full search of ef 48, 194 without scouting, 197 with a full search of ef 96,
# as many as pgvector's graph flags (BENCHMARKS.md "Merged main, pgsem4 settings").
_SCOUT_EF = 0
_EF = 96  # the full search's walk (pgvector's ef_search in knn.py: max(40, 2 limit))
_EXPANSION_ADD = 64
# Vectors written since the graph was extended are ranked exactly while a background
# thread inserts them (during the batch's own write); more than this, inserted first.
_TAIL_MAX = 8_000
_SCOUT_MARGIN = 0.1
_LOAD_CHUNK = 20_000
_NONE = np.iinfo(np.int64).max


def cacheable(flt: RecallFilter) -> bool:
    """Whether ``flt`` is a candidate search this index answers: one namespace's
    current versions by layer, status and subject, nothing else."""
    return (flt.namespaces is not None and len(flt.namespaces) == 1
            and flt.layers is not None
            and flt == RecallFilter(namespaces=flt.namespaces, layers=flt.layers,
                                    statuses=flt.statuses, subject=flt.subject))


def _usearch_index() -> Any:
    # onnxruntime first: loaded after usearch it crashes the process (see
    # storage/sqlite/snapshot.py, _usearch_index).
    with contextlib.suppress(ImportError):
        import onnxruntime  # noqa: F401
    from usearch.index import Index

    return Index


class _Space:
    """One namespace: its memory versions' columns and unit vectors, by position."""

    def __init__(self, dimension: int) -> None:
        self.lock = threading.Lock()
        self.dimension = dimension
        self.seen_tx = -1  # chain head tx the arrays are exact at (-1: nothing read)
        self.seen_vseq = 0
        self.n = 0
        self.pos: dict[tuple[str, int], int] = {}
        self.ids: list[str] = []
        self.versions = np.zeros(0, dtype=np.int64)
        self.vecs = np.zeros((0, dimension), dtype=np.float32)
        self.has_vec = np.zeros(0, dtype=bool)
        self.current = np.zeros(0, dtype=bool)
        self.layer = np.zeros(0, dtype=np.int32)
        self.status = np.zeros(0, dtype=np.int32)
        self.subject = np.zeros(0, dtype=np.int32)
        self.codes: dict[str, dict[str | None, int]] = {"layer": {}, "status": {},
                                                        "subject": {None: 0}}
        self.graph: Any = None
        self.graphed = 0  # positions [0, graphed) are in the graph
        self.adder: threading.Thread | None = None  # adding the newest positions to it
        self.builder: threading.Thread | None = None  # building the first graph
        self.built: tuple[Any, int, int] = (None, 0, -1)  # (graph, positions, generation)
        self.generation = 0  # counts vectors replaced under the graph (it is then rebuilt)

    def settle(self) -> None:
        """Wait for the graph's background insertions (before anything reads or changes
        it), and take a first graph built in the background if it is ready."""
        if self.adder is not None:
            self.adder.join()
            self.adder = None
        if self.builder is not None and not self.builder.is_alive():
            self.builder.join()
            self.builder = None
            built, upto, generation = self.built
            if built is not None and generation == self.generation:
                self.graph, self.graphed = built, upto

    def build_in_background(self) -> None:
        """Start building the first graph from a copy of the vectors held now."""
        upto, generation = self.n, self.generation
        keys = np.flatnonzero(self.has_vec[:upto])
        vecs = self.vecs[keys]  # a copy: refreshes may go on meanwhile

        def build() -> None:
            self.built = (None, 0, -1)
            graph = _new_graph(self.dimension)
            graph.add(keys, vecs, threads=2)
            self.built = (graph, upto, generation)

        self.builder = threading.Thread(target=build, name="engramdb-pg-nearby-build",
                                        daemon=True)
        self.builder.start()

    def _grow(self, need: int) -> None:
        cap = len(self.versions)
        if need <= cap:
            return
        cap = max(need, 2 * cap, 1024)
        vecs = np.zeros((cap, self.dimension), dtype=np.float32)
        vecs[:self.n] = self.vecs[:self.n]
        self.vecs = vecs
        for name in ("versions", "has_vec", "current", "layer", "status", "subject"):
            setattr(self, name, np.resize(getattr(self, name), cap))

    def code(self, column: str, value: str | None) -> int:
        table = self.codes[column]
        c = table.get(value)
        if c is None:
            c = table[value] = len(table)
        return c

    def put_row(self, memory_id: str, version: int, layer: str, status: str,
                current: bool, subject: str | None) -> int:
        key = (memory_id, version)
        p = self.pos.get(key)
        if p is None:
            self._grow(self.n + 1)
            p = self.pos[key] = self.n
            self.n += 1
            self.ids.append(memory_id)
            self.versions[p] = version
            self.has_vec[p] = False
        self.current[p] = current
        self.layer[p] = self.code("layer", layer)
        self.status[p] = self.code("status", status)
        self.subject[p] = self.code("subject", subject)
        return p

    def put_vectors(self, positions: list[int], vecs: list[np.ndarray]) -> None:
        """Store unit copies of ``vecs`` at ``positions`` (rows of the wrong size: none)."""
        right = [i for i, v in enumerate(vecs) if np.asarray(v).size == self.dimension]
        for i in set(range(len(vecs))) - set(right):
            self.has_vec[positions[i]] = False
        if not right:
            return
        at = np.array([positions[i] for i in right], dtype=np.int64)
        mat = np.stack([np.asarray(vecs[i], dtype=np.float32).reshape(-1) for i in right])
        norms = np.linalg.norm(mat, axis=1)
        self.vecs[at] = mat / np.where(norms == 0, 1.0, norms)[:, None]
        if (at < max(self.graphed, self.built[1])).any():
            self.graph = None  # a vector the graph holds (or skipped) changed: rebuild it
            self.graphed = 0
            self.generation += 1
        self.has_vec[at] = True

    def mask(self, flt: RecallFilter) -> np.ndarray:
        n = self.n
        mask = self.has_vec[:n] & self.current[:n]
        for column, values in (("layer", flt.layers), ("status", flt.statuses)):
            if values is not None:
                wanted = [self.codes[column][v] for v in values if v in self.codes[column]]
                mask &= np.isin(getattr(self, column)[:n], wanted)
        if flt.subject is not None:
            mask &= self.subject[:n] == self.codes["subject"].get(flt.subject, -1)
        return mask


class Nearby:
    """The per-process index of the namespaces batch candidate searches asked for."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spaces: dict[str, _Space] = {}

    def held(self) -> int:
        """Vectors held, over all namespaces."""
        with self._lock:
            return sum(s.n for s in self._spaces.values())

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for graphs being built in the background; False on timeout."""
        with self._lock:
            spaces = list(self._spaces.values())
        for space in spaces:
            builder = space.builder
            if builder is not None:
                builder.join(timeout)
                if builder.is_alive():
                    return False
        return True

    def clear(self) -> None:
        """Drop every namespace (after an erasure: no erased vector stays)."""
        with self._lock:
            spaces, self._spaces = self._spaces, {}
        for space in spaces.values():  # a builder's copy of the vectors goes with it
            if space.builder is not None:
                space.builder.join()
            space.settle()

    def search(self, conn: psycopg.Connection[Any], vecs: Sequence[np.ndarray],
               flt: RecallFilter, select: str, limit: int, min_similarity: float | None
               ) -> list[list[tuple[Any, ...]]] | None:
        """Rows (memory columns..., distance) for each vector, or None: ask the server.

        ``select`` lists the memory columns (``m.``-prefixed) the rows carry.
        """
        ns = (flt.namespaces or ("",))[0]
        dim = int(np.asarray(vecs[0]).size)
        with self._lock:
            space = self._spaces.get(ns)
            if space is None or space.dimension != dim:
                space = self._spaces[ns] = _Space(dim)
        with space.lock:
            space.settle()
            own = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            with conn.transaction() if own else contextlib.nullcontext():
                if own:
                    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                fresh = self._refresh(conn, ns, space)
                if not fresh:
                    if fresh is None:  # not to be held: start afresh next time
                        with self._lock:
                            self._spaces.pop(ns, None)
                    return None
                hits = _rank(space, np.stack([np.asarray(v, dtype=np.float32).reshape(-1)
                                              for v in vecs]), flt, limit, min_similarity)
                if hits is None:
                    return None
                wanted = sorted({space.ids[p] for found in hits for p, _ in found})
                rows = {(r[0], int(r[1])): r for r in conn.execute(
                    f"SELECT {select} FROM memories m WHERE m.id = ANY(%s)",
                    [wanted]).fetchall()} if wanted else {}
        return [[(*rows[key], -sim) for p, sim in found
                 if (key := (space.ids[p], int(space.versions[p]))) in rows]
                for found in hits]

    def _refresh(self, conn: psycopg.Connection[Any], ns: str, space: _Space) -> bool | None:
        """Bring ``space`` to the snapshot's head. False: the snapshot is older than the
        arrays (ask the server this time); None: the namespace cannot be held."""
        head = conn.execute("SELECT tx FROM chain_head WHERE id = 1").fetchone()
        head_tx = int(head[0]) if head else 0
        if space.seen_tx >= 0:
            if head_tx < space.seen_tx:
                return False  # an older snapshot (a pinned read): ask the server
            if head_tx == space.seen_tx:
                return True
            erased = conn.execute(
                "SELECT 1 FROM events WHERE tx > %s AND kind = 'memory.erased' LIMIT 1",
                [space.seen_tx]).fetchone()
            if erased:
                self.clear()
                return None  # the next search starts this namespace afresh
        first = space.seen_tx < 0
        if first:
            count = conn.execute("SELECT count(*) FROM memories WHERE namespace = %s",
                                 [ns]).fetchone()
            if self.held() + int(count[0] if count else 0) > MAX_VECTORS:
                return None
        vseq = conn.execute("SELECT COALESCE(max(vseq), 0) FROM memory_vectors").fetchone()
        for r in conn.execute(
                "SELECT id, version, layer, status, tx_to IS NULL, subject FROM memories "
                "WHERE namespace = %s AND row_tx > %s AND row_tx <= %s",
                [ns, space.seen_tx, head_tx]):
            space.put_row(r[0], int(r[1]), r[2], r[3], bool(r[4]), r[5])
        with conn.cursor(binary=True) as cur:
            cur.execute(
                "SELECT v.id, v.version, v.vec FROM memory_vectors v JOIN memories m "
                "ON m.id = v.id AND m.version = v.version WHERE m.namespace = %s"
                + ("" if first else " AND v.vseq > %s"),
                [ns] if first else [ns, space.seen_vseq])
            while rows := cur.fetchmany(_LOAD_CHUNK):
                if not all(isinstance(r[2], np.ndarray) for r in rows):
                    return None  # no binary vector loader on this connection
                at = [(space.pos.get((r[0], int(r[1]))), r[2]) for r in rows]
                space.put_vectors([p for p, _ in at if p is not None],
                                  [v for p, v in at if p is not None])
        space.seen_tx = head_tx
        space.seen_vseq = int(vseq[0]) if vseq else 0
        return None if self.held() > MAX_VECTORS else True  # grown past the cap: drop it


def _rank(space: _Space, queries: np.ndarray, flt: RecallFilter, limit: int,
          min_similarity: float | None) -> list[list[tuple[int, float]]] | None:
    """The best ``limit`` (position, similarity) per query among the rows ``flt`` keeps;
    None while a large namespace's first graph is being built (the server answers)."""
    norms = np.linalg.norm(queries, axis=1)
    queries = (queries / np.where(norms == 0, 1.0, norms)[:, None]).astype(np.float32)
    mask = space.mask(flt)
    if not mask.any():
        return [[] for _ in queries]
    positions = np.flatnonzero(mask)
    if space.n < GRAPH_MIN or len(positions) < GRAPH_MIN:
        return _exact(space, queries, positions, limit, min_similarity)
    return _graph(space, queries, mask, positions, limit, min_similarity)


def _exact(space: _Space, queries: np.ndarray, positions: np.ndarray, limit: int,
           min_similarity: float | None) -> list[list[tuple[int, float]]]:
    matrix = space.vecs[positions]
    out: list[list[tuple[int, float]]] = []
    step = max(1, (8 << 20) // max(1, len(positions)))  # ~32 MB of similarities a step
    for start in range(0, len(queries), step):
        for hits in top_hits(queries[start:start + step] @ matrix.T, limit, min_similarity):
            out.append([(int(positions[i]), sim) for i, sim in hits])
    return out


def _graph(space: _Space, queries: np.ndarray, mask: np.ndarray, positions: np.ndarray,
           limit: int, min_similarity: float | None) -> list[list[tuple[int, float]]] | None:
    """Graph candidates re-scored exactly (None until the first graph is built).

    With a floor and :data:`_SCOUT_EF` set, a cheap scouting walk first: a query
    whose best row found is far below the floor has no candidate; the others get
    the full search (off by default: it lost planted contradictions).
    A query whose full pool may have cut off qualifying rows (fewer than
    ``limit`` pass, and the pool never fell below the floor) is ranked exactly
    over the filtered rows ``positions`` instead.
    """
    if space.graph is None:
        # The first graph of a large namespace takes seconds to a minute: built in the
        # background while the server answers, as it did before this index.
        if space.builder is None:
            space.build_in_background()
        return None
    if space.n - space.graphed > _TAIL_MAX:
        _extend_graph(space, space.n)
    # Positions the graph does not hold yet (the last batches' vectors): ranked exactly.
    tail = positions[positions >= space.graphed]
    recent = _exact(space, queries, tail, limit, min_similarity) if len(tail) else None
    out = _graph_only(space, queries, mask, positions, limit, min_similarity)
    if recent is not None:
        for q, hits in enumerate(recent):
            if hits:
                merged = dict(out[q])
                merged.update(hits)
                out[q] = sorted(merged.items(), key=lambda h: -h[1])[:limit]
    if space.graphed < space.n:  # into the graph while the batch is written
        space.adder = threading.Thread(target=_extend_or_drop, args=(space, space.n),
                                       name="engramdb-pg-nearby", daemon=True)
        space.adder.start()
    return out


def _graph_only(space: _Space, queries: np.ndarray, mask: np.ndarray, positions: np.ndarray,
                limit: int, min_similarity: float | None) -> list[list[tuple[int, float]]]:
    out: list[list[tuple[int, float]]] = [[] for _ in queries]
    floor = -np.inf if min_similarity is None else float(min_similarity)
    todo = np.arange(len(queries))
    if min_similarity is not None and _SCOUT_EF:
        _, got, sims = _pool(space, queries, max(limit, 1), _SCOUT_EF)
        best = np.where(got, sims, -np.inf).max(axis=1)
        todo = np.flatnonzero(best >= floor - _SCOUT_MARGIN)
    if not len(todo):
        return out
    queries = queries[todo]
    pool = max(2 * limit, _GRAPH_POOL_MIN)
    keys, got, sims = _pool(space, queries, pool, max(_EF, pool))
    counts = got.sum(axis=1)
    # The pool's lowest similarity, over every row it holds (filtered or not).
    lowest = np.where(got, sims, np.inf).min(axis=1)
    keep = got & mask[keys] & (sims >= floor)
    whole = counts >= int(space.has_vec[:space.graphed].sum())  # the pool is the graph
    complete = (keep.sum(axis=1) >= limit) | whole | (
        (counts == pool) & (lowest < floor - _MARGIN))
    for q, at in enumerate(todo.tolist()):
        row = np.flatnonzero(keep[q])
        order = row[np.argsort(-sims[q, row], kind="stable")][:limit]
        out[at] = [(int(keys[q, i]), float(sims[q, i])) for i in order]
    short = np.flatnonzero(~complete)
    if len(short):
        for q, hits in zip(todo[short].tolist(), _exact(
                space, queries[short], positions, limit, min_similarity), strict=True):
            out[q] = hits
    return out


def _pool(space: _Space, queries: np.ndarray, pool: int, ef: int
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The graph's ``pool`` nearest positions per query (walking ``ef`` of them), whether
    each slot holds one, and their exact similarities."""
    space.graph.expansion_search = ef
    found = space.graph.search(queries, pool, threads=2)
    keys = np.asarray(found.keys).reshape(len(queries), -1).astype(np.int64)
    counts = np.asarray(found.counts).reshape(-1)
    got = (np.arange(keys.shape[1])[None, :] < counts[:, None]) & (keys >= 0) \
        & (keys < space.n)
    keys = np.where(got, keys, 0)
    sims = np.empty(keys.shape, dtype=np.float32)
    step = 256
    for start in range(0, len(queries), step):  # exact re-scoring, ~10 MB a step
        stop = start + step
        sims[start:stop] = np.einsum("qd,qkd->qk", queries[start:stop],
                                     space.vecs[keys[start:stop]])
    return keys, got, sims


def _new_graph(dimension: int) -> Any:
    # int8 copies (a quarter of the size; re-scored exactly), built as the SQLite
    # snapshot's graphs are (a lighter build, expansion_add 32, lost a sixth of
    # planted near-duplicates among random vectors).
    return _usearch_index()(ndim=dimension, metric="ip", dtype="i8", connectivity=16,
                            expansion_add=_EXPANSION_ADD, expansion_search=_EF)


def _extend_graph(space: _Space, upto: int) -> None:
    """Add positions ``[graphed, upto)`` to the graph."""
    if space.graphed < upto:
        new = np.arange(space.graphed, upto)
        new = new[space.has_vec[new]]
        if len(new):
            space.graph.add(new, space.vecs[new], threads=2)
        space.graphed = upto


def _extend_or_drop(space: _Space, upto: int) -> None:
    """:func:`_extend_graph` in the background; a graph it failed to extend is dropped
    (and built afresh on a later search): it is derived data."""
    try:
        _extend_graph(space, upto)
    except Exception:  # noqa: BLE001 - never half a graph
        space.graph, space.graphed = None, 0
        space.generation += 1
