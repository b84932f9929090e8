"""An in-process, exact vector index over the SQLite ``memories`` table.

The index is a projection (DESIGN.md principle 1): each process keeps the
embeddings and the filterable columns of every memory version in NumPy
arrays and brings them up to date from the database before each search,
reading only rows whose ``row_tx`` is newer than what it has seen. Because
SQLite serialises writers and ``row_tx`` is assigned under the write lock, a
watermark on it never skips a committed row.

Search is exact (brute-force cosine on unit vectors). Filters become boolean
masks over the same arrays, so they are applied before ranking and a
filtered query still returns ``k`` hits whenever ``k`` exist.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from engramdb.codec import to_micros
from engramdb.model import RecallFilter
from engramdb.storage.base import top_hits
from engramdb.storage.sqlite.dialect import changed_since

__all__ = ["NONE", "Codes", "Columns", "VectorIndex", "column_mask"]

# An open end (``tx_to``, ``valid_to`` NULL in SQL) in the integer columns.
NONE = np.iinfo(np.int64).max
_COLUMNS = (
    "m.row_id, m.namespace, m.layer, m.author, m.status, m.tx_from, m.tx_to, "
    "m.valid_from, m.valid_to, m.recorded_at, m.row_tx, v.vec"
)
# Filters the arrays can answer; anything else is asked of SQL as a row-id set.
_SQL_ONLY = ("metadata", "subject", "predicate", "session")


def column_mask(cols: Mapping[str, np.ndarray], codes: Mapping[str, Mapping[str, int]],
                flt: RecallFilter) -> np.ndarray:
    """The rows of ``cols`` (equal-length columns) that pass ``flt``'s column filters.

    ``codes`` maps each coded column (namespace, layer, author, status) from
    value to the integer stored; a value with no code matches no row.
    """
    c = cols
    mask = np.ones(len(c["tx_to"]), dtype=bool)
    if flt.as_of is None:
        if not flt.include_superseded:
            mask &= c["tx_to"] == NONE
    else:
        mask &= c["tx_from"] <= flt.as_of
        if not flt.include_superseded:
            mask &= c["tx_to"] > flt.as_of
    for name, values in (("namespace", flt.namespaces), ("layer", flt.layers),
                         ("author", flt.authors), ("status", flt.statuses or None)):
        if values is not None:
            table = codes[name]  # value -> code, codes numbered 0, 1, 2, ...
            wanted = {table[v] for v in values if v in table}
            if len(wanted) == len(table):
                continue  # every value the column holds is wanted (an unscoped reader's list)
            # A lookup table indexed by code: a tenth of np.isin's cost on a few hundred rows.
            lookup = np.zeros(len(table), dtype=bool)
            lookup[list(wanted)] = True
            mask &= lookup[c[name]]
    if flt.valid_at is not None:
        v = to_micros(flt.valid_at)
        mask &= (c["valid_from"] <= v) & (c["valid_to"] > v)
    for col, op, value in (
        ("recorded_at", "ge", flt.recorded_after),
        ("recorded_at", "lt", flt.recorded_before),
        ("valid_from", "ge", flt.valid_after),
        ("valid_from", "lt", flt.valid_before),
    ):
        if value is not None:
            t = to_micros(value)
            mask &= (c[col] >= t) if op == "ge" else (c[col] < t)
    return mask


class Codes:
    """Integer codes of a text column's values (namespace, layer, ...), numbered 0, 1, 2, ..."""

    def __init__(self) -> None:
        self.by_value: dict[str, int] = {}

    def code(self, value: str) -> int:
        c = self.by_value.get(value)
        if c is None:
            c = self.by_value[value] = len(self.by_value)
        return c

    def codes(self, values: Sequence[str]) -> np.ndarray:
        return np.array([self.by_value[v] for v in values if v in self.by_value], dtype=np.int32)


