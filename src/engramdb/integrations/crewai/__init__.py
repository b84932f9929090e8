"""CrewAI's unified memory kept in EngramDB.

::

    import engramdb
    from engramdb.integrations.crewai import use_engramdb

    use_engramdb(engramdb.open("crew.db"))      # every Memory() built afterwards
    crew = Crew(agents=[...], tasks=[...], memory=True)

Needs ``pip install 'engramdb[crewai]'`` (CrewAI pins mcp 1.x, so it lives in
its own environment: ``make test-crewai``).
"""

from __future__ import annotations

from typing import Any

try:
    import crewai.memory.storage.factory as _factory
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "engramdb.integrations.crewai needs CrewAI: pip install 'engramdb[crewai]'"
    ) from exc

from engramdb.integrations.crewai._storage import EngramStorage


def use_engramdb(db: Any, *, root: str = "crewai") -> EngramStorage:
    """Make every CrewAI ``Memory`` built from now on (``Crew(memory=True)`` too) use
    EngramDB, through CrewAI's storage factory; returns the shared backend.

    ``crewai.memory.storage.factory.set_memory_storage_factory(None)`` undoes it.
    """
    storage = EngramStorage(db, root=root)
    _factory.set_memory_storage_factory(lambda _spec: storage)
    return storage


__all__ = ["EngramStorage", "use_engramdb"]
