"""Read snapshots on PostgreSQL: one REPEATABLE READ transaction, opened in one round trip.

A recall reads, under one snapshot, the chain head, the namespaces its
reader may search, the configuration that decides what that reader may see
(grants, principals, settings, policies: ``CONFIG_TABLES``), both candidate
searches and the contested marks. Asked one by one, the small reads cost a
round trip each (a wake-up of a backend that, on a busy machine, waits for a
core). So the snapshot's first round trip carries, besides ``BEGIN``:

* the head row, with ``config_tx`` (the transaction of the last configuration
  change): :meth:`~engramdb.storage.postgres.PostgresStorage.head` answers
  from it inside the snapshot;
* the namespaces of the memory rows written since this process last looked
  (``row_tx`` above the head it saw then; usually none), added to the names
  it knew: :meth:`~engramdb.storage.postgres.PostgresStorage.namespaces`
  answers from them inside the snapshot;
* the open conflicts, when there are at most :data:`OPEN_CONFLICTS` of them:
  the contested marks of a recall (``fetch("conflicts", {"namespace": ...,
  "status": "open"})``) are then filtered from them (:func:`pinned_rows`).

Configuration reads inside the snapshot are answered from the rows kept in
memory under ``config_tx`` (:meth:`~engramdb.storage.sql.SqlStorage.config_rows`,
the cache prepared writes use): every configuration change sets
``config_tx`` in its own commit, so rows kept under the ``config_tx`` this
snapshot read are exactly the snapshot's. A table kept under another tag is
read again, through the snapshot.

Exactness: everything here is read in the snapshot or is provably equal to
what the snapshot holds. A namespace is known once a version was written in
it; a namespace whose every row was erased stays in the list (a filter on it
matches nothing), as on SQLite.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import psycopg

from engramdb.model import RecallFilter
from engramdb.storage.base import Head, Row
from engramdb.storage.postgres.errors import is_connection_loss, translate
from engramdb.storage.schema import TABLES
from engramdb.storage.sql_where import select_rows
from engramdb.storage.sql_write import decode_row

__all__ = ["DISTINCT_NAMESPACES", "KnownNamespaces", "Pinned", "pinned_rows", "read_snapshot",
           "without_every_namespace"]

# A loose index scan: one probe of the namespace index per distinct namespace.
DISTINCT_NAMESPACES = (
    "WITH RECURSIVE ns AS ("
    " (SELECT namespace FROM memories ORDER BY namespace LIMIT 1)"
    " UNION ALL"
    " SELECT (SELECT m.namespace FROM memories m WHERE m.namespace > ns.namespace"
    "         ORDER BY m.namespace LIMIT 1) FROM ns WHERE ns.namespace IS NOT NULL"
    ") SELECT namespace FROM ns WHERE namespace IS NOT NULL"
)
# Rows written since a head: their namespaces, counted up to a cap (past it, the
# loose scan above answers instead; e.g. the first recall after a bulk load).
_NEW_ROWS_CAP = 20_000
_NEW_NAMESPACES = ("SELECT namespace, count(*) FROM (SELECT namespace FROM memories "
                   "WHERE row_tx > %s LIMIT %s) s GROUP BY namespace")
_ALL_NAMESPACES = DISTINCT_NAMESPACES.replace("SELECT namespace FROM ns WHERE",
                                              "SELECT namespace, 0 FROM ns WHERE")
OPEN_CONFLICTS = 200
_CONFLICTS = TABLES["conflicts"]
_OPEN = (f"SELECT {', '.join(_CONFLICTS.columns)} FROM conflicts WHERE status = 'open' "
         f"LIMIT {OPEN_CONFLICTS + 1}")
_HEAD = "SELECT seq, hash, tx, recorded_at, config_tx FROM chain_head WHERE id = 1"


@dataclass(frozen=True, slots=True)
class Pinned:
    """What a snapshot read in its first round trip."""

    conn: psycopg.Connection[Any]
    head: Head
    config_tx: int
    namespaces: tuple[str, ...]
    open_conflicts: list[Sequence[Any]] | None  # every open conflict, or None: too many


class KnownNamespaces:
    """The namespaces this process has seen, as of a transaction (shared by threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.tx = -1  # nothing known yet
        self.names: frozenset[str] = frozenset()

    def query(self) -> tuple[int, str, list[Any]]:
        """``(since, sql, params)``: what the snapshot's first round trip asks."""
        since = self.tx
        if since < 0:
            return since, _ALL_NAMESPACES, []
        return since, _NEW_NAMESPACES, [since, _NEW_ROWS_CAP]

    def update(self, conn: psycopg.Connection[Any], since: int, head_tx: int,
               rows: list[tuple[str, int]]) -> tuple[str, ...]:
        """The namespaces of every row the snapshot at ``head_tx`` sees, from what
        :meth:`query` read in it (all of them, or those of the rows written after
        ``since``); listed again, in the snapshot, when that is not enough.

        Names only grow, so the names kept (complete as of ``self.tx``, at or after
        ``since``) plus the rows read are complete for the snapshot. They may hold a
        namespace the snapshot does not see yet (another thread saw it later): a
        filter on it matches nothing there.
        """
        with self._lock:
            kept_tx = self.tx
        replaced = 0 <= head_tx < since  # the database was replaced under us
        if since >= 0 and (replaced or kept_tx < since
                           or sum(int(r[1]) for r in rows) >= _NEW_ROWS_CAP):
            rows = conn.execute(_ALL_NAMESPACES).fetchall()
        found = frozenset(str(r[0]) for r in rows)
        with self._lock:
            if replaced:
                self.tx, self.names = head_tx, found
            else:
                self.tx, self.names = max(self.tx, head_tx), self.names | found
            return tuple(sorted(self.names))


@contextmanager
def read_snapshot(store: Any, plan: Callable[[psycopg.Connection[Any]], Any] | None = None
                  ) -> Iterator[None]:
    """``PostgresStorage.snapshot``: pin one REPEATABLE READ, READ ONLY transaction.

    While it is open, ``store._read_conn()`` hands its connection to every read
    of this thread, so they all see one committed state, and configuration
    reads are answered from the rows kept under the snapshot's ``config_tx``.
    Nested: the outer holds. ``plan``: returns the searches to send in the first
    round trip, after the head read (:func:`.ahead.plan`), or None.
    """
    if getattr(store._local, "snapshot", None) is not None:
        yield
        return
    known: KnownNamespaces = store.known_namespaces
    since, ns_sql, ns_params = known.query()
    with store._read_conn() as conn:
        try:  # planned before BEGIN (stems, planner statistics): a driver error is typed
            sent = None if plan is None else plan(conn)
        except psycopg.Error as exc:
            raise _failed(store, conn, exc) from exc
        try:
            head_cur, ns_cur, open_cur = _open(conn, ns_sql, ns_params, sent)
        except psycopg.Error as exc:
            if sent is None or is_connection_loss(exc):
                raise _failed(store, conn, exc) from exc
            # A search sent ahead failed: open the snapshot as without it (the
            # recall's own search will meet, and report, whatever went wrong).
            with contextlib.suppress(psycopg.Error):
                conn.execute("ROLLBACK")
            sent = None
            try:
                head_cur, ns_cur, open_cur = _open(conn, ns_sql, ns_params, None)
            except psycopg.Error as again:
                raise _failed(store, conn, again) from again
        try:
            seq, digest, tx, recorded_at, config_tx = head_cur.fetchone()
            names = known.update(conn, since, int(tx), ns_cur.fetchall())
            conflicts = open_cur.fetchall()
        except psycopg.Error as exc:
            raise _failed(store, conn, exc) from exc
        pinned = Pinned(conn, Head(int(seq), str(digest), int(tx), int(recorded_at)),
                        int(config_tx), names,
                        conflicts if len(conflicts) <= OPEN_CONFLICTS else None)
        store.predictor.remember(pinned.head, pinned.config_tx, names)
        store._local.snapshot = conn
        store._local.pinned = pinned
        store._local.ahead = sent
        try:
            with store.config_scope(
                    lambda table: store.config_rows(conn, table, pinned.config_tx)):
                yield
        finally:
            if store._local.ahead is not None:  # sent ahead, never asked for
                store._local.ahead = None
                store.predictor.outcome(False)
            store._local.snapshot = None
            store._local.pinned = None
            # Read only: nothing to keep. A connection that cannot even roll back is
            # dropped by the pool; the error that brought us here is the one to report.
            with contextlib.suppress(psycopg.Error):
                conn.execute("ROLLBACK")


def _open(conn: psycopg.Connection[Any], ns_sql: str, ns_params: list[Any], sent: Any
          ) -> tuple[Any, Any, Any]:
    """The snapshot's first round trip: ``BEGIN``, head, namespaces, open conflicts
    and, if ``sent``, the searches sent ahead (``.ahead.Sent``)."""
    with conn.pipeline():  # one round trip
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        # The snapshot is taken at the first query, not at BEGIN: this one.
        head_cur = conn.execute(_HEAD)
        ns_cur = conn.execute(ns_sql, ns_params)
        open_cur = conn.execute(_OPEN)
        if sent is not None:
            sent.send(conn)
    return head_cur, ns_cur, open_cur


def _failed(store: Any, conn: psycopg.Connection[Any], exc: psycopg.Error) -> Exception:
    store._failed(exc)
    with contextlib.suppress(psycopg.Error):
        conn.execute("ROLLBACK")
    return translate(exc)


def pinned_rows(store: Any, table: str, where: Mapping[str, Any]) -> list[Row] | None:
    """``store.fetch(table, where)`` answered from what the snapshot's first round trip
    read, or None when it cannot be (outside a snapshot, or not a read of open
    conflicts by namespace, or too many open conflicts)."""
    pinned: Pinned | None = getattr(store._local, "pinned", None)
    if (pinned is None or pinned.open_conflicts is None or table != "conflicts"
            or where.get("status") != "open" or not set(where) <= {"namespace", "status"}):
        return None
    cols = list(_CONFLICTS.columns)
    return [decode_row(_CONFLICTS, cols, r)
            for r in select_rows(_CONFLICTS, pinned.open_conflicts, where)]


def without_every_namespace(store: Any, flt: RecallFilter) -> RecallFilter:
    """``flt`` without its namespace list when, inside a snapshot, that list names
    every namespace the snapshot holds memory rows of (what an admin's unscoped
    recall resolves ``*`` to): then the list filters nothing, and a search checks
    one condition fewer per row (an ``IN`` of every namespace; ~0.3 ms of a
    full-text search over 1,000 matches at 100k memories, 20 namespaces).

    Exact: the snapshot's namespaces (:class:`KnownNamespaces`) hold every
    namespace of a row it sees. Only the SQL condition may use this; how a
    search is planned (e.g. a narrow scope ranked exactly) still follows ``flt``.
    """
    pinned: Pinned | None = getattr(store._local, "pinned", None)
    if (pinned is None or flt.namespaces is None
            or len(flt.namespaces) < len(pinned.namespaces)
            or not set(pinned.namespaces) <= set(flt.namespaces)):
        return flt
    return replace(flt, namespaces=None)
