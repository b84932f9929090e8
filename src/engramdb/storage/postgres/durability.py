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
only after the durability barrier (:func:`durability_barrier`), sent in the
same round trip right after COMMIT, which flushes the WAL past that commit
record. The WAL is one sequence, so
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

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import psycopg

from engramdb.storage.postgres.ann import scalar

__all__ = ["durability_barrier", "transaction"]

# Flush the WAL up to now (past every commit this connection made or saw), unless
# it is flushed already; when it is, nothing is written. The transactional form
# takes a transaction id, so its commit flushes under the session's
# synchronous_commit and waits for synchronous standbys; the flushing form
# (PostgreSQL 17+) writes one record and flushes it, without a transaction.
_UNFLUSHED = "pg_current_wal_insert_lsn() > pg_current_wal_flush_lsn()"
_TRANSACTIONAL = (f"SELECT CASE WHEN {_UNFLUSHED} "
                  "THEN pg_logical_emit_message(true, 'engramdb', '') END")
_FLUSHING = (f"SELECT CASE WHEN {_UNFLUSHED} "
             "THEN pg_logical_emit_message(false, 'engramdb', '', true) END")


def durability_barrier(conn: psycopg.Connection[Any]) -> str:
    """The barrier statement writes of this session wait on ("": none, commit as usual).

    None when the session does not commit synchronously (there is no flush to
    wait for) or the role may not write a logical message; the flushing form
    when the server has it and no synchronous standbys to wait for.
    """
    if str(scalar(conn, "SHOW synchronous_commit")) == "off":
        return ""
    flushing = (int(scalar(conn, "SHOW server_version_num")) >= 170000
                and not str(scalar(conn, "SHOW synchronous_standby_names")).strip())
    barrier = _FLUSHING if flushing else _TRANSACTIONAL
    try:
        conn.execute(barrier.replace(_UNFLUSHED, "true"))  # the role may run it
    except psycopg.errors.InsufficientPrivilege:
        return ""
    return barrier


@contextmanager
def transaction(conn: psycopg.Connection[Any], pipeline: psycopg.Pipeline,
                barrier: str, *, durable: bool = True) -> Iterator[None]:
    """One write transaction in ``pipeline``; with a ``barrier``, released early.

    The transaction commits with ``synchronous_commit = off`` (COMMIT returns
    once its record is in the WAL buffers, releasing the chain lock) and the
    barrier follows COMMIT in the same round trip, so the block's caller is
    acknowledged only once the WAL is flushed past it. An error rolls back.

    ``durable=False`` (a deferred write) leaves the barrier out: the WAL writer
    flushes the commit within ``wal_writer_delay``, or the next barrier does.
    Only with a barrier: ``head`` and ``events`` run it, so the log still never
    shows a deferred write before it is flushed.
    """
    conn.execute("BEGIN")
    if barrier:
        conn.execute("SET LOCAL synchronous_commit = off")
    try:
        yield
    except BaseException:
        with suppress(psycopg.Error):  # a lost connection is dropped by the pool
            conn.execute("ROLLBACK")
            pipeline.sync()
        raise
    conn.execute("COMMIT")
    if barrier and durable:
        conn.execute(barrier)
    pipeline.sync()
