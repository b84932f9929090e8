"""The engine: the one facade every door calls (see DESIGN.md)."""

from engramdb.engine.database import Database, import_database, open_database
from engramdb.engine.rows import EngineConfig
from engramdb.engine.session import Session, Transaction

__all__ = [
    "Database",
    "EngineConfig",
    "Session",
    "Transaction",
    "import_database",
    "open_database",
]
