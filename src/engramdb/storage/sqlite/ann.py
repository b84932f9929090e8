"""Vector search over a SQLite database: the shared snapshot plus the rows written since.

Search reads two sources. The *snapshot* (:mod:`.snapshot`) is a memory-mapped
projection of every memory version as of transaction ``T``, with HNSW graphs;
the *delta* is an in-process exact index (:class:`.vectors.VectorIndex`) of
the rows whose ``row_tx`` is newer than ``T``, read from the file before each
search. A delta row overrides the snapshot's copy of the same row, so an
update, retraction or erasure committed by any process after ``T`` is seen by
the next search of every process, and the state searched is exactly the
committed state at the search's head.

Filters are answered inside the search, never by trimming a short list: the
HNSW path asks the graph for enough candidates that ``limit`` of them pass
(more when the filter keeps few rows, a per-namespace graph when the scope is
one large namespace), keeps only candidates whose columns pass the filter and
re-scores them exactly with their float32 vectors; when that still comes up
short, or when the scope is small, the filtered rows are scanned exactly
(contiguous per namespace). Reads at an earlier transaction than ``T``,
``include_superseded`` reads and SQL-only filters always take the exact scan.

A process builds a missing or unusable snapshot itself when the database is
small enough (:attr:`VectorSearch.sync_build_max` rows); above, it writes and
publishes the snapshot's rows and vectors while the search waits (searched
exactly from the mapped file) and builds the graphs in the background, so
a process never copies every vector of a large database into its own memory
(1M rows: 1.5 GB each, 2.5 GB private and 5.4 GB peak before); a delta grown past
:attr:`VectorSearch.rebuild_min` rows (and a quarter of the snapshot) is
folded into a new snapshot in the background. Every build runs in a child
process (:mod:`.build_child`), so no exit ever happens inside usearch's C++.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from engramdb.model import RecallFilter
from engramdb.storage.base import top_hits
from engramdb.storage.blas import single_blas
from engramdb.storage.sqlite import build_child
from engramdb.storage.sqlite.build_child import usable
from engramdb.storage.sqlite.snapshot import Snapshot, open_current
from engramdb.storage.sqlite.vectors import Columns, VectorIndex, column_mask

__all__ = ["VectorSearch"]

log = logging.getLogger("engramdb.index")


class VectorSearch:
    """Snapshot + delta search for one SQLite database path."""

    # Scan exactly when the filtered scope holds at most this many rows.
    exact_rows = 20_000
    # Below this many vectors no snapshot is built: an exact scan is as fast.
    snapshot_min = 20_000
    # Build a missing snapshot in the searching thread up to this many rows.
    sync_build_max = 300_000
    # Fold the delta into a new snapshot once it has this many rows (and n/4).
    rebuild_min = 20_000
    # A SQL-only filter (session, metadata, ...) selecting at most this many rows has
    # them looked up by row id instead of the scope scanned.
    lookup_rows = 20_000
    # A graph builder that found the lock taken tries again after this many seconds.
    graphs_retry_s = 30.0

    def __init__(self, db_path: str | None, dimension: int,
                 connect: Callable[[], sqlite3.Connection]) -> None:
        self.dimension = dimension
        self._db_path = db_path
        self._dir = None if db_path is None else Path(db_path + "-vindex")
        self._connect = connect
        self._lock = threading.Lock()
        self._snap: Snapshot | None = None
        self._pointer: tuple[int, int] | None = None  # (inode, mtime_ns) of `current`
        self._delta = VectorIndex(dimension)
        self._overridden = np.zeros(0, dtype=bool)
        self._builder: threading.Thread | None = None
        self._graphs_retry_at = 0.0
        self._rows_failed = False
        self.builds = 0
        # (start, end, filter) -> (snapshot, overridden array, passing positions)
        self._kept: dict[Any, tuple[Snapshot, np.ndarray, np.ndarray]] = {}
        self._kept_lock = threading.Lock()

    # -- keeping fresh ---------------------------------------------------------------

    def refresh(self, conn: sqlite3.Connection, head_tx: int | None = None
                ) -> tuple[Snapshot | None, VectorIndex, np.ndarray]:
        """Open a newer published snapshot if any, then bring the delta up to the head
        (``head_tx``: as ``conn``'s read transaction already read it)."""
        if head_tx is None:
            head_tx = conn.execute("SELECT tx FROM chain_head WHERE id = 1").fetchone()[0]
        with self._lock:
            self._follow_pointer(conn, head_tx)
            if self._snap is None and self._dir is not None:
                self._first_snapshot(conn, head_tx)
            snap = self._snap
            if snap is not None and snap.graphs_pending:
                self._start_graphs()
            elif snap is not None and snap.graphs.damaged:
                self._start_builder()  # a graph file would not open: a new snapshot
            delta = self._delta
            changed = delta.refresh(conn, head_tx)
            if snap is not None and changed:
                stale = snap.positions_of(np.asarray(changed, dtype=np.int64))
                if stale.size and not self._overridden[stale].all():
                    # Copied, never changed in place: an array handed to a search stays
                    # what it was, so filter results can be remembered per array.
                    over = self._overridden.copy()
                    over[stale] = True
                    self._overridden = over
                if stale.size and delta.any_status(changed, "erased"):
                    # The snapshot's files still hold the erased vector: replace them.
                    self._start_builder()
            self._maybe_fold(snap, delta)
            return snap, delta, self._overridden

    def _follow_pointer(self, conn: sqlite3.Connection, head_tx: int) -> None:
        if self._dir is None:
            return
        try:
            st = (self._dir / "current").stat()
            pointer: tuple[int, int] | None = (st.st_ino, st.st_mtime_ns)
        except OSError:
            pointer = None
        if pointer == self._pointer:
            return
        self._pointer = pointer
        snap = open_current(self._dir) if pointer is not None else None
        if snap is not None and not self._usable(conn, snap, head_tx):
            snap = None
        if snap is None and self._snap is None:
            return
        if snap is None or self._snap is None or snap.path != self._snap.path:
            self._adopt(snap)

    def _usable(self, conn: sqlite3.Connection, snap: Snapshot, head_tx: int) -> bool:
        return usable(conn, snap, head_tx, self.dimension, self._dir)

    def _adopt(self, snap: Snapshot | None) -> None:
        self._snap = snap
        self._delta = VectorIndex(self.dimension, since_tx=0 if snap is None else snap.tx)
        self._overridden = np.zeros(0 if snap is None else snap.n, dtype=bool)
        self._kept = {}  # nothing remembered keeps the old snapshot's mapping alive

    def _first_snapshot(self, conn: sqlite3.Connection, head_tx: int) -> None:
        """A snapshot for a process that has none: built here if small, else in the background."""
        rows = conn.execute("SELECT MAX(row_id) FROM memories").fetchone()[0] or 0
        if rows < self.snapshot_min:
            return
        if self._builder is not None and self._builder.is_alive():
            return
        large = rows > self.sync_build_max
        if large and self._rows_failed:
            self._start_builder()  # no place to publish: the delta answers meanwhile
            return
        # Large: rows and vectors now (a streamed copy, no graphs: searched exactly from
        # the mapped file), the graphs in the background (refresh starts them).
        if not self._build(wait=True, graphs=not large) and large:
            self._rows_failed = True
            self._start_builder()
            return
        self._pointer = None
        self._follow_pointer(conn, head_tx)

    def _maybe_fold(self, snap: Snapshot | None, delta: VectorIndex) -> None:
        if self._dir is None:
            return
        size = len(delta) if snap is not None else 0
        grown = size >= self.rebuild_min and size * 4 >= (snap.n if snap else 0)
        if grown:
            self._start_builder()

    def _start_builder(self) -> None:
        if self._builder is not None and self._builder.is_alive():
            return
        self._builder = threading.Thread(target=self._build, kwargs={"wait": False},
                                         name="engramdb-vindex", daemon=True)
        self._builder.start()

    def _start_graphs(self) -> None:
        """Build the graphs of the published graph-less snapshot in the background."""
        if (self._builder is not None and self._builder.is_alive()) \
                or time.monotonic() < self._graphs_retry_at:
            return
        self._graphs_retry_at = time.monotonic() + self.graphs_retry_s
        self._builder = threading.Thread(target=self._finish_graphs,
                                         name="engramdb-vindex-graphs", daemon=True)
        self._builder.start()

    def _finish_graphs(self) -> None:
        """Add the graphs to the published graph-less snapshot (in a child process)."""
        assert self._dir is not None and self._db_path is not None
        outcome, why = build_child.build(self._db_path, self._dir, self.dimension,
                                         graphs_only=True, connect=self._connect)
        if outcome == build_child.BUILT:
            self.builds += 1
        elif outcome == build_child.FAILED:
            log.warning("vector index graphs not built (searches stay exact): %s", why)

    def _build(self, *, wait: bool, graphs: bool = True) -> bool:
        """Build and publish a snapshot (in a child process) unless another builder holds
        the lock (``graphs=False``: its rows and vectors only, graphs added later)."""
        assert self._dir is not None and self._db_path is not None
        outcome, why = build_child.build(self._db_path, self._dir, self.dimension, wait=wait,
                                         graphs=graphs, rebuild_min=self.rebuild_min,
                                         connect=self._connect)
        if outcome == build_child.BUILT:
            self.builds += 1
        elif outcome == build_child.FAILED:
            log.warning("vector index snapshot not built (searches stay exact): %s", why)
        return outcome in (build_child.BUILT, build_child.PRESENT)

    def rebuild(self) -> None:
        """Build a fresh snapshot now (waiting for another builder) and use it."""
        if self._dir is None:
            return
        self._build(wait=True)
        with self._lock:
            self._pointer = None

    # -- search ---------------------------------------------------------------------------

    def search(self, conn: sqlite3.Connection, query: np.ndarray, flt: RecallFilter,
               limit: int, allowed: Sequence[int] | None, *, head_tx: int | None = None
               ) -> list[tuple[int, float]]:
        """Top ``limit`` (row_id, cosine) among rows passing ``flt`` (and ``allowed``)."""
        snap, delta, over = self.refresh(conn, head_tx)
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        with single_blas():
            hits = delta.search(q, flt, limit, allowed)
            if snap is not None and snap.n:
                hits += self._search_snapshot(snap, over, q, flt, limit, allowed)
                snap.settle()
        hits.sort(key=lambda h: -h[1])
        return hits[:limit]

    def search_many(self, conn: sqlite3.Connection, queries: np.ndarray, flt: RecallFilter,
                    limit: int, allowed: Sequence[int] | None,
                    min_similarity: float | None) -> list[list[tuple[int, float]]]:
        """Top ``limit`` for each query row (the write path's candidate search): the
        delta exactly, the snapshot as :meth:`search` does (its graph for a large scope)."""
        snap, delta, over = self.refresh(conn)
        with single_blas():
            out = delta.search_many(queries, flt, limit, allowed, min_similarity)
            if snap is not None and snap.n:
                for i, extra in enumerate(self._snapshot_many(snap, over, queries, flt, limit,
                                                              allowed, min_similarity)):
                    merged = sorted(out[i] + extra, key=lambda h: -h[1])
                    out[i] = merged[:limit]
        return out

    def _snapshot_many(self, snap: Snapshot, over: np.ndarray, queries: np.ndarray,
                       flt: RecallFilter, limit: int, allowed: Sequence[int] | None,
                       min_similarity: float | None) -> list[list[tuple[int, float]]]:
        """Top ``limit`` per query over the snapshot: through a graph when the scope is
        large (so a namespace of 100k costs what one of 20k does), else exactly."""
        q = np.asarray(queries, dtype=np.float32).reshape(len(queries), -1)
        out: list[list[tuple[int, float]] | None] = [None] * len(q)
        # A filter that keeps few snapshot rows (a batch's "recorded since" search under
        # the lock keeps none) is answered exactly at once: the graph would only widen.
        if self._graph_ok(snap, flt, allowed) and sum(
                len(self._passing_slice(snap, over, a, b, flt))
                for a, b in self._ranges(snap, flt)) > self.exact_rows:
            found = self._graph_many(snap, over, q, flt, limit)
            for i, hits in enumerate(found or ()):
                if hits is None:  # too few passed among the first candidates: widen
                    hits = self._graph_search(snap, over, q[i], flt, limit)
                if hits is None:
                    continue  # the filter keeps too few rows for a graph: scanned below
                out[i] = [h for h in hits if min_similarity is None or h[1] >= min_similarity]
        todo = [i for i, hits in enumerate(out) if hits is None]
        if todo:
            exact = self._exact_many(snap, over, q[todo], flt, limit, allowed, min_similarity)
            for i, hits in zip(todo, exact, strict=True):
                out[i] = hits
        return [hits or [] for hits in out]

    @staticmethod
    def _graph_ok(snap: Snapshot, flt: RecallFilter, allowed: Any) -> bool:
        """Whether the snapshot's graphs can answer ``flt``: current state (or a read at
        or after the snapshot), no SQL-only filter, no superseded versions."""
        return bool(allowed is None and not flt.include_superseded and snap.graphs
                    and (flt.as_of is None or flt.as_of >= snap.tx))

    def selected_row_ids(self, conn: sqlite3.Connection, flt: RecallFilter) -> set[int]:
        """Every row id with a vector that ``flt``'s column filters select, snapshot and
        delta together (what the searches rank; the filter-semantics test's view)."""
        snap, delta, over = self.refresh(conn)
        out = delta.selected_row_ids(flt)
        if snap is not None and snap.n:
            out |= set(snap.row_ids[self._passing(snap, over, slice(0, snap.n), flt, None)]
                       .tolist())
        return out

    # -- the snapshot side -----------------------------------------------------------------

    def _ranges(self, snap: Snapshot, flt: RecallFilter) -> list[tuple[int, int]]:
        """The position ranges the filter's namespaces occupy (all rows if unscoped)."""
        if flt.namespaces is None:
            return [(0, snap.n)]
        codes = snap.codes["namespace"]
        return sorted(snap.slices[codes[ns]] for ns in set(flt.namespaces)
                      if ns in codes and codes[ns] in snap.slices)

    @staticmethod
    def _passing(snap: Snapshot, over: np.ndarray, positions: np.ndarray | slice,
                 flt: RecallFilter, allowed: np.ndarray | None) -> np.ndarray:
        """The ``positions`` (an array, or a slice: read as views) whose snapshot row
        passes ``flt`` and has no newer copy."""
        mask = column_mask(Columns(snap.cols, positions), snap.codes, flt) & ~over[positions]
        if allowed is not None:
            mask &= np.isin(snap.row_ids[positions], allowed)
        if isinstance(positions, slice):
            return np.flatnonzero(mask) + positions.start
        return positions[mask]

    def _passing_slice(self, snap: Snapshot, over: np.ndarray, start: int, end: int,
                       flt: RecallFilter) -> np.ndarray:
        """:meth:`_passing` over ``start:end``, remembered for the same snapshot, the same
        overridden rows and the same filter: a scoped search asks it of the same namespace
        query after query. A read at or after the snapshot's transaction is keyed as a read
        of the current state (the snapshot holds nothing newer, so both select alike)."""
        if flt.as_of is not None and flt.as_of >= snap.tx:
            flt = replace(flt, as_of=None)
        key = (start, end, flt)
        try:
            hash(key)
        except TypeError:  # a metadata filter value that is a list or dict
            return self._passing(snap, over, slice(start, end), flt, None)
        with self._kept_lock:
            kept = self._kept.get(key)
        if kept is not None and kept[0] is snap and kept[1] is over:
            return kept[2]
        keep = self._passing(snap, over, slice(start, end), flt, None)
        with self._kept_lock:
            if snap is self._snap:  # a search that began before a newer snapshot: not kept
                if len(self._kept) >= 32:
                    self._kept.pop(next(iter(self._kept)))
                self._kept[key] = (snap, over, keep)
        return keep

    def _search_snapshot(self, snap: Snapshot, over: np.ndarray, q: np.ndarray,
                         flt: RecallFilter, limit: int,
                         allowed_ids: Sequence[int] | None) -> list[tuple[int, float]]:
        if self._graph_ok(snap, flt, allowed_ids):
            few = self._few_in_period(snap, over, flt)
            if few is not None:  # scored exactly, without filtering the scope again
                ids = snap.row_ids[few].tolist()
                return [(ids[j], sim) for j, sim in
                        top_hits(q.reshape(1, -1) @ snap.vecs[few].T, limit)[0]]
            found = self._graph_search(snap, over, q, flt, limit)
            if found is not None:
                return found
        allowed = None if allowed_ids is None else np.asarray(allowed_ids, dtype=np.int64)
        return self._exact_many(snap, over, q.reshape(1, -1), flt, limit, allowed, None)[0]

    def _few_in_period(self, snap: Snapshot, over: np.ndarray, flt: RecallFilter
                       ) -> np.ndarray | None:
        """When ``flt`` bounds time (valid or recorded) and keeps few of its scope's
        snapshot rows (at most ``exact_rows``, or an eighth of the scope), their positions,
        to be scored exactly; else None. The graph plan reads only the namespaces' share,
        so through the graph such a filter (recall searching the month a query names)
        widens its search again and again to find ``limit`` rows that pass: tens of ms at
        100k rows, where scoring a month's rows takes about one."""
        if (flt.valid_after is None and flt.valid_before is None and flt.valid_at is None
                and flt.recorded_after is None and flt.recorded_before is None):
            return None
        ranges = self._ranges(snap, flt)
        bound = max(self.exact_rows, sum(b - a for a, b in ranges) // 8)
        kept: list[np.ndarray] = []
        count = 0
        for a, b in ranges:
            kept.append(self._passing(snap, over, slice(a, b), flt, None))
            count += len(kept[-1])
            if count > bound:
                return None
        return np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)

    def _graph_plan(self, snap: Snapshot, flt: RecallFilter, limit: int
                    ) -> tuple[Any, int, int] | None:
        """(graph, rows it holds, candidates to ask for) for ``flt``; None: scan exactly."""
        codes = snap.codes["namespace"]
        if flt.namespaces is None:
            scope_live = snap.live_total
        else:
            wanted = {codes[ns] for ns in flt.namespaces if ns in codes}
            scope_live = sum(snap.live.get(c, 0) for c in wanted)
            if scope_live <= self.exact_rows:
                return None
        # The one namespace's own graph if it has one, else the global graph (each
        # opened when first asked for: a scoped search never opens the global one).
        key: int | None = None
        if flt.namespaces is not None and len(wanted) == 1 and next(iter(wanted)) in snap.graphs:
            key = next(iter(wanted))
        graph = snap.graphs.get(key)
        universe = snap.live_total if key is None else snap.live.get(key, 0)
        if graph is None or universe == 0:
            return None
        share = max(scope_live / universe, 1e-6)
        # Never fewer than the graph visits anyway (its expansion, 64): asking for them
        # costs nothing and finds a filter's best rows more surely when the filter keeps
        # fewer rows than the namespaces' share (a layer, a read as of the past).
        return graph, universe, min(universe, max(64, int(limit / share * 1.5) + 32))

    def _graph_many(self, snap: Snapshot, over: np.ndarray, q: np.ndarray, flt: RecallFilter,
                    limit: int) -> list[list[tuple[int, float]] | None] | None:
        """:meth:`_graph_search` for each row of ``q``: one graph call and one filter
        pass for all; a query whose first candidates fall short is left None (it
        searches alone, widening as :meth:`_graph_search` does). None: scan exactly."""
        plan = self._graph_plan(snap, flt, limit)
        if plan is None:
            return None
        graph, universe, count = plan
        graph.expansion_search = max(64, count)
        keys = np.asarray(graph.search(q, count, threads=1).keys, dtype=np.int64)
        keys = keys.reshape(len(q), -1)
        seen = np.unique(keys[keys >= 0])
        ok = np.isin(keys, self._passing(snap, over, seen, flt, None))
        out: list[list[tuple[int, float]] | None] = []
        for i in range(len(q)):
            passing = keys[i][ok[i]]
            if len(passing) < limit and count < universe:
                out.append(None)
                continue
            sims = np.asarray(snap.vecs[np.sort(passing)]) @ q[i]
            order = np.argsort(-sims, kind="stable")[:limit]
            ids = snap.row_ids[np.sort(passing)[order]]
            out.append(list(zip(ids.tolist(), sims[order].tolist(), strict=True)))
        return out

    def _graph_search(self, snap: Snapshot, over: np.ndarray, q: np.ndarray, flt: RecallFilter,
                      limit: int) -> list[tuple[int, float]] | None:
        """Candidates from an HNSW graph, filtered and re-scored exactly; None if too few."""
        plan = self._graph_plan(snap, flt, limit)
        if plan is None:
            return None
        graph, universe, count = plan
        while True:
            graph.expansion_search = max(64, count)
            keys = np.asarray(graph.search(q, count, threads=1).keys, dtype=np.int64)
            keys = keys[keys >= 0]
            passing = self._passing(snap, over, np.sort(keys), flt, None)
            if len(passing) >= limit or count >= universe:
                break
            if count * 4 > max(4 * self.exact_rows, universe // 4):
                return None  # the filter keeps too few rows for a graph: scan exactly
            count = min(universe, count * 4)
        if len(passing) == 0:
            return []
        sims = np.asarray(snap.vecs[passing]) @ q
        top = np.argsort(-sims, kind="stable")[:limit]
        return list(zip(snap.row_ids[passing[top]].tolist(), sims[top].tolist(), strict=True))

    def _exact_many(self, snap: Snapshot, over: np.ndarray, queries: np.ndarray,
                    flt: RecallFilter, limit: int,
                    allowed: Any, min_similarity: float | None
                    ) -> list[list[tuple[int, float]]]:
        """Exact top ``limit`` per query over the snapshot rows passing the filter."""
        q = np.asarray(queries, dtype=np.float32).reshape(len(queries), -1)
        if allowed is not None and not isinstance(allowed, np.ndarray):
            allowed = np.asarray(allowed, dtype=np.int64)
        best: list[list[tuple[int, float]]] = [[] for _ in range(len(q))]
        if allowed is not None and len(allowed) <= self.lookup_rows:
            # Few rows named by SQL (a session, a metadata value): look them up rather
            # than scan the scope; the filter's columns still decide (namespaces too).
            keep = self._passing(snap, over, np.sort(snap.positions_of(allowed)), flt, None)
            if keep.size == 0:
                return best
            ids = snap.row_ids[keep].tolist()
            return [[(ids[j], s) for j, s in hits]
                    for hits in top_hits(q @ snap.vecs[keep].T, limit, min_similarity)]
        for a, b in self._ranges(snap, flt):
            for start in range(a, b, 65_536):  # bounded temporaries
                end = min(b, start + 65_536)
                keep = (self._passing_slice(snap, over, start, end, flt) if allowed is None
                        else self._passing(snap, over, slice(start, end), flt, allowed))
                if keep.size == 0:
                    continue
                if keep.size == end - start:
                    sims = q @ snap.vecs[start:end].T
                elif keep.size * 4 >= end - start:
                    # Most rows pass: one product over the slice in place, then the
                    # passing columns, rather than a copy of their vectors first.
                    sims = (q @ snap.vecs[start:end].T)[:, keep - start]
                else:
                    sims = q @ snap.vecs[keep].T
                ids = snap.row_ids[keep].tolist()
                for i, hits in enumerate(top_hits(sims, limit, min_similarity)):
                    merged = best[i] + [(ids[j], s) for j, s in hits]
                    merged.sort(key=lambda h: -h[1])
                    best[i] = merged[:limit]
        return best
