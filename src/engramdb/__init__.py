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
    Conflict,
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
    "Conflict",
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
