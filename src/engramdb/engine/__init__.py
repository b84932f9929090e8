"""The engine: the one facade every door calls (see DESIGN.md, docs/architecture.md).

``database`` is the composition root, ``session`` the facade of one principal;
the services behind it are wired in ``services``, and every state change goes
through the one commit path in ``_commit``.
"""

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
