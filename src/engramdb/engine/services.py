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
``reads``     ``get``, ``history`` and the change feed, read-audited
``log``       verification, checkpoints and proofs
``lifecycle`` policies, legal holds, reinforcement, ``maintain``, ``restore``
``erasure``   ``forget``: content out of every version, index and file
``layers``    working blocks, episodes, procedures and tools, the context builder
============  ==============================================================
"""

from __future__ import annotations

from engramdb.engine.checkpoints import Checkpoints
from engramdb.engine.decisions import Decisions
from engramdb.engine.erasure import Erasure
from engramdb.engine.inbox import ConflictInbox
from engramdb.engine.knowledge import Knowledge
from engramdb.engine.layers import Layers
from engramdb.engine.layers.context import Decay
from engramdb.engine.lifecycle import Lifecycle
from engramdb.engine.reads import MemoryReads
from engramdb.engine.recall import Recall
from engramdb.engine.resources import Resources
from engramdb.engine.trust import TrustEngine

__all__ = ["Services"]


class Services:
    """Every service of one database handle, wired together."""

    def __init__(self, res: Resources) -> None:
        self.res = res
        self.trust = TrustEngine(res)
        self.reads = MemoryReads(res)
        self.inbox = ConflictInbox(res)
        self.recall = Recall(res, self.inbox)
        self.decisions = Decisions(res, self.recall)
        self.knowledge = Knowledge(res, self.recall)
        self.log = Checkpoints(res)
        self.lifecycle = Lifecycle(res)
        self.erasure = Erasure(res)
        # The context builder weighs recalled items by decayed relevance and
        # reinforces what it shows, as recall does (lifecycle policies).
        self.layers = Layers(res, self.trust, self.recall,
                             Decay(self.lifecycle.rerank, self.lifecycle.reinforce))