class Columns(dict[str, np.ndarray]):
    """The snapshot's filter columns at ``positions``, each read when the filter first
    asks for it (a recall's filter reads two or three of the nine)."""

    def __init__(self, cols: dict[str, np.ndarray], positions: np.ndarray | slice) -> None:
        super().__init__()
        self._cols = cols
        self._positions = positions

    def __missing__(self, name: str) -> np.ndarray:
        value = self[name] = np.asarray(self._cols[name][self._positions])
        return value


class VectorIndex:
    """Embeddings plus filter columns of all memory versions, kept fresh by ``row_tx``."""

    def __init__(self, dimension: int, since_tx: int = 0) -> None:
        self.dimension = dimension
        self._lock = threading.Lock()
        self._seen_tx = since_tx
        self._n = 0
        self._pos: dict[int, int] = {}
        self._row_ids = np.zeros(0, dtype=np.int64)
        self._vecs = np.zeros((0, dimension), dtype=np.float32)
        self._has_vec = np.zeros(0, dtype=bool)
        self._int_cols: dict[str, np.ndarray] = {}
        self._codes = {"namespace": Codes(), "layer": Codes(), "author": Codes(),
                       "status": Codes()}
        for name in ("namespace", "layer", "author", "status"):
            self._int_cols[name] = np.zeros(0, dtype=np.int32)
        for name in ("tx_from", "tx_to", "valid_from", "valid_to", "recorded_at"):
            self._int_cols[name] = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return self._n

    def _grow(self, need: int) -> None:
        cap = len(self._row_ids)
        if need <= cap:
            return
        new_cap = max(need, cap * 2, 1024)
        self._row_ids = np.resize(self._row_ids, new_cap)
        vecs = np.zeros((new_cap, self.dimension), dtype=np.float32)
        vecs[: self._n] = self._vecs[: self._n]
        self._vecs = vecs
        self._has_vec = np.resize(self._has_vec, new_cap)
        for name, arr in self._int_cols.items():
            self._int_cols[name] = np.resize(arr, new_cap)

    @property
    def seen_tx(self) -> int:
        return self._seen_tx

    def refresh(self, conn: Any, head_tx: int) -> list[int]:
        """Bring the arrays up to ``head_tx`` by reading rows changed since; returns their ids."""
        changed: list[int] = []
        with self._lock:
            if head_tx <= self._seen_tx:
                return changed
            since, params = changed_since(self._seen_tx, "m.")
            cur = conn.execute(
                f"SELECT {_COLUMNS} FROM memories m LEFT JOIN memory_vectors v "
                f"ON v.id = m.id AND v.version = m.version WHERE {since} ORDER BY m.row_tx",
                params,
            )
            seen = self._seen_tx
            while batch := cur.fetchmany(5000):
                self._grow(self._n + len(batch))
                for row in batch:
                    (row_id, ns, layer, author, status, tx_from, tx_to, vfrom, vto, rec,
                     row_tx, vec) = row
                    changed.append(row_id)
                    pos = self._pos.get(row_id)
                    if pos is None:
                        pos = self._pos[row_id] = self._n
                        self._n += 1
                        self._row_ids[pos] = row_id
                    cols = self._int_cols
                    cols["namespace"][pos] = self._codes["namespace"].code(ns)
                    cols["layer"][pos] = self._codes["layer"].code(layer)
                    cols["author"][pos] = self._codes["author"].code(author)
                    cols["status"][pos] = self._codes["status"].code(status)
                    cols["tx_from"][pos] = tx_from
                    cols["tx_to"][pos] = NONE if tx_to is None else tx_to
                    cols["valid_from"][pos] = vfrom
                    cols["valid_to"][pos] = NONE if vto is None else vto
                    cols["recorded_at"][pos] = rec
                    if vec is not None and len(vec) == 4 * self.dimension:
                        self._vecs[pos] = np.frombuffer(vec, dtype=np.float32)
                        self._has_vec[pos] = True
                    else:
                        self._vecs[pos] = 0.0
                        self._has_vec[pos] = False
                    seen = max(seen, row_tx)
            self._seen_tx = max(seen, head_tx)
        return changed

    def _mask(self, flt: RecallFilter) -> np.ndarray:
        n = self._n
        cols = {k: v[:n] for k, v in self._int_cols.items()}
        codes = {k: c.by_value for k, c in self._codes.items()}
        return self._has_vec[:n] & column_mask(cols, codes, flt)

    def selected_row_ids(self, flt: RecallFilter) -> set[int]:
        """The row ids (with a vector) that ``flt``'s column filters select."""
        with self._lock:
            _, positions = self._selected(flt, None)
            return set(self._row_ids[positions].tolist())

    def any_status(self, row_ids: Sequence[int], status: str) -> bool:
        """Whether any of ``row_ids`` is held here with ``status``."""
        code = self._codes["status"].by_value.get(status)
        if code is None:
            return False
        with self._lock:
            idx = [self._pos[r] for r in row_ids if r in self._pos]
            return bool(np.any(self._int_cols["status"][idx] == code))

    @staticmethod
    def needs_sql(flt: RecallFilter) -> bool:
        return bool(flt.metadata) or any(
            getattr(flt, name) is not None for name in _SQL_ONLY if name != "metadata"
        )

    def _selected(self, flt: RecallFilter, allowed_row_ids: Sequence[int] | None
                  ) -> tuple[np.ndarray, np.ndarray]:
        """The filter's boolean mask over the first ``n`` rows, and its positions."""
        n = self._n
        mask = self._mask(flt)
        if allowed_row_ids is not None:
            allowed = np.zeros(n, dtype=bool)
            idx = [self._pos[r] for r in allowed_row_ids if r in self._pos]
            allowed[idx] = True
            mask &= allowed
        return mask, np.flatnonzero(mask)

    def search_many(
        self,
        queries: np.ndarray,
        flt: RecallFilter,
        limit: int,
        allowed_row_ids: Sequence[int] | None = None,
        min_similarity: float | None = None,
    ) -> list[list[tuple[int, float]]]:
        """:meth:`search` for each row of ``queries`` (one matrix product for all);
        hits below ``min_similarity`` (when given) are left out."""
        q = np.asarray(queries, dtype=np.float32).reshape(len(queries), -1)
        with self._lock:
            if self._n == 0 or limit <= 0 or len(q) == 0:
                return [[] for _ in range(len(q))]
            _, selected = self._selected(flt, allowed_row_ids)
            if selected.size == 0:
                return [[] for _ in range(len(q))]
            out: list[list[tuple[int, float]]] = []
            # Chunks bound the (chunk x selected) similarity matrix to ~64 MB.
            step = max(1, min(len(q), (16 << 20) // max(1, selected.size)))
            vecs = self._vecs[selected]
            row_ids = self._row_ids[selected].tolist()
            for start in range(0, len(q), step):
                for hits in top_hits(q[start:start + step] @ vecs.T, limit, min_similarity):
                    out.append([(row_ids[i], s) for i, s in hits])
            return out

    def search(
        self,
        query: np.ndarray,
        flt: RecallFilter,
        limit: int,
        allowed_row_ids: Sequence[int] | None = None,
    ) -> list[tuple[int, float]]:
        """Top ``limit`` (row_id, cosine) pairs among rows passing ``flt``."""
        with self._lock:
            n = self._n
            if n == 0 or limit <= 0:
                return []
            mask, selected = self._selected(flt, allowed_row_ids)
            if selected.size == 0:
                return []
            q = np.asarray(query, dtype=np.float32).reshape(-1)
            if selected.size < n // 3:
                sims = self._vecs[selected] @ q
                positions = selected
            else:
                sims = self._vecs[:n] @ q
                sims = np.where(mask, sims, -np.inf)
                positions = np.arange(n)
            k = min(limit, selected.size)
            top = np.argpartition(-sims, k - 1)[:k] if k < sims.size else np.arange(sims.size)
            top = top[np.argsort(-sims[top], kind="stable")]
            return [(int(self._row_ids[positions[i]]), float(sims[i])) for i in top
                    if np.isfinite(sims[i])]
