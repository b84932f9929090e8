"""Following the change feed: which memories under a namespace changed since last time.

Adapters answer a framework's key lookups and listings from a view of their
own items (EngramDB's public API has no "get by key" or "list a namespace"
call). :class:`Follower` keeps such a view current across processes and
agents: it reads ``changes()`` from its cursor, collects the memory ids each
event touched, and reads each one back with ``get`` (so the reader's grants
apply). An id the view already holds at that transaction (the adapter's own
write) is not read again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engramdb.errors import NotFound
from engramdb.model import Memory


class Follower:
    """Reads the change feed of ``glob`` as ``session`` from a cursor onwards.

    Args:
        session: an EngramDB session or remote client.
        glob: the namespace glob to follow (e.g. ``langgraph/**``).
    """

    def __init__(self, session: Any, glob: str) -> None:
        self._s = session
        self._glob = glob
        self.cursor = 0  # the last event seq read
        self.tx = 0  # the highest transaction seen (the view's as_of)

    def poll(self, applied: Callable[[str], int | None],
             apply: Callable[[Memory], object], drop: Callable[[str, int], None]) -> bool:
        """Bring a view up to date; returns whether any event touched a conflict
        (so a cached conflict inbox is stale).

        Args:
            applied: the transaction at which the view last took in a memory id.
            apply: take in a memory's current version.
            drop: forget a memory no longer readable (erased, or grant gone).
        """
        touched: dict[str, int] = {}
        conflicts = False
        for ev in self._s.changes(self.cursor, namespace=self._glob):
            self.cursor = ev.seq
            self.tx = max(self.tx, ev.tx)
            for effect in (ev.payload or {}).get("effects") or ():
                conflicts = conflicts or effect.get("table") == "conflicts"
                if effect.get("table") != "memories":
                    continue
                mid = (effect.get("row") or effect.get("key") or {}).get("id")
                if isinstance(mid, str):
                    touched[mid] = ev.tx
        for mid, tx in touched.items():
            if (applied(mid) or -1) >= tx:
                continue
            try:
                apply(self._s.get(mid))
            except NotFound:
                drop(mid, tx)
        return conflicts
