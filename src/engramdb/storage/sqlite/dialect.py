"""SQLite's SQL dialect for the shared query builder, and how its migrations split.

Kept apart from the backend (:mod:`engramdb.storage.sqlite`): both are pure text
functions of SQLite's syntax, with no connection or state.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from engramdb.codec import json_dumps
from engramdb.storage.sql import Dialect

__all__ = ["SQLiteDialect", "changed_since", "statements"]


def changed_since(tx: int, alias: str = "") -> tuple[str, list[int]]:
    """``row_tx > tx`` on ``memories`` (``alias``: its alias with the dot) and its parameters,
    in two halves each served by an index since migration 0039: a row as written
    (``row_tx = tx_from``) through ``memories_tx``, a row changed since it was written (a
    version closed, a status, an erasure) through the partial ``memories_row_tx``. From
    transaction 0 every row is read (a first load): one pass over the table is cheaper."""
    a = alias
    if tx <= 0:
        return f"{a}row_tx > ?", [tx]
    return (f"(({a}tx_from > ? AND {a}row_tx = {a}tx_from) "
            f"OR ({a}row_tx > ? AND {a}row_tx <> {a}tx_from))", [tx, tx])


class SQLiteDialect(Dialect):
    name = "sqlite"

    def changed_since(self, tx: int, alias: str = "") -> tuple[str, list[int]]:
        return changed_since(tx, alias)

    def json_equals(self, column: str, key: str, value: Any) -> tuple[str, list[Any]]:
        # Same JSON type and same value, so that 1, true and "1" stay distinct
        # (json_extract alone turns true into 1). No ``->``: it needs SQLite 3.38.
        path = "$." + '"' + key.replace('"', '""') + '"'
        want = json_dumps(value, what="filter value")
        return (
            f"(json_type({column}, ?) = json_type(?) AND "
            f"json_quote(json_extract({column}, ?)) = json_quote(json_extract(?, '$')))",
            [path, want, path, want],
        )


def statements(sql: str) -> list[str]:
    """Split a migration into statements (triggers contain semicolons)."""
    out: list[str] = []
    buf = ""
    for line in sql.splitlines(keepends=True):
        if not buf and (not line.strip() or line.strip().startswith("--")):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out
