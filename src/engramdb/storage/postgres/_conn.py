"""PostgreSQL plumbing: the SQL dialect, placeholders, vector adapters, pipelined writes.

Kept apart from :mod:`engramdb.storage.postgres` (the storage itself) so the
searches (:mod:`.knn`) can use it too.
"""

from __future__ import annotations

import functools
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import psycopg
from psycopg.adapt import Dumper, Loader
from psycopg.pq import Format

from engramdb.codec import json_dumps
from engramdb.storage.sql import Dialect

__all__ = ["PgDialect", "to_pyformat"]


class PgDialect(Dialect):
    """PostgreSQL SQL differences: ``%s`` placeholders, JSON via ``json``, row locks."""

    name = "postgresql"
    placeholder = "%s"
    lock_head = " FOR UPDATE"
    lock_head_now = " FOR UPDATE NOWAIT"

    def q(self, sql: str) -> str:
        return to_pyformat(sql)

    def json_equals(self, column: str, key: str, value: Any) -> tuple[str, list[Any]]:
        # Compare canonical JSON text, as SQLite compares type and value: 1, 1.0, true
        # and "1" stay distinct, a key holding null equals None, a missing key equals
        # nothing. The column holds canonical JSON, and ``json`` (unlike ``jsonb``)
        # returns a member's original text.
        return (
            f"((({column})::json -> ?::text)::text) = ?",
            [key, json_dumps(value, what="filter value")],
        )


@functools.lru_cache(maxsize=2048)
def to_pyformat(sql: str) -> str:
    """Turn the shared SQL's ``?`` placeholders into psycopg's ``%s`` (escaping ``%``)."""
    return sql.replace("%", "%%").replace("?", "%s")


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _vector_dumper(oid: int) -> type[Dumper]:
    """A binary dumper of float32 NumPy arrays as pgvector ``vector`` values."""

    class VectorDumper(Dumper):
        format = Format.BINARY

        def dump(self, obj: Any) -> bytes:
            arr = np.asarray(obj, dtype=">f4").reshape(-1)
            return struct.pack(">HH", arr.size, 0) + arr.tobytes()

    VectorDumper.oid = oid
    return VectorDumper


class _VectorLoader(Loader):
    """pgvector ``vector`` values in binary results as float32 NumPy arrays."""

    format = Format.BINARY

    def load(self, data: Any) -> np.ndarray:
        dim = struct.unpack_from(">H", data)[0]
        return np.frombuffer(data, dtype=">f4", count=dim, offset=4).astype(np.float32)


@dataclass(frozen=True, slots=True)
class _TxConn:
    """A connection inside a write transaction, with its pipeline and read cache.

    The cache holds the raw rows of state-table SELECTs made in this
    transaction. It is exact, not a heuristic: every state-table write in the
    database happens inside a write transaction holding the chain lock, which
    this one holds, so until commit the only changes to those tables are this
    transaction's own, and each of them drops the cached reads of its table.
    It spares the engine's repeated reads (namespace settings, schemas, the
    principal) a round trip each, which would otherwise drain the pipeline.
    """

    conn: psycopg.Connection[Any]
    pipeline: psycopg.Pipeline
    cache: dict[tuple[Any, ...], tuple[str, list[tuple[Any, ...]]]] = field(
        default_factory=dict)

    def forget(self, table: str) -> None:
        for key in [k for k, (t, _) in self.cache.items() if t == table]:
            del self.cache[key]


class _Rows:
    """Cached rows with the slice of the cursor API the shared SQL uses."""

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self._rows = rows
        self._pos = 0

    def fetchone(self) -> tuple[Any, ...] | None:
        if self._pos >= len(self._rows):
            return None
        self._pos += 1
        return self._rows[self._pos - 1]

    def fetchmany(self, size: int = 1) -> list[tuple[Any, ...]]:
        out = self._rows[self._pos:self._pos + size]
        self._pos += len(out)
        return out

    def fetchall(self) -> list[tuple[Any, ...]]:
        out = self._rows[self._pos:]
        self._pos = len(self._rows)
        return out

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.fetchall())


_SELECT_FROM = re.compile(r"^\s*SELECT\b.*?\bFROM\s+(\w+)", re.IGNORECASE | re.DOTALL)
_WRITES_TO = re.compile(r"^\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(\w+)", re.IGNORECASE)
