"""The services of one database handle, built once and shared by every session.

Each service owns one concern and is handed what it needs; none inherits
from another. The composition root (:class:`~engramdb.engine.database.Database`)
builds one :class:`Services`; every :class:`~engramdb.engine.session.Session`
of that handle holds it and delegates to it after validating its arguments.

============  ==============================================================
``res``       shared resources: storage, embedder, config, judge, read audit
``trust``     conflict detection and policies inside writes; ``approve``
``inbox``     the conflict inbox, ``resolve``, the ``contested`` mark
``recall``    hybrid search, fused and marked, with a receipt
``decisions`` context packing, decisions, ``explain``, ``who_read``
``knowledge`` knowledge at T
``log``       verification, checkpoints and proofs
============  ==============================================================
"""

from __future__ import annotations

from engramdb.engine.checkpoints import Checkpoints
from engramdb.engine.decisions import Decisions
from engramdb.engine.inbox import ConflictInbox
from engramdb.engine.knowledge import Knowledge
from engramdb.engine.recall import Recall
from engramdb.engine.resources import Resources
from engramdb.engine.trust import TrustEngine

__all__ = ["Services"]


class Services:
    """Every service of one database handle, wired together."""

    def __init__(self, res: Resources) -> None:
        self.res = res
        self.trust = TrustEngine(res)
        self.inbox = ConflictInbox(res)
        self.recall = Recall(res, self.inbox)
        self.decisions = Decisions(res, self.recall)
        self.knowledge = Knowledge(res, self.recall)
        self.log = Checkpoints(res)
