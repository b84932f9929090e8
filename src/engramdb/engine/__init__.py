"""The engine: the one facade every door calls (see DESIGN.md)."""

from engramdb.engine.database import Database, open_database
from engramdb.engine.rows import EngineConfig
from engramdb.engine.session import Session, Transaction

__all__ = ["Database", "EngineConfig", "Session", "Transaction", "open_database"]
