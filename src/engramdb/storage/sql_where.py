"""The WHERE clauses the SQL backends share: equality maps and recall filters.

:func:`select_rows` applies an equality map to rows held in memory, exactly as
the SQL would (the configuration rows a writer keeps, storage/sql.py).

Pure string building with ``?`` placeholders (a backend's :class:`Dialect`
rewrites them); kept apart from :mod:`engramdb.storage.sql` so the write
path's module stays readable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from engramdb.codec import to_micros
from engramdb.errors import StorageError
from engramdb.model import RecallFilter
from engramdb.storage.base import Span
from engramdb.storage.schema import TableSpec

__all__ = ["Dialect", "memory_where", "select_rows", "where_eq"]


class Dialect:
    """The few SQL differences between backends."""

    name = "sql"
    placeholder = "?"
    lock_head = ""  # appended to the head SELECT inside a write transaction
    lock_head_now = ""  # the same, failing at once if another writer holds the lock

    def q(self, sql: str) -> str:
        return sql

    def json_equals(self, column: str, key: str, value: Any) -> tuple[str, list[Any]]:
        raise NotImplementedError

    def changed_since(self, tx: int, alias: str = "") -> tuple[str, list[int]]:
        """The condition "memory row written or changed after transaction ``tx``" and its
        parameters (``alias``: the table's alias with its dot)."""
        return f"{alias}row_tx > ?", [tx]



def where_eq(dialect: Dialect, where: Mapping[str, Any]) -> tuple[str, list[Any]]:
    parts: list[str] = []
    params: list[Any] = []
    for col, value in where.items():
        if value is None:
            parts.append(f"{col} IS NULL")
        elif isinstance(value, Span):
            for op, bound in ((">=", value.at_least), ("<", value.below)):
                if bound is not None:
                    parts.append(f"{col} {op} ?")
                    params.append(bound)
        elif isinstance(value, (list, tuple, frozenset, set)):
            values = list(value)
            if not values:
                parts.append("1 = 0")
            else:
                parts.append(f"{col} IN ({', '.join('?' * len(values))})")
                params.extend(values)
        else:
            parts.append(f"{col} = ?")
            params.append(value)
    return (" AND ".join(parts) if parts else "1 = 1"), params


def memory_where(flt: RecallFilter, dialect: Dialect, alias: str = "m") -> tuple[str, list[Any]]:
    """The SQL condition (``?`` placeholders) for a :class:`RecallFilter`."""
    a = f"{alias}." if alias else ""
    parts: list[str] = []
    params: list[Any] = []

    def add_in(col: str, values: Sequence[Any] | None) -> None:
        if values is None:
            return
        if not values:
            parts.append("1 = 0")
            return
        parts.append(f"{a}{col} IN ({', '.join('?' * len(values))})")
        params.extend(values)

    if flt.as_of is None:
        if not flt.include_superseded:
            parts.append(f"{a}tx_to IS NULL")
    else:
        parts.append(f"{a}tx_from <= ?")
        params.append(flt.as_of)
        if not flt.include_superseded:
            parts.append(f"({a}tx_to IS NULL OR {a}tx_to > ?)")
            params.append(flt.as_of)
    add_in("namespace", flt.namespaces)
    add_in("layer", flt.layers)
    add_in("author", flt.authors)
    if flt.statuses:
        add_in("status", flt.statuses)
    if flt.valid_at is not None:
        v = to_micros(flt.valid_at)
        parts.append(f"{a}valid_from <= ? AND ({a}valid_to IS NULL OR {a}valid_to > ?)")
        params.extend([v, v])
    for col, op, value in (
        ("recorded_at", ">=", flt.recorded_after),
        ("recorded_at", "<", flt.recorded_before),
        ("valid_from", ">=", flt.valid_after),
        ("valid_from", "<", flt.valid_before),
    ):
        if value is not None:
            parts.append(f"{a}{col} {op} ?")
            params.append(to_micros(value))
    for col in ("subject", "predicate", "session"):
        value = getattr(flt, col)
        if value is not None:
            parts.append(f"{a}{col} = ?")
            params.append(value)
    for key, value in flt.metadata:
        frag, extra = dialect.json_equals(f"{a}metadata", key, value)
        parts.append(frag)
        params.extend(extra)
    return (" AND ".join(parts) if parts else "1 = 1"), params


def select_rows(spec: TableSpec, rows: Sequence[Sequence[Any]], where: Mapping[str, Any],
                order_by: str | None = None, limit: int | None = None) -> list[Sequence[Any]]:
    """The raw ``rows`` of ``spec`` that :meth:`SqlStorage._select` would return for
    ``where`` (``None``: IS NULL, a list: IN), ``order_by`` and ``limit``, filtered here."""
    names = list(spec.columns)
    for col in list(where) + ([order_by.split()[0]] if order_by else []):
        if col not in spec.columns:
            raise StorageError(f"table {spec.name} has no column {col!r}")
    tests: list[Callable[[Sequence[Any]], bool]] = []
    for col, value in where.items():
        tests.append(_row_test(names.index(col), value))
    out = [r for r in rows if all(test(r) for test in tests)]
    if order_by:
        col, *desc = order_by.split()
        i = names.index(col)
        out.sort(key=lambda r: (r[i] is not None, r[i]),
                 reverse=bool(desc) and desc[0].upper() == "DESC")
    return out if limit is None else out[:int(limit)]


def _row_test(i: int, value: Any) -> Callable[[Sequence[Any]], bool]:
    """Column ``i`` of a raw row against one ``where`` value, as :func:`where_eq` reads it
    (SQL's NULL never passes a comparison)."""
    if value is None:
        return lambda r: r[i] is None
    if isinstance(value, Span):
        low, high = value.at_least, value.below
        return lambda r: r[i] is not None and (low is None or r[i] >= low) and (
            high is None or r[i] < high)
    if isinstance(value, (list, tuple, frozenset, set)):
        allowed = frozenset(value)
        return lambda r: r[i] in allowed
    return lambda r: r[i] == value
