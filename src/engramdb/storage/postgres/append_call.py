"""The ``CALL engram_append`` of a prepared write, sent through libpq directly.

A prepared single write is one statement with 22 parameters (migration 0032).
Sent through psycopg's cursor, the call paid more client CPU in the driver
(query conversion, one dumper per parameter, the cursor and its result
machinery, psycopg's own prepared-statement bookkeeping) than in building the
write: about a quarter of a writer's CPU, on the path 16 writer processes share
two cores on. Here the parameters are encoded once by :mod:`.prepared` (the
arrays and vectors binary, the rest text) and sent with ``PQsendQueryPrepared`` on a statement this
module prepares once per connection, and an error is raised as
the psycopg exception psycopg would have raised (same SQLSTATE, same
diagnostics), so callers translate it as before.

psycopg deallocates every prepared statement of a connection after a ROLLBACK
it sees (locked writes borrow the same pooled connections): a call that finds
the statement gone (SQLSTATE 26000, nothing ran) prepares it and runs again.

A single write's call waits in libpq itself (``PQexecPrepared``, which blocks
with the GIL released, so other threads run), not through psycopg's
``Connection.wait`` and its generator: one C call instead of a Python loop of
sends, polls and reads, 10-15 us less client CPU a call. A connection lost
meanwhile is raised as psycopg raises it (``OperationalError`` without a SQLSTATE:
the outcome is unknown, :func:`.errors.is_connection_loss`), never as an error
the server returned. A Ctrl-C during the call takes effect once it returns (the
write's outcome is then known).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.generators import execute
from psycopg.pq import ConnStatus, ExecStatus

__all__ = ["call_append", "run_prepared"]

_NAME = b"engramdb_append_0032"
# The procedure of migration 0032 (its body replaced by 0036, same signature, so the
# statement keeps its name), its 22 inputs in order (its 5 INOUT results last).
_SQL = (b"CALL engram_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, "
        b"$15, $16, $17, $18, $19, $20, $21, $22, NULL, NULL, NULL, NULL, NULL)")
_INT8, _INT4, _TEXT, _TEXTS, _BYTEAS, _INT8S = 20, 23, 25, 1009, 1001, 1016


@functools.lru_cache(maxsize=8)  # one list per vector type, not one per call
def _types(vector_oid: int) -> tuple[int, ...]:
    return (_INT8, _INT8, _TEXT, _TEXT, *[_TEXTS] * 9, _TEXT, _BYTEAS, _TEXTS, _TEXTS, _INT8S,
            vector_oid, _INT4, _TEXT, _TEXT)


# The numbers and single texts travel as text; the arrays ($5-$13, $15-$18) in
# PostgreSQL's binary array form and the vectors ($19) in pgvector's (prepared.py).
_FORMATS = [0] * 4 + [1] * 9 + [0] + [1] * 5 + [0] * 3
_TEXT_PARAMS = tuple(i for i, f in enumerate(_FORMATS) if not f)
_MISSING = b"26000"  # invalid_sql_statement_name: not prepared on this connection


def call_append(conn: psycopg.Connection[Any], params: Sequence[bytes | None],
                vector_oid: int) -> tuple[bytes, ...]:
    """Run ``engram_append`` with ``params`` on ``conn`` (autocommit); its one result row
    (seq, hash, tx, recorded_at, config_tx: never NULL), as text."""
    for i in _TEXT_PARAMS:  # as psycopg's own text dumpers refuse them (prepared.py checks
        param = params[i]  # the texts inside the binary arrays)
        if param is not None and b"\x00" in param:
            raise psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
    result = run_prepared(conn, _NAME, _SQL, _types(vector_oid), params, _FORMATS,
                          blocking=True)
    if result.status != _TUPLES_OK:
        raise pg_errors.error_from_result(result, encoding=conn.info.encoding)
    value = result.get_value  # five results, never NULL (o_seq .. o_config_tx)
    return (value(0, 0) or b"", value(0, 1) or b"", value(0, 2) or b"", value(0, 3) or b"",
            value(0, 4) or b"")


_FATAL, _TUPLES_OK = ExecStatus.FATAL_ERROR, ExecStatus.TUPLES_OK
_BAD = ConnStatus.BAD


def run_prepared(conn: psycopg.Connection[Any], name: bytes, sql: bytes, types: Sequence[int],
                 params: Sequence[bytes | None], formats: Sequence[int],
                 result_format: int = 0, blocking: bool = False) -> Any:
    """Run statement ``name`` (``sql``, parameters of ``types``) with ``params``; prepare
    it first on this connection if it is not (the server refused it at Bind: nothing
    ran). The libpq result, whatever its status. ``blocking``: wait in libpq
    (``PQexecPrepared``) rather than through psycopg's ``Connection.wait``."""
    run = _exec if blocking else _run
    with conn.lock:
        result = run(conn, name, params, formats, result_format)
        if result.status == _FATAL and _missing(result, name):
            _prepare(conn, name, sql, types)
            result = run(conn, name, params, formats, result_format)
    return result


def _missing(result: Any, name: bytes) -> bool:
    """Whether the call (which failed) failed because its statement is not prepared on
    this connection (the server refused it at Bind: nothing ran), not for an error
    inside the procedure."""
    return bool(result.error_field(pg_errors.DiagnosticField.SQLSTATE) == _MISSING
                and name in (result.error_field(pg_errors.DiagnosticField.MESSAGE_PRIMARY)
                             or b""))


def _run(conn: psycopg.Connection[Any], name: bytes, params: Sequence[bytes | None],
         formats: Sequence[int], result_format: int) -> Any:
    pgconn = conn.pgconn
    pgconn.send_query_prepared(name, params, param_formats=formats,
                               result_format=result_format)
    return conn.wait(execute(pgconn))[-1]


def _exec(conn: psycopg.Connection[Any], name: bytes, params: Sequence[bytes | None],
          formats: Sequence[int], result_format: int) -> Any:
    pgconn = conn.pgconn
    result = pgconn.exec_prepared(name, params,  # type: ignore[arg-type]  # None: NULL
                                  param_formats=formats,
                                  result_format=result_format)
    if result.status == _FATAL and pgconn.status == _BAD:
        # The connection went away (libpq's own message, no SQLSTATE): raised as
        # psycopg's wait raises it, so the caller knows the outcome is unknown.
        raise psycopg.OperationalError(
            f"consuming input failed: {pgconn.get_error_message()}")
    return result


def _prepare(conn: psycopg.Connection[Any], name: bytes, sql: bytes,
             types: Sequence[int]) -> None:
    pgconn = conn.pgconn
    pgconn.send_prepare(name, sql, param_types=types)
    result = conn.wait(execute(pgconn))[-1]
    if result.status != ExecStatus.COMMAND_OK:
        raise pg_errors.error_from_result(result, encoding=conn.info.encoding)
