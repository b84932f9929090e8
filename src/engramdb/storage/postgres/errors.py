"""Translation of psycopg errors into the EngramDB error tree.

Everything the driver raises is caught at the storage boundary and turned
into a :class:`~engramdb.errors.StorageError` (or, for values PostgreSQL
cannot hold, an :class:`~engramdb.errors.InvalidInput`), chained with
``from`` so the cause stays in tracebacks but never reaches a client's wire
form. Errors that a retry can cure (a lost connection, a lock wait that
timed out, a deadlock, a serialization failure) carry ``retryable=True`` and
a message that says to retry.
"""

from __future__ import annotations

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import PoolTimeout

from engramdb.errors import Busy, EngramError, InvalidInput, StorageError

__all__ = ["is_connection_loss", "translate"]

# SQLSTATE classes: 08 connection exception, 57P0x operator intervention (shutdown,
# crash, cannot connect now), 53 insufficient resources (too many connections).
_CONNECTION_STATES = ("08", "57P01", "57P02", "57P03", "53")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def is_connection_loss(exc: BaseException) -> bool:
    """True when ``exc`` means the connection (or the server) went away."""
    if isinstance(exc, PoolTimeout | psycopg.InterfaceError):
        return True
    if not isinstance(exc, psycopg.OperationalError) or isinstance(
            exc, pg_errors.PipelineAborted):
        return False
    state = getattr(exc, "sqlstate", None)
    if state is None:
        # Raised by libpq itself: "server closed the connection unexpectedly", ...
        return True
    return state.startswith(_CONNECTION_STATES)


def translate(exc: BaseException, *, committing: bool = False) -> EngramError:
    """The EngramDB error to raise (``from exc``) for a driver or pool error.

    Args:
        exc: what psycopg or psycopg_pool raised.
        committing: the error came from COMMIT, so the write's outcome is unknown.
    """
    if isinstance(exc, EngramError):
        return exc
    detail = _first_line(exc)
    if committing and is_connection_loss(exc):
        return StorageError(
            "the connection to PostgreSQL was lost while committing, so the write may or "
            "may not have been applied; retry it with the same idempotency_key to be safe",
            retryable=True,
        )
    if isinstance(exc, PoolTimeout):
        return StorageError(
            f"no PostgreSQL connection became available ({detail}); the server may be down "
            "or every pooled connection busy: retry the request, or raise pool_max_size",
            retryable=True,
        )
    if isinstance(exc, pg_errors.PipelineAborted):
        return StorageError(
            "an earlier statement of this write failed, so PostgreSQL aborted the rest; "
            "nothing was written: retry the request"
        )
    if isinstance(exc, pg_errors.LockNotAvailable):
        return Busy(
            "another writer held the database lock longer than lock_timeout; nothing was "
            "written: retry the request")
    if isinstance(exc, pg_errors.SerializationFailure | pg_errors.DeadlockDetected):
        return Busy(
            f"PostgreSQL aborted the transaction to resolve a conflict ({detail}); "
            "retry the request")
    if isinstance(exc, pg_errors.QueryCanceled):
        return StorageError(
            f"PostgreSQL cancelled the statement ({detail}); retry the request, or raise "
            "statement_timeout if it keeps happening",
            retryable=True,
        )
    if is_connection_loss(exc):
        return StorageError(
            f"lost the connection to PostgreSQL ({detail}); nothing was written: "
            "retry the request once the server is reachable",
            retryable=True,
        )
    if isinstance(exc, pg_errors.InsufficientPrivilege):
        return StorageError(
            f"PostgreSQL refused the operation for lack of privileges ({detail}); "
            "grant the EngramDB role ownership of its schema"
        )
    if isinstance(exc, pg_errors.UndefinedTable | pg_errors.UndefinedFunction
                  | pg_errors.UndefinedObject):
        return StorageError(
            f"the EngramDB schema is missing or incomplete ({detail}); open the database "
            "with engramdb.open(url), which creates and migrates it"
        )
    if isinstance(exc, psycopg.IntegrityError):
        return StorageError(f"constraint violated: {detail}")
    if isinstance(exc, psycopg.DataError) and "NUL" in detail:
        return InvalidInput(
            "PostgreSQL text cannot contain NUL (\\x00) characters; remove them and retry"
        )
    if isinstance(exc, psycopg.DataError):
        return StorageError(f"PostgreSQL rejected a value: {detail}")
    return StorageError(f"PostgreSQL error: {detail}")
