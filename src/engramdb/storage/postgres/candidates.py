"""A batch's contradiction candidates in a namespace, ranked in this process.

A semantic ``remember_many`` asks, for each memory, the nearest committed
semantic memories of its namespace at cosine 0.5 or more (engine/trust.py).
On the server that is one inverted-file probe per memory (0.4-1.5 ms of
server CPU each at 20k-100k rows: most of a semantic memory's cost). Here a
namespace's vectors are held per process as int8 codes (384 bytes a vector at
384-d, a quarter of the float copy), read once (as half-precision bytes) and
then only what was written since. Up to :data:`EXACT_ROWS` rows every row is
scanned against every query (exact, as the server's scan); past that the rows
are partitioned into ``sqrt(rows)`` lists by a spherical k-means, trained from
what is held, and a whole batch is answered at once: every list is scanned
once, as one matrix product against all the batch's queries that probe it
(:data:`PROBES` nearest lists per query).

What is held is only a filter: whatever it proposes is read back from the
server before it is returned, in one statement, with the search's own filter
(current version, status, subject) and its full-precision vector, which gives
the similarity returned. So a retracted, superseded or erased version is never
returned, whatever this process holds. Nothing committed is missed either:
before each search the vectors written since the last one (``vseq`` past the
one last seen: new memories, new versions, re-embeddings; writers insert them
under the chain lock, so ``vseq`` follows commit order) are read in one
snapshot with the chain head, and an erasure logged since drops every
namespace held here (``purge`` too), so no erased vector outlives the next
search. A query whose pool of proposals was cut short and may hide a better
row is left to the server (the caller's statements).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import psycopg

from engramdb.model import RecallFilter
from engramdb.storage.blas import single_blas
from engramdb.storage.postgres._conn import to_pyformat

__all__ = ["EXACT_ROWS", "MAX_SPACES", "MAX_VECTORS", "PROBES", "Candidates", "cacheable"]

# Lists a query probes. At 100k random unit vectors (no structure: the worst case for
# any partition) with 200 planted near-duplicates (cosine ~0.99), 6 of 316 lists found
# 198-199, 8 found 199, 10 and 12 all 200 (the server's index probes 6, knn.IVF_PROBES).
PROBES = 10
# Vectors held per process over all namespaces (int8 codes ~0.4 kB each at 384-d, plus
# key and position: 100,000 held measured 58 MB, 150 MB at the peak of their first load
# and training); past it
# the least recently searched namespaces are dropped, and a namespace larger than
# this alone is searched on the server as before.
MAX_VECTORS = 300_000
# Namespaces held per process: every namespace a batch searches is held (a small one
# costs a few kB), the least recently searched dropped past this many.
MAX_SPACES = 1_000
# A proposal is any row whose int8 similarity is within _MARGIN of the floor (the
# int8 error is ~0.001 on unit vectors); at most _POOL (or 2x the limit) per query.
_MARGIN = 0.02
_POOL = 64
_KMEANS_ROUNDS = 5
_SAMPLE_PER_LIST = 32
_LOAD_CHUNK = 20_000
# A namespace holding at most this many rows is scanned whole (every row against every
# query: exact as the server's scan, up to the int8 error inside _MARGIN); past it, the
# lists. The same size below which knn ranks a namespace exactly in process.
EXACT_ROWS = 20_000
_EXACT_CHUNK = 1024  # 2,000 queries x 1,024 rows: 8 MB of similarities, cache-sized
_ASSIGN_CHUNK = 4096


def cacheable(flt: RecallFilter) -> bool:
    """Whether ``flt`` is a candidate search held here: one namespace's current
    versions by layer, status and subject, nothing else."""
    return (flt.namespaces is not None and len(flt.namespaces) == 1
            and flt.layers is not None and len(flt.layers) > 0
            and flt == RecallFilter(namespaces=flt.namespaces, layers=flt.layers,
                                    statuses=flt.statuses, subject=flt.subject))


def _nearest(rows: Callable[[slice], np.ndarray], n: int, centroids: np.ndarray,
             out: np.ndarray) -> None:
    """``out[i]``: the centroid nearest row ``i`` of ``rows`` (a matrix, by slices),
    chunks taken in turn by two threads (NumPy's products release the GIL; with one
    BLAS thread each, a second free core halves the wall of a list training)."""
    chunks = [slice(lo, min(n, lo + _ASSIGN_CHUNK)) for lo in range(0, n, _ASSIGN_CHUNK)]

    def run(part: list[slice]) -> None:
        for sl in part:
            out[sl] = np.argmax(rows(sl) @ centroids.T, axis=1)

    with ThreadPoolExecutor(2) as threads:
        other = threads.submit(run, chunks[1::2])
        run(chunks[0::2])
        other.result()


class _Space:
    """One namespace's vectors of some layers: int8 codes, by position."""

    def __init__(self, dimension: int) -> None:
        self.lock = threading.Lock()
        self.dimension = dimension
        self.used = 0.0
        self.reset()

    def reset(self) -> None:
        """Hold nothing (the next refresh reads the namespace again)."""
        dimension = self.dimension
        self.mark = -1  # vseq through which vectors are held (-1: nothing read yet)
        self.head_tx = 0  # the chain head when last read
        self.n = 0
        self.keys: list[tuple[str, int]] = []
        self.pos: dict[tuple[str, int], int] = {}
        self.codes = np.zeros((0, dimension), dtype=np.int8)
        self.scale = np.zeros(0, dtype=np.float32)
        self.status = np.zeros(0, dtype=np.int32)
        self.subject = np.zeros(0, dtype=np.int32)
        self.alive = np.zeros(0, dtype=bool)
        # int16: NumPy's stable argsort of 16-bit keys is a radix sort (0.4 ms for 100,000
        # rows against 5 ms as int32), and the lists are sorted again after each refresh.
        self.lists = np.zeros(0, dtype=np.int16)
        self.codes_of: dict[str, dict[str | None, int]] = {"status": {}, "subject": {}}
        self.centroids: np.ndarray | None = None
        self.trained = 0  # rows when the lists were trained
        self.order: np.ndarray | None = None  # positions by list (None: to sort again)
        self.bounds = np.zeros(1, dtype=np.int64)

    def code(self, column: str, value: str | None) -> int:
        table = self.codes_of[column]
        c = table.get(value)
        if c is None:
            c = table[value] = len(table)
        return c

    def reserve(self, need: int) -> None:
        """Room for ``need`` rows (and an eighth more) in one allocation."""
        if need > len(self.scale):
            self._grow(need + need // 8, exact=True)

    def _grow(self, need: int, exact: bool = False) -> None:
        cap = len(self.scale)
        if need <= cap:
            return
        if not exact:
            need = max(need, cap + cap // 4, 64)  # a quarter more: little slack held
        cap = need
        codes = np.zeros((cap, self.dimension), dtype=np.int8)
        codes[:self.n] = self.codes[:self.n]
        self.codes = codes
        for name in ("scale", "status", "subject", "alive", "lists"):
            setattr(self, name, np.resize(getattr(self, name), cap))

    def put_matrix(self, keys: list[tuple[str, int]], statuses: Sequence[str | None],
                   subjects: Sequence[str | None], mat: np.ndarray) -> None:
        """Hold rows given as keys, their status and subject, and a float32 matrix of
        their vectors (a key held already: its vector was replaced)."""
        if not keys:
            return
        self._grow(self.n + len(keys))
        pos, held = self.pos, self.keys
        idx: slice | np.ndarray
        if pos.keys().isdisjoint(keys):  # all new (one statement reads each key once)
            start = len(held)
            held.extend(keys)
            pos.update(zip(keys, range(start, start + len(keys)), strict=True))
            idx = slice(start, start + len(keys))
        else:
            at = []
            for key in keys:
                p = pos.get(key)
                if p is None:
                    p = pos[key] = len(held)
                    held.append(key)
                at.append(p)
            idx = np.array(at, dtype=np.int64)
        self.n = len(held)
        status, subject = self.codes_of["status"], self.codes_of["subject"]
        self.status[idx] = [status[s] if s in status else self.code("status", s)
                            for s in statuses]
        self.subject[idx] = [subject[s] if s in subject else self.code("subject", s)
                             for s in subjects]
        top = np.abs(mat).max(axis=1)
        scale = np.where(top == 0, 1.0, top / 127.0).astype(np.float32)
        self.codes[idx] = np.rint(mat / scale[:, None])  # cast to int8 on assignment
        self.scale[idx] = scale
        self.alive[idx] = True
        if self.centroids is not None:
            self.lists[idx] = np.argmax(mat @ self.centroids.T, axis=1)
        self.order = None

    def drop(self, positions: Sequence[int]) -> None:
        """Forget rows the server no longer returns (superseded, erased): their codes
        are zeroed."""
        idx = np.array(sorted(set(positions)), dtype=np.int64)
        if len(idx):
            self.alive[idx] = False
            self.codes[idx] = 0

    def floats(self, idx: np.ndarray) -> np.ndarray:
        return self.codes[idx].astype(np.float32) * self.scale[idx, None]

    def train(self) -> None:
        """Spherical k-means over a sample: ``sqrt(rows)`` lists; every row assigned."""
        n = self.n
        k = max(8, int(np.sqrt(n)))
        rng = np.random.default_rng(n)
        sample = self.floats(rng.choice(n, min(n, _SAMPLE_PER_LIST * k), replace=False))
        sample /= np.maximum(np.linalg.norm(sample, axis=1, keepdims=True), 1e-12)
        centroids = sample[rng.choice(len(sample), k, replace=False)].copy()
        assign = np.zeros(len(sample), dtype=np.int64)
        for _ in range(_KMEANS_ROUNDS):
            _nearest(lambda sl: sample[sl], len(sample), centroids, assign)
            by = np.argsort(assign, kind="stable")
            members = np.unique(assign)
            sums = np.add.reduceat(sample[by], np.searchsorted(assign[by], members))
            centroids[members] = sums / np.maximum(
                np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
        self.centroids = centroids
        _nearest(lambda sl: self.codes[sl].astype(np.float32) * self.scale[sl, None], n,
                 centroids, self.lists)
        self.trained = n
        self.order = None

    def sorted_lists(self) -> tuple[np.ndarray, np.ndarray]:
        if self.order is None:
            self.order = np.argsort(self.lists[:self.n], kind="stable")
            k = 0 if self.centroids is None else len(self.centroids)
            self.bounds = np.searchsorted(self.lists[:self.n][self.order], np.arange(k + 1))
        return self.order, self.bounds

    def _scan_all(self, queries: np.ndarray, eligible: np.ndarray, cut: float
                  ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(query, position, similarity) of every eligible row at ``cut`` or above:
        all rows against all queries, :data:`_EXACT_CHUNK` rows a product."""

        def scan(starts: range) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
            hits = []
            for lo in starts:
                hi = min(self.n, lo + _EXACT_CHUNK)
                sims = (queries @ self.codes[lo:hi].astype(np.float32).T) * self.scale[lo:hi]
                r, c = np.nonzero(sims >= cut)
                keep = eligible[lo + c]
                hits.append((r[keep], lo + c[keep], sims[r[keep], c[keep]]))
            return hits

        starts = range(0, self.n, _EXACT_CHUNK)
        with ThreadPoolExecutor(2) as threads:
            other = threads.submit(scan, starts[1::2])
            return scan(starts[0::2]) + other.result()

    def _scan_lists(self, queries: np.ndarray, eligible: np.ndarray, cut: float
                    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(query, position, similarity) of the eligible rows at ``cut`` or above in
        each query's :data:`PROBES` nearest lists (trained first if need be)."""
        if self.centroids is None or self.n >= 2 * self.trained:
            self.train()
        assert self.centroids is not None
        order, bounds = self.sorted_lists()
        k = len(self.centroids)
        probes = min(PROBES, k)
        near = np.argpartition(-(queries @ self.centroids.T), probes - 1, axis=1)[:, :probes]
        near_lists = near.ravel().astype(np.int16)  # radix-sorted, as self.lists
        pairs = np.argsort(near_lists, kind="stable")  # (query, list) pairs by list
        by_list = np.searchsorted(near_lists[pairs], np.arange(k + 1))

        def scan(lists: range) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
            hits = []
            for lst in lists:
                lo, hi = bounds[lst], bounds[lst + 1]
                qlo, qhi = by_list[lst], by_list[lst + 1]
                if hi == lo or qhi == qlo:
                    continue
                rows = order[lo:hi]
                qs = pairs[qlo:qhi] // probes
                sims = (queries[qs] @ self.codes[rows].astype(np.float32).T) * self.scale[rows]
                over = sims >= cut
                if over.any():
                    r, c = np.nonzero(over)
                    keep = eligible[rows[c]]
                    hits.append((qs[r[keep]], rows[c[keep]], sims[r[keep], c[keep]]))
            return hits

        # Two threads over alternate lists: NumPy's products and copies release the GIL.
        with ThreadPoolExecutor(2) as threads:
            other = threads.submit(scan, range(1, k, 2))
            return scan(range(0, k, 2)) + other.result()

    def propose(self, queries: np.ndarray, flt: RecallFilter, floor: float, pool: int
                ) -> list[tuple[np.ndarray, float | None]]:
        """Per query, positions whose int8 similarity is within :data:`_MARGIN` of
        ``floor``, best first, at most ``pool``, and the int8 similarity of the best
        one cut off (None: none was): among every row held while there are at most
        :data:`EXACT_ROWS`, else in the query's :data:`PROBES` nearest lists."""
        eligible = self.alive[:self.n].copy()
        if flt.statuses is not None:
            wanted = [self.codes_of["status"][s] for s in flt.statuses
                      if s in self.codes_of["status"]]
            eligible &= np.isin(self.status[:self.n], wanted)
        if flt.subject is not None:
            eligible &= self.subject[:self.n] == self.codes_of["subject"].get(flt.subject, -1)
        cut = floor - _MARGIN
        scan = self._scan_all if self.n <= EXACT_ROWS else self._scan_lists
        found = scan(queries, eligible, cut)
        hits_q = [h[0] for h in found]
        hits_p = [h[1] for h in found]
        hits_s = [h[2] for h in found]
        out: list[tuple[np.ndarray, float | None]] = [(np.zeros(0, dtype=np.int64), None)
                                                      for _ in range(len(queries))]
        if not hits_q:
            return out
        q_all = np.concatenate(hits_q)
        p_all = np.concatenate(hits_p)
        s_all = np.concatenate(hits_s)
        by = np.lexsort((-s_all, q_all))
        q_all, p_all, s_all = q_all[by], p_all[by], s_all[by]
        starts = np.searchsorted(q_all, np.arange(len(queries) + 1))
        for q in np.flatnonzero(np.diff(starts)):
            lo, hi = starts[q], starts[q + 1]
            out[q] = (p_all[lo:min(hi, lo + pool)],
                      float(s_all[lo + pool]) if hi - lo > pool else None)
        return out


class Candidates:
    """The namespaces this process's batch candidate searches read, held as int8."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spaces: dict[tuple[str, tuple[str, ...]], _Space] = {}
        self._clock = 0.0
        self._half: bool | None = None  # the server has pgvector's halfvec (read once)

    def held(self) -> int:
        """Vectors held, over all namespaces."""
        with self._lock:
            return sum(s.n for s in self._spaces.values())

    def clear(self) -> None:
        """Drop every namespace (after an erasure: no erased vector stays)."""
        with self._lock:
            self._spaces = {}

    def search(self, conn: psycopg.Connection[Any], vecs: Sequence[np.ndarray],
               flt: RecallFilter, select: str, cond: str, params: list[Any], limit: int,
               floor: float) -> tuple[list[list[tuple[Any, ...]]], list[int]] | None:
        """Rows ``(memory columns..., distance)`` at ``floor`` or above for each of
        ``vecs``, and the queries left to the server (pools cut short); None when the
        namespace is not held (too large, or ``conn`` is inside a transaction)."""
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE \
                or not conn.autocommit:
            return None  # a pinned snapshot: the server answers in it
        assert flt.namespaces is not None and flt.layers is not None
        key = (flt.namespaces[0], tuple(sorted(flt.layers)))
        dim = int(np.asarray(vecs[0]).size)
        with self._lock:
            space = self._spaces.get(key)
            if space is None or space.dimension != dim:
                space = self._spaces[key] = _Space(dim)
            self._clock += 1
            space.used = self._clock
        # One BLAS thread: the scan's products are small (a list's rows against the
        # queries probing it), and OpenBLAS's second thread spins for each of them:
        # at load 3.5 a batch's scan took 0.72 s of this process's CPU instead of 0.07.
        with space.lock, single_blas():
            if not self._refresh(conn, key, space):
                return None
            queries = np.stack([np.asarray(v, dtype=np.float32).reshape(-1) for v in vecs])
            pool = max(_POOL, 2 * limit)
            proposed = space.propose(queries, flt, floor, pool)
            return self._verify(conn, space, queries, proposed, select, cond, params,
                                limit, floor)

    def _refresh(self, conn: psycopg.Connection[Any], key: tuple[str, tuple[str, ...]],
                 space: _Space) -> bool:
        """Take in the vectors written since the last search, in one snapshot with the
        chain head; False if the namespace is not held (dropped: too large)."""
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            head = conn.execute("SELECT tx FROM chain_head WHERE id = 1").fetchone()
            head_tx = int(head[0]) if head else 0
            if space.mark >= 0 and head_tx > space.head_tx and conn.execute(
                    "SELECT 1 FROM events WHERE tx > %s AND kind = 'memory.erased' LIMIT 1",
                    [space.head_tx]).fetchone():
                with self._lock:  # an erased vector may be held: start afresh
                    self._spaces = {key: space}
                space.reset()
            top = conn.execute("SELECT COALESCE(max(vseq), 0) FROM memory_vectors").fetchone()
            mark = int(top[0]) if top else 0
            if mark > space.mark:
                if self._half is None:
                    half = conn.execute("SELECT to_regtype('halfvec') IS NOT NULL").fetchone()
                    self._half = bool(half and half[0])
                if not self._load(conn, key, space, mark):
                    return False
            space.mark, space.head_tx = mark, head_tx
        self._evict(key)
        return True

    def _load(self, conn: psycopg.Connection[Any], key: tuple[str, tuple[str, ...]],
              space: _Space, mark: int) -> bool:
        """Hold the namespace's vectors with ``vseq`` past ``space.mark`` up to ``mark``;
        False (and the namespace dropped) if it is too large or they cannot be read."""
        ns, layers = key
        # As half-precision wire bytes where the server has ``halfvec`` (pgvector 0.7+):
        # half the bytes of a float32 vector, and a chunk is one NumPy view instead of
        # a loader call per row (100k rows: 0.5-0.6 s of wall against 1.3-2.1 s, a
        # third of the client CPU). The codes are int8 either way; fp16's rounding
        # (~5e-4) is far inside the proposals' margin, and what is returned is ranked
        # by the full-precision vectors read back.
        vec = "halfvec_send(v.vec::halfvec)" if self._half else "v.vec"
        width = 4 + 2 * space.dimension
        with conn.cursor(binary=True) as cur:
            cur.execute(
                f"SELECT v.id, v.version, m.status, m.subject, {vec} "
                "FROM memory_vectors v JOIN memories m ON m.id = v.id "
                "AND m.version = v.version WHERE v.vseq > %s AND v.vseq <= %s "
                "AND m.namespace = %s AND m.layer = ANY(%s)",
                [space.mark, mark, ns, list(layers)])
            if space.n + max(cur.rowcount, 0) > MAX_VECTORS:
                self._forget(key)
                return False
            space.reserve(space.n + max(cur.rowcount, 0))  # one allocation, not one a chunk
            while rows := cur.fetchmany(_LOAD_CHUNK):
                if self._half:
                    raw = b"".join(r[4] for r in rows)
                    if len(raw) != width * len(rows):
                        self._forget(key)
                        return False  # another dimension: the server answers
                    mat = np.frombuffer(raw, dtype=np.uint8).reshape(len(rows), width)
                    vecs = mat[:, 4:].copy().view(">f2").astype(np.float32)
                elif all(isinstance(r[4], np.ndarray) for r in rows):
                    vecs = np.stack([r[4].reshape(-1) for r in rows])
                else:
                    self._forget(key)
                    return False  # no binary vector loader on this connection
                space.put_matrix([(r[0], r[1]) for r in rows], [r[2] for r in rows],
                                 [r[3] for r in rows], vecs)
                if space.n > MAX_VECTORS:
                    self._forget(key)
                    return False
        return True

    def _forget(self, key: tuple[str, tuple[str, ...]]) -> None:
        with self._lock:
            self._spaces.pop(key, None)

    def _evict(self, keep: tuple[str, tuple[str, ...]]) -> None:
        """Drop the least recently searched namespaces while more than
        :data:`MAX_VECTORS` vectors, or :data:`MAX_SPACES` namespaces, are held."""
        with self._lock:
            while (sum(s.n for s in self._spaces.values()) > MAX_VECTORS
                   or len(self._spaces) > MAX_SPACES):
                others = [(s.used, k) for k, s in self._spaces.items() if k != keep]
                if not others:
                    break
                self._spaces.pop(min(others)[1])

    def _verify(self, conn: psycopg.Connection[Any], space: _Space, queries: np.ndarray,
                proposed: list[tuple[np.ndarray, float | None]], select: str, cond: str,
                params: list[Any], limit: int, floor: float
                ) -> tuple[list[list[tuple[Any, ...]]], list[int]]:
        """Read the proposed rows back through the search's filter, rank them by their
        full-precision vectors; the queries whose cut pool may hide a better row go
        back to the caller."""
        wanted = sorted({int(p) for found, _ in proposed for p in found})
        rows: dict[int, tuple[tuple[Any, ...], np.ndarray]] = {}
        if wanted:
            keys = [space.keys[p] for p in wanted]
            with conn.cursor(binary=True) as cur:
                cur.execute(to_pyformat(
                    f"SELECT m.tx_to IS NULL, ({cond}), v.vec, {select} FROM memories m "
                    "JOIN memory_vectors v ON v.id = m.id AND v.version = m.version "
                    "WHERE (m.id, m.version) IN (SELECT * FROM unnest(?::text[], ?::bigint[]))"),
                    [*params, [k[0] for k in keys], [k[1] for k in keys]])
                got = {(r[3], int(r[4])): r for r in cur.fetchall()}
            dead = []
            for p, k in zip(wanted, keys, strict=True):
                r = got.get(k)
                if r is None or not r[0]:
                    dead.append(p)  # erased or superseded: never current again
                elif r[1]:
                    rows[p] = (tuple(r[3:]), np.asarray(r[2], dtype=np.float32).reshape(-1))
            space.drop(dead)
        found: list[list[tuple[Any, ...]]] = []
        left: list[int] = []
        for q, (positions, cut) in enumerate(proposed):
            ranked = []
            for p in positions:
                hit = rows.get(int(p))
                if hit is not None:
                    sim = float(np.dot(queries[q], hit[1]))
                    if sim >= floor:
                        ranked.append((*hit[0], -sim))
            ranked.sort(key=lambda r: (r[-1], r[0], r[1]))
            if cut is not None and (len(ranked) < limit
                                    or -ranked[limit - 1][-1] < cut + _MARGIN):
                left.append(q)  # the pool was cut: a row past it may rank
            found.append(ranked[:limit])
        return found, left
