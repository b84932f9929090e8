"""The memory layers as services: working blocks, episodes, procedures, the context builder.

The database composes one :class:`Layers`; the session's layer methods
validate nothing themselves and delegate here. Storage is the memory model
wherever the content is agent-written text (blocks, episodes, summaries,
procedures are ``memories`` rows), plus three small tables: ``tool_outcomes``,
``procedure_outcomes`` and ``derivations`` (see ``storage/schema.py``).
"""

from __future__ import annotations

from engramdb.engine.layers.blocks import Blocks
from engramdb.engine.layers.context import ContextBuilder, Decay
from engramdb.engine.layers.episodes import Episodes
from engramdb.engine.layers.procedures import Procedures
from engramdb.engine.recall import Recall
from engramdb.engine.resources import Resources
from engramdb.engine.trust import TrustEngine

__all__ = ["Layers"]


class Layers:
    """The layer services, composed: blocks, episodes, procedures and the context builder."""

    def __init__(self, res: Resources, trust: TrustEngine, recall: Recall,
                 decay: Decay | None = None) -> None:
        self.blocks = Blocks(res, trust)
        self.episodes = Episodes(res, trust)
        self.procedures = Procedures(res, trust, recall)
        self.context = ContextBuilder(res, recall, self.blocks, self.episodes, self.procedures,
                                      decay)
