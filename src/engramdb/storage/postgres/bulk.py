"""Bulk inserts inside a PostgreSQL write: many rows per statement, still pipelined.

A batch of memories buffers thousands of rows per table (:class:`SqlWriteTx`).
Sent with ``executemany``, each row is its own Bind/Execute: about 60 us of
client CPU per row in psycopg's pipeline machinery, and a statement's worth of
executor start-up on the server, for four tables per memory. Here each run
of rows becomes a few multi-row ``INSERT ... VALUES (...), (...), ...``
statements, queued in the transaction's pipeline like a single ``INSERT``
(nothing is read back, so nothing waits). COPY would be cheaper still, but
psycopg cannot COPY in pipeline mode, which every write runs in.

Only a plain ``INSERT INTO t (cols) VALUES (?, ...)`` (what the shared SQL
buffers) is rewritten; any other statement runs as before. Rows keep their
order, so ``row_id`` and ``vseq`` are assigned exactly as one statement per
row would assign them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg

__all__ = ["insert_many", "upsert_vectors"]

# Parameters per statement stay well under the protocol's 65,535, and a chunk is
# small enough that one statement's parse stays cheap next to its rows.
_MAX_PARAMS = 12_000
_MAX_ROWS = 1_000
# Fewer rows than this go row by row (a prepared statement is then cheaper).
_MIN_ROWS = 4

_PLAIN_INSERT = re.compile(r"^INSERT INTO (\w+) \(([\w, ]+)\) VALUES \(\?(?:, \?)*\)$")

_VECTOR_UPSERT = (
    "INSERT INTO memory_vectors (id, version, vec) VALUES {values} "
    "ON CONFLICT (id, version) DO UPDATE "
    "SET vec = excluded.vec, vseq = nextval('memory_vectors_vseq')"
)


@functools.lru_cache(maxsize=256)
def _values(width: int, rows: int) -> str:
    """``($1, $2), ($3, $4)...``: numbered placeholders, which a raw cursor sends as
    they are (psycopg's ``%s`` conversion parses the query in Python, costing more
    than the rows themselves for a statement of thousands of parameters)."""
    return ", ".join("(" + ", ".join(f"${r * width + c + 1}" for c in range(width)) + ")"
                     for r in range(rows))


def _run(conn: psycopg.Connection[Any], query: str, params: list[Any], prepare: bool) -> None:
    with psycopg.RawCursor(conn) as cur:
        cur.execute(query, params, prepare=prepare)


def _chunk_rows(width: int) -> int:
    return max(1, min(_MAX_ROWS, _MAX_PARAMS // max(1, width)))


def plain_insert(sql: str) -> tuple[str, int] | None:
    """``(INSERT INTO t (cols) VALUES, column count)`` if ``sql`` is a plain insert."""
    match = _PLAIN_INSERT.match(sql)
    if match is None:
        return None
    cols = match.group(2)
    return f"INSERT INTO {match.group(1)} ({cols}) VALUES ", cols.count(",") + 1


def insert_many(conn: psycopg.Connection[Any], sql: str, rows: Sequence[Sequence[Any]]
                ) -> bool:
    """Queue ``rows`` of the plain insert ``sql`` (``?`` placeholders) as multi-row
    statements on ``conn`` (in its pipeline). Returns False, doing nothing, for a
    statement that is not a plain insert or too few rows: run it row by row."""
    plain = plain_insert(sql) if len(rows) >= _MIN_ROWS else None
    if plain is None:
        return False
    head, width = plain
    step = _chunk_rows(width)
    for start in range(0, len(rows), step):
        chunk = rows[start:start + step]
        params = [v for row in chunk for v in row]
        # Not prepared: the last chunk's length varies, and a plan of VALUES is trivial.
        _run(conn, head + _values(width, len(chunk)), params, prepare=False)
    return True


def upsert_vectors(conn: psycopg.Connection[Any],
                   rows: Sequence[tuple[str, int, np.ndarray]]) -> None:
    """Store ``(id, version, vector)`` rows, replacing a version's earlier vector, in
    multi-row statements. A version named twice keeps its last vector, as upserting
    row by row would (one statement may not update a row twice)."""
    last: dict[tuple[str, int], int] = {}
    for i, (memory_id, version, _) in enumerate(rows):
        last[(memory_id, version)] = i
    if len(last) < len(rows):
        rows = [rows[i] for i in sorted(last.values())]
    step = _chunk_rows(3) if len(rows) >= _MIN_ROWS else 1
    for start in range(0, len(rows), step):
        chunk = rows[start:start + step]
        params = [v for row in chunk for v in row]
        _run(conn, _VECTOR_UPSERT.format(values=_values(3, len(chunk))), params,
             prepare=step == 1)
