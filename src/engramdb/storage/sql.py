"""SQL built once for every backend: effects, logging, generic reads, filters.

A backend subclasses :class:`SqlStorage` and supplies connections, the write
lock, full-text and vector search, and a :class:`Dialect` for the few places
where SQL differs (placeholders, JSON access, row locking). Everything that
decides *what* is written or hashed lives here, so SQLite and PostgreSQL
store byte-identical logs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from engramdb.errors import StorageError
from engramdb.model import RecallFilter
from engramdb.storage import sql_lifecycle
from engramdb.storage.base import (
    Head,
    RawEvent,
    Row,
    Storage,
)
from engramdb.storage.schema import CONFIG_TABLES, TABLES
from engramdb.storage.sql_where import Dialect, memory_where, select_rows, where_eq
from engramdb.storage.sql_write import (
    EVENT_COLUMNS,
    SqlWriteTx,
    _spec,
    decode_row,
    encode_row,
)

__all__ = ["EVENT_COLUMNS", "Dialect", "SqlStorage", "SqlWriteTx", "decode_row", "encode_row",
           "memory_where"]

_FAR_FUTURE = 2**62
_DISTINCT_NAMESPACES = (
    "WITH RECURSIVE ns(name) AS ("
    " SELECT MIN(namespace) FROM memories"
    " UNION ALL"
    " SELECT (SELECT MIN(m.namespace) FROM memories m WHERE m.namespace > ns.name)"
    " FROM ns WHERE ns.name IS NOT NULL"
    ") SELECT name FROM ns WHERE name IS NOT NULL"
)


class SqlStorage(Storage):
    """Shared implementation; subclasses provide connections and search."""

    dialect_impl: Dialect
    # Buffered insert rows a write transaction sends at once (SqlWriteTx): a server
    # backend sends sooner, so the server inserts while the engine plans the rest.
    write_flush_rows = 10_000

    @property
    def dialect(self) -> str:  # type: ignore[override]
        return self.dialect_impl.name

    # -- hooks for backends -----------------------------------------------

    def _exec(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> Any:
        raise NotImplementedError

    def _read_conn(self) -> Any:
        """A context manager yielding a connection for reads."""
        raise NotImplementedError

    def _write_conn(self, wait: bool = True, durable: bool = True) -> Any:
        """A context manager yielding a connection inside a locked write transaction.

        ``wait=False``: fail with :class:`~engramdb.errors.Busy` at once if another
        writer holds the lock. ``durable=False``: commit without waiting for the
        flush (see :meth:`Storage.write`).
        """
        raise NotImplementedError

    def _exec_many(self, conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement (``?`` placeholders, no result) for each of ``rows``."""
        raise NotImplementedError

    def _insert_many(self, conn: Any, table: str, sql: str, rows: Sequence[Sequence[Any]]
                     ) -> None:
        """Run the buffered inserts ``sql`` of ``table`` (a backend may index them in bulk)."""
        self._exec_many(conn, sql, rows)

    def _put_vectors(self, conn: Any, items: Sequence[tuple[str, int, np.ndarray]]) -> None:
        raise NotImplementedError

    # -- writes ------------------------------------------------------------

    @contextmanager
    def write(self, actor: str, *, wait: bool = True, durable: bool = True
              ) -> Iterator[SqlWriteTx]:
        with self._write_conn(wait, durable) as conn:
            lock = self.dialect_impl.lock_head if wait else self.dialect_impl.lock_head_now
            cur = self._exec(
                conn, "SELECT seq, hash, tx, recorded_at, config_tx FROM chain_head WHERE id = 1"
                + lock)
            seq, digest, tx, recorded_at, config_tx = cur.fetchone()
            wtx = SqlWriteTx(self, conn, Head(seq, digest, tx, recorded_at), config_tx)
            with self.config_scope(wtx.config_view):
                yield wtx
            wtx.finish()
            self._before_commit(conn, wtx)
        self._after_commit(wtx)

    # -- configuration rows kept in memory (CONFIG_TABLES) ---------------------------

    def config_rows(self, conn: Any, table: str, config_tx: int) -> list[Sequence[Any]]:
        """Every raw row of configuration ``table`` as of ``config_tx``.

        The caller knows ``config_tx`` is the current ``chain_head.config_tx`` (it
        holds the chain lock, or the write it prepares checks it under the lock),
        so rows kept from a read at that tag are exact; others are read again
        through ``conn``.
        """
        cache: dict[str, tuple[int, list[Sequence[Any]]]] = self.__dict__.setdefault(
            "_config", {})
        hit = cache.get(table)
        if hit is not None and hit[0] == config_tx:
            return hit[1]
        rows = self._select(conn, table, {})
        cache[table] = (config_tx, rows)
        return rows

    @contextmanager
    def config_scope(self, rows: Callable[[str], list[Sequence[Any]]]) -> Iterator[None]:
        """Inside the block, this thread's :meth:`fetch` of a configuration table is
        answered from ``rows(table)`` (a write's view of the configuration)."""
        local = self._local  # type: ignore[attr-defined]
        outer = getattr(local, "config_scope", None)
        local.config_scope = rows
        try:
            yield
        finally:
            local.config_scope = outer

    def _before_commit(self, conn: Any, wtx: SqlWriteTx) -> None:
        """Hook for work that must commit with the write (e.g. PostgreSQL NOTIFY)."""

    def _after_commit(self, wtx: SqlWriteTx) -> None:
        """Hook for caches and notifications once a write is durable."""

    # -- generic reads -------------------------------------------------------

    def _fetch(
        self,
        conn: Any,
        table: str,
        where: Mapping[str, Any],
        *,
        order_by: str | None = None,
        limit: int | None = None,
    ) -> list[Row]:
        spec = _spec(table)
        cols = list(spec.columns)
        return [decode_row(spec, cols, r) for r in self._select(
            conn, table, where, order_by=order_by, limit=limit)]

    def _select(
        self,
        conn: Any,
        table: str,
        where: Mapping[str, Any],
        *,
        order_by: str | None = None,
        limit: int | None = None,
    ) -> list[Sequence[Any]]:
        """The raw rows (every column of the table, in order) that :meth:`_fetch` decodes."""
        spec = _spec(table)
        cols = list(spec.columns)
        for col in list(where) + ([order_by.split()[0]] if order_by else []):
            if col not in spec.columns:
                raise StorageError(f"table {table} has no column {col!r}")
        cond, params = where_eq(self.dialect_impl, where)
        sql = f"SELECT {', '.join(cols)} FROM {spec.name} WHERE {cond}"
        if order_by:
            sql += f" ORDER BY {order_by}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return list(self._exec(conn, sql, params).fetchall())

    def fetch(
        self,
        table: str,
        where: Mapping[str, Any],
        *,
        order_by: str | None = None,
        limit: int | None = None,
    ) -> list[Row]:
        scope = getattr(self._local, "config_scope", None)  # type: ignore[attr-defined]
        if scope is not None and table in CONFIG_TABLES:  # inside a write: its view
            spec = _spec(table)
            return [decode_row(spec, list(spec.columns), r)
                    for r in select_rows(spec, scope(table), where, order_by, limit)]
        with self._read_conn() as conn:
            return self._fetch(conn, table, where, order_by=order_by, limit=limit)

    def scan(self, table: str) -> Iterator[Row]:
        spec = _spec(table)
        cols = list(spec.columns)
        order = ", ".join(spec.key)
        with self._read_conn() as conn:
            cur = self._exec(conn, f"SELECT {', '.join(cols)} FROM {spec.name} ORDER BY {order}")
            while batch := cur.fetchmany(2000):
                for r in batch:
                    yield decode_row(spec, cols, r)

    def meta(self, key: str) -> str | None:
        with self._read_conn() as conn:
            row = self._exec(conn, "SELECT value FROM meta WHERE key = ?", [key]).fetchone()
            return None if row is None else str(row[0])

    def list_memories(
        self, flt: RecallFilter, *, limit: int | None = None, order: str = "recent"
    ) -> list[Row]:
        spec = TABLES["memories"]
        cols = list(spec.columns)
        cond, params = memory_where(flt, self.dialect_impl)
        order_sql = {
            "recent": "m.recorded_at DESC, m.id DESC",
            "importance": "m.importance DESC, m.recorded_at DESC",
            "oldest": "m.tx_from ASC, m.id ASC",
            # episodes: in the order they happened (valid time), or newest first
            "valid": "m.valid_from ASC, m.id ASC",
            "valid_desc": "m.valid_from DESC, m.id DESC",
        }[order]
        sql = (
            f"SELECT {', '.join('m.' + c for c in cols)} FROM memories m WHERE {cond} "
            f"ORDER BY {order_sql}"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._read_conn() as conn:
            cur = self._exec(conn, sql, params)
            return [decode_row(spec, cols, r) for r in cur.fetchall()]

    def namespaces(self) -> list[str]:
        # Every read resolves its namespace glob against this list, so it is
        # cached and extended incrementally: a namespace exists once any
        # version was written in it, and versions are never deleted, so only
        # rows written since the last look (``row_tx``) can add one.
        with self._read_conn() as conn:
            tx = self._head_tx(conn)
            cache = self.__dict__.setdefault("_ns_cache", (0, frozenset()))
            seen_tx, names = cache
            if tx != seen_tx:
                if tx < seen_tx:  # the database was replaced under us: start again
                    seen_tx, names = 0, frozenset()
                if seen_tx == 0:
                    # First look: one probe of the namespace index per distinct
                    # namespace, not a read of every row (cold start at 1M rows).
                    cur = self._exec(conn, _DISTINCT_NAMESPACES)
                else:
                    # No DISTINCT: planners then prefer a full scan of the namespace
                    # index to a range scan of the (small) recent rows.
                    since, params = self.dialect_impl.changed_since(seen_tx)
                    cur = self._exec(conn, f"SELECT namespace FROM memories WHERE {since}", params)
                names = names | {r[0] for r in cur.fetchall()}
                self.__dict__["_ns_cache"] = (tx, names)
            return sorted(names)

    def _head_tx(self, conn: Any) -> int:
        """The head's transaction as ``conn`` reads it."""
        return int(self._exec(conn, "SELECT tx FROM chain_head WHERE id = 1").fetchone()[0])

    # -- lifecycle (queries in .sql_lifecycle) ----------------------------------------

    def due_to_expire(self, now: int, limit: int) -> list[Row]:
        return sql_lifecycle.due_to_expire(self, now, limit)

    def recorded_between(self, after: int, until: int, limit: int) -> list[Row]:
        return sql_lifecycle.recorded_between(self, after, until, limit)

    def used_between(self, after: int, until: int, limit: int) -> list[Row]:
        return sql_lifecycle.used_between(self, after, until, limit)

    def find_events(self, subject_refs: Sequence[str], txs: Sequence[int]) -> list[RawEvent]:
        return sql_lifecycle.find_events(self, subject_refs, txs)

    namespaces_since = sql_lifecycle.namespaces_since
    mentioning = sql_lifecycle.mentioning

    # -- log -------------------------------------------------------------------

    def head(self) -> Head:
        with self._read_conn() as conn:
            seq, digest, tx, recorded_at = self._exec(
                conn, "SELECT seq, hash, tx, recorded_at FROM chain_head WHERE id = 1"
            ).fetchone()
            return Head(seq, digest, tx, recorded_at)

    def events(self, after: int = 0, limit: int = 1000) -> list[RawEvent]:
        with self._read_conn() as conn:
            return self._read_events(conn, after, limit)

    def _read_events(self, conn: Any, after: int, limit: int) -> list[RawEvent]:
        cur = self._exec(
            conn,
            f"SELECT {', '.join('e.' + c.strip() for c in EVENT_COLUMNS.split(','))}, "
            "p.salt, p.payload FROM events e LEFT JOIN event_payloads p ON p.seq = e.seq "
            f"WHERE e.seq > ? ORDER BY e.seq LIMIT {int(limit)}",
            [after],
        )
        return [_raw_event(r) for r in cur.fetchall()]

    def tx_at(self, when: int) -> int:
        with self._read_conn() as conn:
            row = self._exec(
                conn, "SELECT MAX(tx) FROM events WHERE recorded_at <= ?", [when]
            ).fetchone()
            return int(row[0] or 0)

    def tx_time(self, tx: int) -> int:
        with self._read_conn() as conn:
            # The last event's: a log's time never goes back (verify checks it), and
            # this walks the tx index back from ``tx`` instead of a time index.
            row = self._exec(
                conn, "SELECT recorded_at FROM events WHERE tx <= ? ORDER BY tx DESC, seq DESC "
                "LIMIT 1", [tx]
            ).fetchone()
            return int(row[0]) if row is not None else 0

    def counts(self) -> dict[str, int]:
        with self._read_conn() as conn:
            out: dict[str, int] = {}
            for status, n in self._exec(
                conn, "SELECT status, COUNT(*) FROM memories WHERE tx_to IS NULL GROUP BY status"
            ).fetchall():
                out[f"memories_{status}"] = int(n)
            for layer, n in self._exec(
                conn,
                "SELECT layer, COUNT(*) FROM memories WHERE tx_to IS NULL AND status = 'active' "
                "GROUP BY layer",
            ).fetchall():
                out[f"layer_{layer}"] = int(n)
            out["events"] = int(self._exec(conn, "SELECT COUNT(*) FROM events").fetchone()[0])
            out["open_conflicts"] = int(
                self._exec(
                    conn, "SELECT COUNT(*) FROM conflicts WHERE status = 'open'"
                ).fetchone()[0]
            )
            return out


def far_future() -> int:
    return _FAR_FUTURE


RowFactory = Callable[[Sequence[str], Sequence[Any]], Row]


def _raw_event(r: Sequence[Any]) -> RawEvent:
    return RawEvent(
        seq=r[0], tx=r[1], kind=r[2], namespace=r[3], actor=r[4], recorded_at=r[5],
        subject_ref=r[6], commitment=r[7], prev_hash=r[8], hash=r[9],
        salt=bytes(r[10]) if r[10] is not None else None, payload=r[11],
    )
