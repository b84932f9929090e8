"""Knowledge at a point in time: what an agent could have recalled at transaction T.

``knowledge(agent, at=T)`` evaluates the agent's grants as they stood at
``T`` (grant rows carry ``tx_from``/``tx_to``), its roles and status as they
stood then (replayed from the log by :class:`PrincipalTimeline`, since
``principals`` keeps only the current row), and reads memories as of ``T``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from engramdb.codec import check_chars
from engramdb.engine.access import Caller
from engramdb.engine.recall import Recall
from engramdb.engine.resources import Resources
from engramdb.engine.rows import PrincipalInfo, memory_from_row
from engramdb.errors import InvalidInput, NotFound
from engramdb.model import Memory, RecallResult
from engramdb.policy.acl import AccessControl

__all__ = ["Knowledge", "PrincipalTimeline"]


class PrincipalTimeline:
    """Each principal's row after every change to it, replayed from the log.

    ``principals`` holds only the current row; roles and status at an earlier
    transaction come from the events whose effects touched it. The replay is
    incremental (it remembers the last event it read), so repeated
    ``knowledge`` calls cost only the events written since.
    """

    def __init__(self) -> None:
        self._seq = 0
        self._rows: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        self._lock = threading.Lock()

    def at(self, storage: Any, name: str, tx: int) -> dict[str, Any] | None:
        """The principal's row as of transaction ``tx`` (``None``: not created yet)."""
        with self._lock:
            self._refresh(storage)
            history = self._rows.get(name, [])
        row = None
        for t, r in history:
            if t > tx:
                break
            row = r
        return row

    def _refresh(self, storage: Any) -> None:
        while batch := storage.events(after=self._seq, limit=5000):
            for ev in batch:
                if ev.payload is None or '"principals"' not in ev.payload:
                    continue
                for eff in json.loads(ev.payload).get("effects", []):
                    if eff.get("table") != "principals":
                        continue
                    if eff["op"] == "insert":
                        row = dict(eff["row"])
                    else:
                        prior = self._rows.get(str(eff["key"]["name"]))
                        if not prior:
                            continue
                        row = {**prior[-1][1], **eff["changes"]}
                    self._rows.setdefault(str(row["name"]), []).append((ev.tx, row))
            self._seq = batch[-1].seq


class Knowledge:
    """Knowledge at T for an admin caller."""

    def __init__(self, res: Resources, recall: Recall) -> None:
        self._res = res
        self._recall = recall
        self._timeline = PrincipalTimeline()

    def knowledge(
        self,
        caller: Caller,
        agent: str,
        *,
        at: int | datetime | str,
        query: str | None = None,
        namespace: str = "**",
        valid_at: datetime | str | None = None,
        k: int | None = None,
        layers: Sequence[str] | None = None,
    ) -> RecallResult | list[Memory]:
        """What ``agent`` could have recalled at transaction time ``at``.

        Public docs: :meth:`engramdb.Database.knowledge`.
        """
        t = caller.as_of(at)
        if t is None:
            raise InvalidInput("knowledge needs at=: a transaction number or a time", field="at")
        if not isinstance(agent, str) or not agent:
            raise InvalidInput("agent must be a principal name", field="agent")
        check_chars(agent, "agent")
        if query is not None and isinstance(query, str):
            check_chars(query, "query")
        if not self._res.storage.fetch("principals", {"name": agent}):
            raise NotFound(f"no principal {agent!r}", name=agent)
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise InvalidInput("k must be a positive integer", field="k")
        # Roles and status as they stood at T (a role change is a logged event),
        # and the grants that were in force at T: not today's.
        p = self._timeline.at(self._res.storage, agent, t)
        flt = caller.filter(namespace, layers, t, valid_at, None)  # validates; admin's view
        if p is None or p["status"] != "active":
            readable: tuple[str, ...] = ()  # not created yet, frozen or retired: no reads
        elif p["kind"] == "admin":
            readable = flt.namespaces or ()
        else:
            info = PrincipalInfo(name=agent, roles=tuple(p["roles"] or ()),
                                 trust=float(p["trust"]))
            acl = AccessControl(agent, self._res.grants_for(info, t))
            readable = tuple(ns for ns in flt.namespaces or () if acl.check("read", ns))
        flt = replace(flt, namespaces=readable)
        if query is not None:
            if not isinstance(query, str) or not query.strip():
                raise InvalidInput("query must be a non-empty string")
            result = self._recall.run(agent, query, flt, k or 10, t)
            self._res.read_audit.record(caller.name, result.receipt, result.memories)
            return result
        if flt.namespaces is not None and not flt.namespaces:
            return []
        return [memory_from_row(r, as_of=t)
                for r in self._res.storage.list_memories(flt, limit=k, order="recent")]
