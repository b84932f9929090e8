"""EngramDB: a memory-native database for multi-agent AI systems.

::

    import engramdb
    db = engramdb.open("engram.db")
    m = db.remember("Company X outlook is positive", namespace="acme/research")
    db.recall("outlook for X").hits[0].memory.text
"""

from engramdb.client import connect, connect_async
from engramdb.engine import Database, EngineConfig, Session, Transaction
from engramdb.engine import open_database as open
from engramdb.errors import (
    Busy,
    ConflictError,
    ContradictionError,
    EmbedderMismatch,
    EngramError,
    IdempotencyKeyReused,
    InvalidInput,
    NotFound,
    PermissionDenied,
    StorageError,
    Unauthenticated,
    VersionConflict,
)
from engramdb.model import (
    Event,
    Hit,
    Memory,
    MemoryDraft,
    RecallResult,
    Receipt,
    ReceiptItem,
    VerifyReport,
)

__version__ = "0.1.0"

__all__ = [
    "Busy",
    "ConflictError",
    "ContradictionError",
    "Database",
    "EmbedderMismatch",
    "EngineConfig",
    "EngramError",
    "Event",
    "Hit",
    "IdempotencyKeyReused",
    "InvalidInput",
    "Memory",
    "MemoryDraft",
    "NotFound",
    "PermissionDenied",
    "RecallResult",
    "Receipt",
    "ReceiptItem",
    "Session",
    "StorageError",
    "Transaction",
    "Unauthenticated",
    "VerifyReport",
    "VersionConflict",
    "__version__",
    "connect",
    "connect_async",
    "open",
]


def __getattr__(name: str) -> object:
    # Deprecated alias: ``engramdb.Conflict`` was the exception now called ConflictError;
    # the conflict record is engramdb.model.Conflict.
    if name == "Conflict":
        import warnings

        warnings.warn("engramdb.Conflict is now engramdb.ConflictError (the conflict record "
                      "is engramdb.model.Conflict)", DeprecationWarning, stacklevel=2)
        return ConflictError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
