"""Erasure's last step on PostgreSQL: make erased bytes unrecoverable from the files."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import psycopg

from engramdb.storage.postgres.errors import translate

if TYPE_CHECKING:
    from engramdb.storage.postgres import PostgresStorage

__all__ = ["PURGE_TABLES", "purge"]

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
    """
    report: dict[str, Any] = {"vacuum_full": [], "wal": "switched and checkpointed"}
    try:
        with psycopg.connect(store._conninfo, autocommit=True,
                             **store._connect_kwargs) as conn:
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
