"""Following the change feed: which memories under a namespace changed since last time.

Adapters answer a framework's key lookups and listings from a view of their
own items (EngramDB's public API has no "get by key" or "list a namespace"
call). :class:`Follower` keeps such a view current across processes and
agents: it reads ``changes()`` from its cursor, collects the memory ids each
event touched, and reads each one back with ``get`` (so the reader's grants
apply). An id the view already holds at that transaction (the adapter's own
write) is not read again.

On an embedded database a poll first reads the log's head (one row). When no
transaction but the view's own has committed since the last full poll, there
is nothing to read: a single writer's poll after its own put costs that one
row, not a read of the put's event (which it took in when it wrote).
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
        head: the log's head (``Database.head`` of an embedded database), or None
            (a remote client): every poll then reads the feed.
    """

    def __init__(self, session: Any, glob: str, head: Callable[[], Any] | None = None
                 ) -> None:
        self._s = session
        self._glob = glob
        self._head = head
        self.cursor = 0  # the last event seq read
        self.tx = 0  # the highest transaction seen (the view's as_of)
        # Every transaction up to this one is in the view (None: not known). Only
        # transactions the view itself committed right after it extend it.
        self._complete: int | None = None

    def own(self, m: Memory) -> None:
        """The view took in ``m``, its own write, when it committed it.

        Only a write that touched no conflict counts: a policy may have changed
        a rival memory in the same transaction, which only the feed shows.
        """
        tx = m.tx_from
        if m.conflicts:
            self._complete = None
            return
        if self._complete is not None and tx != self._complete:
            # Transaction numbers are consecutive in log order: the next one extends
            # what the view holds; any gap is another writer's, read at the next poll.
            self._complete = tx if tx == self._complete + 1 else None

    def poll(self, applied: Callable[[str], int | None],
             apply: Callable[[Memory], object], drop: Callable[[str, int], None]) -> bool:
        """Bring a view up to date; returns whether any event touched a conflict
        (so a cached conflict inbox is stale).

        Args:
            applied: the transaction at which the view last took in a memory id.
            apply: take in a memory's current version.
            drop: forget a memory no longer readable (erased, or grant gone).
        """
        head = self._head() if self._head is not None else None
        if head is not None and head.tx == self._complete:
            self.cursor = max(self.cursor, head.seq)  # every later event is the view's own
            self.tx = max(self.tx, head.tx)
            return False
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
        # The feed was read past the head read before it: every transaction up to it is in.
        self._complete = head.tx if head is not None else None
        return conflicts
