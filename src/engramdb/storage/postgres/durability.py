"""Early lock release: writers do not wait for each other's WAL flush.

Every write of a database extends one hash chain, so writers serialise on the
chain-head row lock (``SELECT ... FROM chain_head ... FOR UPDATE``). With
``synchronous_commit = on`` that lock used to be held through COMMIT's WAL
flush (5 to 7 ms on the test machine's disk), so one chain carried at most one
flush's worth of writes at a time and PostgreSQL's group commit could never
overlap two writers.

Now a write transaction runs with ``SET LOCAL synchronous_commit = off``:
COMMIT returns, and releases the lock, once its commit record is in the WAL
buffers, and the next writer builds on it at once. The writer is acknowledged
only after :data:`DURABLE`, the durability barrier, whose own synchronous
commit flushes the WAL past that commit record. The WAL is one sequence, so
one flush covers every commit before it: writers waiting at their barriers
share fsyncs (PostgreSQL's group commit, across processes and hosts), and no
write can be durable while one it built on is not. This is early lock release
(DeWitt et al. 1984; Johnson et al., "Aether", VLDB 2010): the order, the
chain and every check inside the transaction are exactly as before; only the
moment the lock is let go moves.

What readers see:

* The log is never shown before it is durable: the storage's ``head`` and
  ``events`` (the change feed, export, checkpoints, ``verify``) run the
  barrier before they return, so a cursor, a signed head or an export never
  holds an event a crash could take back.
* Reads of current state (``get``, ``recall``) may see a write during its
  flush, about a millisecond before its writer is acknowledged. If the server
  crashes in that window the write is gone and its writer was told the
  outcome is unknown (retry with the same ``idempotency_key``); a write built
  on it is gone too, as it came later in the WAL.

The server's ``synchronous_commit`` still decides what durable means (a local
flush, or synchronous standbys too): the barrier commits under the session's
setting. When that setting is ``off`` there is nothing to wait for, and
writes commit as the server says.
"""

from __future__ import annotations

from typing import Any

import psycopg

from engramdb.storage.postgres.ann import scalar

__all__ = ["DURABLE", "can_release_early"]

# Flush the WAL up to now (past every commit this connection made or saw), unless
# it is flushed already. The logical message gives the statement a transaction id
# and a WAL record, so its commit flushes under the session's synchronous_commit;
# when nothing is unflushed, no transaction id is taken and nothing is written.
DURABLE = ("SELECT CASE WHEN pg_current_wal_insert_lsn() > pg_current_wal_flush_lsn() "
           "THEN pg_logical_emit_message(true, 'engramdb', '') END")


def can_release_early(conn: psycopg.Connection[Any]) -> bool:
    """Whether writes may release the chain lock before their WAL flush.

    Only when the session commits synchronously (otherwise there is no flush
    to wait for) and the role may run the durability barrier.
    """
    if str(scalar(conn, "SHOW synchronous_commit")) == "off":
        return False
    try:
        conn.execute("SELECT pg_logical_emit_message(true, 'engramdb', 'probe')")
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True
