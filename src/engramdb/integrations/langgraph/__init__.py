"""LangGraph's long-term memory (``BaseStore``) kept in EngramDB.

::

    import engramdb
    from engramdb.integrations.langgraph import EngramStore

    store = EngramStore(engramdb.open("graph.db"))
    graph = builder.compile(store=store)

Needs ``pip install 'engramdb[langgraph]'``.
"""

try:
    import langgraph.store.base  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "engramdb.integrations.langgraph needs LangGraph: pip install 'engramdb[langgraph]'"
    ) from exc

from engramdb.integrations.langgraph._items import EngramItem, EngramSearchItem
from engramdb.integrations.langgraph._store import ENGRAMDB_EMBEDDER, EngramStore

__all__ = ["ENGRAMDB_EMBEDDER", "EngramItem", "EngramSearchItem", "EngramStore"]
