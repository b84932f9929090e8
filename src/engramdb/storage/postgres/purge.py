"""Erasure's last step on PostgreSQL: make erased bytes unrecoverable from the files."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import psycopg

from engramdb.storage.postgres.errors import translate

if TYPE_CHECKING:
    from engramdb.storage.postgres import PostgresStorage

__all__ = ["PURGE_TABLES", "READER_WAIT_S", "purge"]

# How long a purge waits for transactions older than it (a snapshot that may still
# see the erased rows) before it reports them busy and leaves the rest to ``maintain``.
READER_WAIT_S = 1.0

# Other backends of this database in a transaction that began before ``%s`` and
# holds a snapshot: their snapshot may still see the rows the erasure deleted, so
# ``VACUUM FULL`` would copy those rows ("recently dead") into the new file.
_OLDER_SNAPSHOTS = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
    "AND pid <> pg_backend_pid() AND backend_xmin IS NOT NULL AND xact_start < %s")

# Tables whose heap (and TOAST) held erased text or vectors (the side tables'
# text is redacted by UPDATE, which leaves the old tuple dead in the heap too).
PURGE_TABLES = ("memories", "memory_vectors", "memory_vectors_ann", "event_payloads",
                "conflicts", "tool_outcomes", "tool_stats", "tool_stats_hourly", "decisions")


def purge(store: PostgresStorage) -> dict[str, Any]:
    """After an erasure: ``VACUUM FULL`` the tables that held the content and
    checkpoint twice around a WAL switch.

    A ``DELETE`` leaves the row as a dead tuple in its page; plain ``VACUUM``
    only marks the space reusable, so the bytes stay on disk until
    overwritten. ``VACUUM FULL`` writes a new file per table (and index and
    TOAST table) without the dead tuples and unlinks the old one; it holds
    an ACCESS EXCLUSIVE lock on each table while it runs. The WAL written
    before the erasure still holds the content until its segments are
    removed: the checkpoints make them removable, and with
    ``wal_recycle = off`` PostgreSQL unlinks them instead of renaming them
    for reuse. ``pg_switch_wal`` needs superuser (or an explicit grant);
    without it the report says so and the WAL ages out on its own.

    ``VACUUM FULL`` keeps a deleted row that some open snapshot may still
    see, so the purge first waits (at most :data:`READER_WAIT_S`) for the
    transactions of this database that began before it; if one is still
    open, ``readers_busy`` says so and ``maintain`` purges again later.
    """
    report: dict[str, Any] = {"vacuum_full": [], "wal": "switched and checkpointed",
                              "readers_busy": False}
    try:
        with psycopg.connect(store._conninfo, autocommit=True,
                             **store._connect_kwargs) as conn:
            report["readers_busy"] = _older_snapshots_open(conn)
            for table in PURGE_TABLES:
                conn.execute(f"VACUUM (FULL) {table}")
                report["vacuum_full"].append(table)
            try:
                conn.execute("CHECKPOINT")
                conn.execute("SELECT pg_switch_wal()")
                conn.execute("CHECKPOINT")
            except psycopg.Error as exc:
                report["wal"] = f"not switched ({exc.sqlstate}): needs superuser"
    except psycopg.Error as exc:
        store._failed(exc)
        raise translate(exc) from exc
    return report


def _older_snapshots_open(conn: psycopg.Connection[Any]) -> bool:
    """Wait for the transactions that began before now; whether any is still open."""
    started = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
    deadline = time.monotonic() + READER_WAIT_S
    while True:
        row = conn.execute(_OLDER_SNAPSHOTS, (started,)).fetchone()
        if not row or not row[0]:
            return False
        if time.monotonic() >= deadline:
            return True
        time.sleep(0.01)
