"""``Update`` effects as SQL: one statement for a run of updates that set the same values.

Used by :meth:`engramdb.storage.sql.SqlWriteTx.apply`. ``maintain`` closes the
versions it archives with identical changes (``tx_to``), and an erasure marks
decisions stale the same way: one statement per 200 rows instead of one round
trip (a pipeline sync on PostgreSQL) per row. The rows are named by an OR of
key equalities, which both backends answer with one primary-key search per
term (SQLite scans the table for a row-value ``IN (VALUES ...)``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engramdb.storage.base import Effect, Update

__all__ = ["CHUNK", "same_update_run", "update_statements"]

CHUNK = 200  # keys per statement: far below SQLite's expression depth and variable limits


def same_update_run(effects: Sequence[Effect], start: int) -> list[Update]:
    """The consecutive updates from ``start`` that set the same values (same expectation,
    same key columns, distinct keys) in the same table: one statement applies them."""
    first = effects[start]
    assert isinstance(first, Update)
    run = [first]
    seen = {tuple(first.key.items())}
    for e in effects[start + 1:]:
        if not (isinstance(e, Update) and e.table == first.table and e.changes == first.changes
                and e.expect == first.expect and list(e.key) == list(first.key)
                and tuple(e.key.items()) not in seen):
            break
        seen.add(tuple(e.key.items()))
        run.append(e)
    return run


def update_statements(table: str, changes: Mapping[str, Any], expect: Mapping[str, Any],
                      keys: Sequence[Mapping[str, Any]]
                      ) -> list[tuple[str, list[Any], int]]:
    """``(sql, params, rows it must change)`` per chunk of ``keys`` (``?`` placeholders).

    ``changes`` and ``expect`` are encoded column values; ``expect`` ``None`` means
    ``IS NULL``. A statement changing fewer rows than it names met a concurrent change.
    """
    sets = ", ".join(f"{c} = ?" for c in changes)
    cols = list(keys[0])
    one = "(" + " AND ".join(f"{c} = ?" for c in cols) + ")"
    guard = "".join(f" AND {c} IS NULL" if v is None else f" AND {c} = ?"
                    for c, v in expect.items())
    guard_params = [v for v in expect.values() if v is not None]
    out = []
    for at in range(0, len(keys), CHUNK):
        chunk = keys[at:at + CHUNK]
        where = one if len(chunk) == 1 else "(" + " OR ".join([one] * len(chunk)) + ")"
        params = [*changes.values(), *(k[c] for k in chunk for c in cols), *guard_params]
        out.append((f"UPDATE {table} SET {sets} WHERE {where}{guard}", params, len(chunk)))
    return out
