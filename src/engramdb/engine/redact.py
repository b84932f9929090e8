"""What a reader may learn about a decision whose basis it cannot fully read.

A decision rests on exact memory versions, possibly in namespaces its reader
may not read (the decider's grants changed, an admin decided on a private
memory, a grant was revoked). The reader sees only the basis items it may
read, plus how many were hidden; staleness is derived only from those items;
and ``decision.stale`` / ``decision.recorded`` events reach its change feed
only as far as they concern memories it may read. Admins see everything.

Pure functions over the storage's read API and the reader's access control,
called from the few places that hand decisions or their events out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from engramdb.model import Decision, Event, ReceiptItem

__all__ = ["DecisionView", "redact_decision", "redact_event"]


class DecisionView:
    """Memoised facts about basis memories, for one reader during one call.

    Args:
        storage: The storage to read memory rows from.
        may_read: Whether the reader may read a namespace (its grants now).
    """

    def __init__(self, storage: Any, may_read: Callable[[str], bool]) -> None:
        self._storage = storage
        self._may_read = may_read
        self._rows: dict[str, list[dict[str, Any]]] = {}

    def rows(self, memory_id: str) -> list[dict[str, Any]]:
        if memory_id not in self._rows:
            self._rows[memory_id] = self._storage.fetch("memories", {"id": memory_id},
                                                        order_by="version")
        return self._rows[memory_id]

    def readable(self, memory_id: str) -> bool:
        rows = self.rows(memory_id)
        return bool(rows) and self._may_read(rows[0]["namespace"])

    def closed_at(self, item: ReceiptItem) -> int | None:
        """The tx that closed or erased ``item``, ``None`` while it is current and intact."""
        rows = self.rows(item.id)
        base = next((r for r in rows if int(r["version"]) == item.version), None)
        if base is None:
            return -1  # the rows are gone (erased): stale, time unknown
        if base["tx_to"] is not None:
            return int(base["tx_to"])
        if any(r["status"] == "erased" for r in rows if int(r["version"]) >= item.version):
            return int(rows[-1]["tx_from"])
        return None


def redact_decision(d: Decision, view: DecisionView) -> Decision:
    """``d`` as ``view``'s reader may see it: readable basis only, its own staleness.

    A decision whose whole basis is readable comes back unchanged.
    """
    shown = tuple(it for it in d.basis if view.readable(it.id))
    if len(shown) == len(d.basis):
        return d
    closed = [t for t in (view.closed_at(it) for it in shown) if t is not None]
    stale_tx = None
    if closed:
        # A basis version already closed when the decision was made is stale from then.
        stale_tx = max(min(closed), d.tx) if min(closed) >= 0 else d.stale_tx or d.tx
    return replace(d, basis=shown, basis_hidden=len(d.basis) - len(shown), stale_tx=stale_tx)


def redact_event(event: Event, view: DecisionView) -> Event | None:
    """A decision event as the reader may see it, or ``None`` when it says nothing readable.

    ``decision.stale`` names the basis versions that changed: only readable
    ones are kept, and an event left naming none is dropped (the reader's
    view of the decision did not change). ``decision.recorded`` carries the
    decision row and its basis rows: unreadable basis items are removed.
    """
    if event.payload is None or event.kind not in ("decision.stale", "decision.recorded"):
        return event
    payload = dict(event.payload)
    if event.kind == "decision.stale":
        changed = [c for c in payload.get("changed", ()) if view.readable(str(c["id"]))]
        if not changed:
            return None
        if len(changed) == len(payload.get("changed", ())):
            return event
        payload["changed"] = changed
        return replace(event, payload=payload)
    effects = [_redact_effect(e, view) for e in payload.get("effects", ())]
    kept = [e for e in effects if e is not None]
    if kept == list(payload.get("effects", ())):
        return event
    payload["effects"] = kept
    return replace(event, payload=payload)


def _redact_effect(effect: Mapping[str, Any], view: DecisionView) -> Mapping[str, Any] | None:
    table = effect.get("table")
    row = effect.get("row")
    if not isinstance(row, Mapping):
        return effect
    if table == "decision_basis":
        return effect if view.readable(str(row.get("memory_id"))) else None
    if table == "decisions" and isinstance(row.get("basis"), Sequence):
        basis = [b for b in row["basis"] if view.readable(str(b["id"]))]
        if len(basis) != len(row["basis"]):
            return {**effect, "row": {**row, "basis": basis,
                                      "basis_hidden": len(row["basis"]) - len(basis)}}
    return effect
