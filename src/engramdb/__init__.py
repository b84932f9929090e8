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
    Conflict,
    ContradictionError,
    EmbedderMismatch,
    EngramError,
    IdempotencyKeyReused,
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
    "ChatLLM",
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
