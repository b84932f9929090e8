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
    BlockTooLarge,
    Busy,
    ConflictError,
    ContradictionError,
    EmbedderMismatch,
    EngramError,
    IdempotencyKeyReused,
    InvalidArguments,
    InvalidInput,
    LLMNotConfigured,
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
from engramdb.model_layers import ProcedureInfo, Recommendation, ToolStats
from engramdb.retrieval.chat import ChatLLM

__version__ = "0.1.0"

__all__ = [
    "BlockTooLarge",
    "Busy",
    "ChatLLM",
    "ConflictError",
    "ContradictionError",
    "Database",
    "EmbedderMismatch",
    "EngineConfig",
    "EngramError",
    "Event",
    "Hit",
    "IdempotencyKeyReused",
    "InvalidArguments",
    "InvalidInput",
    "LLMNotConfigured",
    "Memory",
    "MemoryDraft",
    "NotFound",
    "PermissionDenied",
    "ProcedureInfo",
    "RecallResult",
    "Receipt",
    "ReceiptItem",
    "Recommendation",
    "Session",
    "StorageError",
    "ToolStats",
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
