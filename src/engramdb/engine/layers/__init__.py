"""The memory layers as services: working blocks, episodes, procedures, the context builder.

The database composes one :class:`Layers`; the session's layer methods
validate nothing themselves and delegate here. Storage is the memory model
wherever the content is agent-written text (blocks, episodes, summaries,
procedures are ``memories`` rows), plus three small tables: ``tool_outcomes``,
``procedure_outcomes`` and ``derivations`` (see ``storage/schema.py``).
"""

from __future__ import annotations

from engramdb.engine.layers.blocks import Blocks
from engramdb.engine.layers.episodes import Episodes
from engramdb.engine.layers.procedures import Procedures

__all__ = ["Layers"]


class Layers:
    """The three layer services, composed."""

    def __init__(self) -> None:
        self.blocks = Blocks()
        self.episodes = Episodes()
        self.procedures = Procedures()
