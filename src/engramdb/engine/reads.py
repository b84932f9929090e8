"""Reading memories by id and following the log: ``get``, ``history``, ``changes``.

Each read checks the reader's grants *now* (``as_of`` only chooses which
versions are visible, so a revoked reader loses the past as well) and is
recorded in the read audit with what it returned.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from engramdb.codec import to_micros
from engramdb.engine.access import Caller
from engramdb.engine.read_audit import ReadItem
from engramdb.engine.redact import DecisionView, redact_event
from engramdb.engine.resources import Resources, event_from_raw
from engramdb.engine.rows import check_count, check_id, memory_from_row
from engramdb.errors import InvalidInput, NotFound
from engramdb.model import Event, Memory, check_glob, namespace_matches, to_utc

__all__ = ["MemoryReads", "memories_in"]


class MemoryReads:
    """Reads of single memories and of the change feed, for one database handle."""

    def __init__(self, res: Resources) -> None:
        self._res = res

    def _visible_rows(self, caller: Caller, memory_id: str, as_of: int | None
                      ) -> list[dict[str, Any]]:
        check_id(memory_id)
        rows = self._res.storage.fetch("memories", {"id": memory_id}, order_by="version")
        if as_of is not None:
            rows = [r for r in rows if r["tx_from"] <= as_of]
        # Grants now, not at ``as_of``: a revoked reader loses the past as well.
        if not rows or not caller.acl().check("read", rows[0]["namespace"]):
            raise NotFound(f"no memory {memory_id!r}; check the id (or your read grant)",
                           id=memory_id)
        return rows

    def get(self, caller: Caller, memory_id: str, *, as_of: int | datetime | str | None,
            valid_at: datetime | str | None) -> Memory:
        t = caller.as_of(as_of)
        rows = self._visible_rows(caller, memory_id, t)
        row = rows[-1]
        if t is not None:
            live = [r for r in rows if r["tx_to"] is None or r["tx_to"] > t]
            row = live[-1]
        va = to_utc(valid_at, what="valid_at")
        if va is not None:
            v = to_micros(va)
            if not (row["valid_from"] <= v and (row["valid_to"] is None or row["valid_to"] > v)):
                raise NotFound(f"memory {memory_id!r} is not valid at {va.isoformat()}",
                               id=memory_id)
        memory = memory_from_row(row, as_of=t)
        self._res.read_audit.record_read(caller.principal.name, "get", [memory], t)
        return memory

    def history(self, caller: Caller, memory_id: str, *, as_of: int | datetime | str | None
                ) -> list[Memory]:
        t = caller.as_of(as_of)
        versions = [memory_from_row(r, as_of=t) for r in self._visible_rows(caller, memory_id, t)]
        self._res.read_audit.record_read(caller.principal.name, "history", versions, t)
        return versions

    def changes(self, caller: Caller, since: int, *, namespace: str, limit: int
                ) -> Iterator[Event]:
        """Validates now, then yields events lazily (see ``Session.changes``)."""
        check_glob(namespace)
        check_count(since, "since")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidInput("limit must be a positive integer", field="limit")
        return self._follow(caller, since, namespace, limit)

    def _follow(self, caller: Caller, since: int, namespace: str, limit: int
                ) -> Iterator[Event]:
        principal = caller.principal
        every = namespace == "**"
        acl = caller.acl()
        view = DecisionView(self._res.storage, lambda ns: bool(acl.check("read", ns)))
        cursor = since
        shown: list[ReadItem] = []
        page = min(limit, 1000)
        try:
            while True:
                batch = self._res.storage.events(after=cursor, limit=page)
                if not batch:
                    return
                for raw in batch:
                    cursor = raw.seq
                    ns = raw.namespace
                    if ns is None:
                        if not (principal.is_admin and every):
                            continue
                    elif not (namespace_matches(namespace, ns) and acl.check("read", ns).allow):
                        continue
                    event: Event | None = event_from_raw(raw)
                    if event is not None and not acl.is_admin and raw.kind.startswith(
                            "decision."):
                        # Decision events name basis memories: only readable ones reach you.
                        event = redact_event(event, view)
                    if event is not None:
                        shown.extend(memories_in([event]))
                        yield event
                if len(batch) < page:
                    return  # a short page was the end of the log: later events are the next call's
        finally:
            # Events carry memory rows: reading the feed is reading them. Recorded when
            # the reader stops, so a flush it causes lands after what this read saw.
            self._res.read_audit.record_read(principal.name, "changes", shown, cursor)


def memories_in(events: Sequence[Event]) -> list[ReadItem]:
    """The memory versions whose content ``events`` carry (inserted memory rows)."""
    out = []
    for e in events:
        for eff in (e.payload or {}).get("effects", ()):
            row = eff.get("row") if eff.get("table") == "memories" else None
            if isinstance(row, Mapping) and "id" in row and "version" in row:
                out.append(ReadItem(str(row["id"]), int(row["version"]), str(row["namespace"])))
    return out
