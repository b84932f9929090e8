"""The lifecycle queries of the SQL backends: what is due, and which events carried content.

Used by :class:`engramdb.storage.sql.SqlStorage` (``maintain`` and ``forget``);
each reads by index, so its work follows what is due, not the table size.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from engramdb.storage import sql as _sql  # a cycle by design: used only at call time
from engramdb.storage.base import RawEvent
from engramdb.storage.schema import TABLES

__all__ = ["due_to_expire", "find_events", "mentioning", "namespaces_since", "recorded_between",
           "used_between"]

Row = dict[str, Any]


def _memory_rows(storage: Any, where: str, params: Sequence[Any], order: str, limit: int
                 ) -> list[Row]:
    spec = TABLES["memories"]
    cols = list(spec.columns)
    with storage._read_conn() as conn:
        cur = storage._exec(conn, f"SELECT {', '.join(cols)} FROM memories WHERE {where} "
                               f"ORDER BY {order} LIMIT {int(limit)}", params)
        return [_sql.decode_row(spec, cols, r) for r in cur.fetchall()]

def due_to_expire(storage: Any, now: int, limit: int) -> list[Row]:
    return _memory_rows(storage,
        "tx_to IS NULL AND expires_at IS NOT NULL AND expires_at <= ? "
        "AND status IN ('active', 'quarantined')", [now], "expires_at, id", limit)

def recorded_between(storage: Any, after: int, until: int, limit: int) -> list[Row]:
    return _memory_rows(storage,
        "tx_to IS NULL AND recorded_at > ? AND recorded_at <= ? AND status = 'active'",
        [after, until], "recorded_at, id", limit)

def used_between(storage: Any, after: int, until: int, limit: int) -> list[Row]:
    spec = TABLES["memory_usage"]
    cols = list(spec.columns)
    with storage._read_conn() as conn:
        cur = storage._exec(conn, f"SELECT {', '.join(cols)} FROM memory_usage WHERE "
                               f"last_used > ? AND last_used <= ? ORDER BY last_used, id "
                               f"LIMIT {int(limit)}", [after, until])
        return [_sql.decode_row(spec, cols, r) for r in cur.fetchall()]

def namespaces_since(storage: Any, tx: int) -> list[str]:
    with storage._read_conn() as conn:
        since, params = storage.dialect_impl.changed_since(int(tx))
        cur = storage._exec(conn, f"SELECT DISTINCT namespace FROM memories WHERE {since}",
                            params)
        return sorted(r[0] for r in cur.fetchall())

def find_events(storage: Any, subject_refs: Sequence[str], txs: Sequence[int]) -> list[RawEvent]:
    out: dict[int, RawEvent] = {}
    cols = ", ".join("e." + c.strip() for c in _sql.EVENT_COLUMNS.split(","))
    with storage._read_conn() as conn:
        for column, values in (("subject_ref", list(subject_refs)),
                               ("tx", sorted({int(t) for t in txs}))):
            for i in range(0, len(values), 500):
                chunk = values[i:i + 500]
                cur = storage._exec(
                    conn,
                    f"SELECT {cols}, p.salt, p.payload FROM events e LEFT JOIN "
                    f"event_payloads p ON p.seq = e.seq WHERE e.{column} IN "
                    f"({', '.join('?' * len(chunk))})", chunk)
                for r in cur.fetchall():
                    out[r[0]] = _sql._raw_event(r)
    return [out[k] for k in sorted(out)]



def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def mentioning(storage: Any, table: str, columns: Sequence[str], needle: str) -> list[Row]:
    """Rows of ``table`` whose ``columns`` contain ``needle`` (as text, or escaped
    inside JSON text): a superset, which the caller narrows (SQLite's ``LIKE``
    ignores ASCII case). A scan, but in the database, never in Python."""
    spec = TABLES[table]
    cols = list(spec.columns)
    forms = sorted({_like(needle), _like(json.dumps(needle, ensure_ascii=False)[1:-1])})
    cond = " OR ".join(f"{c} LIKE ? ESCAPE '\\'" for c in columns for _ in forms)
    params = [f for _ in columns for f in forms]
    with storage._read_conn() as conn:
        cur = storage._exec(conn, f"SELECT {', '.join(cols)} FROM {spec.name} WHERE {cond}",
                            params)
        return [_sql.decode_row(spec, cols, r) for r in cur.fetchall()]
