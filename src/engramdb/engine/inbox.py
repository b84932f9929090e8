"""The conflict inbox: listing, resolving, and the ``contested`` mark on hits.

Conflicts are recorded by :mod:`engramdb.engine.trust` inside the write that
found them; this service reads them back for the principal who asks (only
namespaces it may read), resolves them through the one commit path (the
winner stands, the others get a ``rejected`` version), and marks recall hits
that an open conflict involves.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Any

from engramdb.engine._commit import next_version
from engramdb.engine.access import Caller
from engramdb.engine.resources import Resources
from engramdb.engine.rows import conflict_from_row
from engramdb.errors import InvalidInput, NotFound
from engramdb.model import Conflict, Hit, check_glob
from engramdb.storage.base import Effect, Update

__all__ = ["ConflictInbox"]

_CHANGEABLE = ("active", "quarantined", "superseded")


class ConflictInbox:
    """Conflicts as the caller may see them, and their resolution."""

    def __init__(self, res: Resources) -> None:
        self._res = res

    def mark_contested(self, hits: tuple[Hit, ...], as_of: int | None) -> tuple[Hit, ...]:
        """Mark hits that an open conflict involves, naming their rivals.

        A conflict lives in one namespace, so a reader who sees the hit may see
        its rivals too. ``as_of`` reads see conflicts as they stood then.
        """
        if not hits:
            return hits
        spaces = sorted({h.memory.namespace for h in hits})
        storage = self._res.storage
        rows = [r for r in storage.fetch("conflicts", {"namespace": spaces, "status": "open"})
                if as_of is None or int(r["tx"]) <= as_of]
        if as_of is not None:
            rows += [r for r in storage.fetch("conflicts",
                                              {"namespace": spaces, "status": "resolved"})
                     if int(r["tx"]) <= as_of < int(r["resolved_tx"])]
        rivals: dict[str, set[str]] = defaultdict(set)
        for r in rows:
            ids = {str(m["id"]) for m in r["memories"]}
            for i in ids:
                rivals[i] |= ids - {i}
        if not rivals:
            return hits
        return tuple(
            replace(h, contested=True, rivals=tuple(sorted(rivals[h.memory.id])))
            if rivals.get(h.memory.id) else h for h in hits)

    def conflicts(self, caller: Caller, namespace: str = "**", status: str | None = "open",
                  limit: int = 100) -> list[Conflict]:
        """Conflicts in readable namespaces matching ``namespace``, oldest first."""
        check_glob(namespace)
        if status not in (None, "open", "resolved"):
            raise InvalidInput("status must be 'open', 'resolved' or None for both",
                               field="status")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise InvalidInput("limit must be an integer from 1 to 10000", field="limit")
        spaces = caller.readable(namespace, None)
        if not spaces:
            return []
        where: dict[str, Any] = {"namespace": list(spaces)}
        if status is not None:
            where["status"] = status
        rows = self._res.storage.fetch("conflicts", where, order_by="tx", limit=limit)
        return [conflict_from_row(r) for r in rows]

    def resolve(self, caller: Caller, conflict_id: str, winner: str | None,
                reason: str | None) -> Conflict:
        """Resolve a conflict: the winner stands, every other memory in it is rejected.

        ``winner=None`` acknowledges the conflict and keeps every memory as it is.

        Raises:
            NotFound: no such conflict, or one you may not read.
            PermissionDenied: no ``admin`` grant on the conflict's namespace.
            InvalidInput: the winner is not one of the conflict's memories.
        """
        if not isinstance(conflict_id, str) or not conflict_id:
            raise InvalidInput("conflict id must be a non-empty string", field="conflict_id")
        if reason is not None and (not isinstance(reason, str) or len(reason) > 2000):
            raise InvalidInput("reason must be a string of at most 2000 characters")
        actor = caller.name
        with self._res.storage.write(actor) as w:
            rows = w.fetch("conflicts", {"id": conflict_id})
            if not rows or not caller.acl().check("read", rows[0]["namespace"]):
                raise NotFound(f"no conflict {conflict_id!r}; list them with conflicts()",
                               id=conflict_id)
            c = rows[0]
            caller.require("admin", c["namespace"])
            members = {str(m["id"]): m for m in c["memories"]}
            if winner is not None and winner not in members:
                raise InvalidInput(f"winner must be one of the conflict's memories: "
                                   f"{sorted(members)}", field="winner")
            effects: list[Effect] = []
            copies: list[tuple[str, int, int]] = []
            for mid, m in members.items():
                found = w.fetch("memories", {"id": mid, "tx_to": None})
                if winner is None or not found:
                    continue
                cur = found[0]
                if mid == winner and cur["status"] != "active" and cur["status"] in (
                        "rejected", "superseded"):
                    changes = {"status": "active", "valid_to": m.get("valid_to")}
                elif mid != winner and cur["status"] in _CHANGEABLE:
                    changes = {"status": "rejected"}
                else:
                    continue
                new, eff = next_version(w, cur, changes)
                effects += eff
                copies.append((mid, int(cur["version"]), int(new["version"])))
            resolution = reason or (f"{winner} wins" if winner else "acknowledged, both kept")
            done = {"status": "resolved", "winner": winner, "resolution": resolution,
                    "resolved_by": actor, "resolved_tx": w.tx}
            effects.append(Update("conflicts", {"id": conflict_id}, done))
            self._res.commit(w, "conflict.resolved", actor, c["namespace"], conflict_id,
                             effects, {"winner": winner, "reason": reason}, carry=copies)
        return conflict_from_row({**c, **done})
