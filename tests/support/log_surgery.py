"""What an attacker with write access to a SQLite file can do to the log.

Used by the checkpoint and tamper-battery tests to rewrite history the hard
way: change an event, then recompute every commitment and chain hash after
it and the chain head, so that the log is internally consistent again and
``verify()`` alone cannot tell. Only a checkpoint signed before the rewrite
can.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from engramdb.codec import GENESIS_HASH, canonical, chain_hash

__all__ = ["connect", "recompute_chain", "rewrite_event", "rewrite_memory_text"]

_ENVELOPE = ("seq", "tx", "kind", "namespace", "actor", "recorded_at", "subject_ref")


def connect(path: Path | str) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    return conn


def recompute_chain(conn: sqlite3.Connection, from_seq: int) -> None:
    """Recompute commitments and hashes of events ``>= from_seq`` and the chain head."""
    prev = GENESIS_HASH if from_seq <= 1 else conn.execute(
        "SELECT hash FROM events WHERE seq = ?", (from_seq - 1,)).fetchone()[0]
    rows = conn.execute(
        "SELECT e.seq, e.tx, e.kind, e.namespace, e.actor, e.recorded_at, e.subject_ref, "
        "p.salt, p.payload FROM events e JOIN event_payloads p ON p.seq = e.seq "
        "WHERE e.seq >= ? ORDER BY e.seq", (from_seq,)).fetchall()
    last = None
    for row in rows:
        envelope: dict[str, Any] = dict(zip(_ENVELOPE, row[:7], strict=True))
        salt, payload = row[7], row[8]
        envelope["commitment"] = hashlib.sha256(bytes(salt) + payload.encode()).hexdigest()
        digest = chain_hash(prev, envelope)
        conn.execute("UPDATE events SET commitment = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                     (envelope["commitment"], prev, digest, envelope["seq"]))
        prev = digest
        last = envelope
    if last is not None:
        conn.execute("UPDATE chain_head SET seq = ?, hash = ?, tx = ?, recorded_at = ? "
                     "WHERE id = 1", (last["seq"], prev, last["tx"], last["recorded_at"]))


def rewrite_event(path: Path | str, seq: int, *, envelope: dict[str, Any] | None = None,
                  payload: dict[str, Any] | None = None) -> None:
    """Change an event's envelope fields and/or payload, then re-chain consistently."""
    conn = connect(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        for column, value in (envelope or {}).items():
            conn.execute(f"UPDATE events SET {column} = ? WHERE seq = ?", (value, seq))
        if payload is not None:
            conn.execute("UPDATE event_payloads SET payload = ? WHERE seq = ?",
                         (canonical(payload).decode(), seq))
        recompute_chain(conn, seq)
        conn.execute("COMMIT")
    finally:
        conn.close()


def rewrite_memory_text(path: Path | str, seq: int, new_text: str) -> bool:
    """Change what a ``memory.remembered`` event says *and* the stored row, consistently.

    Returns:
        False if event ``seq`` does not insert a memory row.
    """
    conn = connect(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        payload = json.loads(conn.execute(
            "SELECT payload FROM event_payloads WHERE seq = ?", (seq,)).fetchone()[0])
        inserts = [e for e in payload.get("effects", [])
                   if e["op"] == "insert" and e["table"] == "memories"]
        if not inserts:
            conn.execute("ROLLBACK")
            return False
        row = inserts[0]["row"]
        row["text"] = new_text
        conn.execute("UPDATE memories SET text = ? WHERE id = ? AND version = ?",
                     (new_text, row["id"], row["version"]))
        conn.execute("UPDATE event_payloads SET payload = ? WHERE seq = ?",
                     (canonical(payload).decode(), seq))
        recompute_chain(conn, seq)
        conn.execute("COMMIT")
        return True
    finally:
        conn.close()
