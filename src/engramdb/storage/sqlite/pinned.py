"""What a SQLite read snapshot reads once, and the configuration reads kept across snapshots.

A recall on SQLite reads in one WAL read transaction (``SQLiteStorage.snapshot``).
Before this module, several of its parts read the same one-row facts of that
snapshot again, each a statement of its own: the chain head (to start the
snapshot, for the receipt, for the namespace list, for the in-process full-text
index and for the vector index: five times), the latest erasure (full text and
vectors: twice), the highest row id and FTS5's averages record (row count and
token total, for BM25). The snapshot's first statement
(:data:`PIN_SQL`, which also takes the snapshot) now reads them all, and those
parts take them from :class:`Pinned` while the snapshot is open. Exact: each
value is a read of that same transaction, which sees one committed state.

The configuration a recall reads (the reader's principal row, its grants, the
lifecycle policies: ``CONFIG_TABLES``) is kept by :class:`ConfigReads` per query
under the snapshot's ``chain_head.config_tx``: every write that changes a
configuration table sets ``config_tx`` to its own transaction in the same commit
(``SqlWriteTx.finish``), so the rows one query returned in a snapshot with a given
``config_tx`` are the rows it returns in every snapshot with that tag. A snapshot
with another tag reads again (and keeps that answer instead). Writers keep the
whole tables under the same tag (``SqlStorage.config_rows``); a query here is
answered by SQL, with its index, the first time, so a fleet of many principals
reads one row, not all of them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engramdb.storage.base import Head

__all__ = ["PIN_SQL", "ConfigReads", "Pinned", "pin"]

# The snapshot's first read: a deferred transaction takes its snapshot here.
PIN_SQL = ("SELECT seq, hash, tx, recorded_at, config_tx, "
           "(SELECT COALESCE(MAX(tx), 0) FROM erasures), "
           "(SELECT COALESCE(MAX(row_id), 0) FROM memories), "
           "(SELECT block FROM memories_fts_data WHERE id = 1) "
           "FROM chain_head WHERE id = 1")


@dataclass(frozen=True, slots=True)
class Pinned:
    """The one-row facts of an open read snapshot, read by its first statement."""

    conn: sqlite3.Connection  # the reader holding the snapshot
    head: Head
    config_tx: int  # the transaction of the last configuration change
    erased_tx: int  # the transaction of the latest erasure, 0 if none
    max_row_id: int  # the highest memory row id, 0 if none
    fts_averages: bytes | None  # FTS5's averages record (lexical.averages reads it)


def pin(conn: sqlite3.Connection, row: Sequence[Any]) -> Pinned:
    """:class:`Pinned` from ``conn``'s reading of :data:`PIN_SQL`."""
    seq, digest, tx, recorded_at, config_tx, erased_tx, max_row_id, fts_averages = row
    return Pinned(conn, Head(seq, digest, tx, recorded_at), int(config_tx), int(erased_tx),
                  int(max_row_id), fts_averages)


class ConfigReads:
    """Raw rows of configuration queries, each kept under the ``config_tx`` it was read at."""

    # Distinct queries kept (principals by name, grants by grantees, ...): past this
    # many, the kept answers are forgotten and read again.
    MAX_KEPT = 4096

    def __init__(self) -> None:
        self._kept: dict[Any, tuple[int, list[Sequence[Any]]]] = {}

    def rows(self, table: str, where: Mapping[str, Any], order_by: str | None,
             limit: int | None, config_tx: int, read: Callable[[], list[Sequence[Any]]]
             ) -> list[Sequence[Any]]:
        """What ``read()`` returns for this query in a snapshot tagged ``config_tx``."""
        try:
            key = (table, tuple((col, type(v).__name__, tuple(v) if type(v) is list else v)
                                for col, v in where.items()), order_by, limit)
            kept = self._kept.get(key)
        except TypeError:  # a value that cannot be a key: not kept
            return read()
        if kept is not None and kept[0] == config_tx:
            return kept[1]
        rows = read()
        if len(self._kept) >= self.MAX_KEPT:
            self._kept.clear()
        self._kept[key] = (config_tx, rows)
        return rows
