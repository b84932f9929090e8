"""Frozen values of the memory lifecycle: erasure receipts and maintenance reports.

Kept apart from :mod:`engramdb.model` (which is near its size limit); both
are plain values with a ``to_dict``/``from_dict`` wire form.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ErasureReceipt", "MaintenanceReport"]


@dataclass(frozen=True, slots=True)
class ErasureReceipt:
    """What one ``forget`` erased, for a compliance file. Never the content.

    Attributes:
        erasure_id: the id of the logged ``memory.erased`` event's record.
        seq: that event's position in the log (prove it with ``db.prove(seq)``).
        actor: who erased; ``selector`` and ``reason`` as given; ``tx`` when.
        memories: ids erased (the selected ones and memories derived from them).
        versions: ``[id, version]`` pairs whose rows were deleted.
        counts: per place: ``versions``, ``fulltext_entries``, ``vectors``,
            ``event_payloads``, ``derived_memories``, ``conflicts_redacted``,
            ``decisions_stale``, ``read_records``, ``tool_outcomes_redacted``,
            ``decisions_redacted``.
        files: what was done to the files afterwards (``purge``).
    """

    erasure_id: str
    seq: int
    actor: str
    selector: Mapping[str, str]
    reason: str
    tx: int
    memories: tuple[str, ...]
    versions: tuple[tuple[str, int], ...]
    counts: Mapping[str, int]
    files: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"erasure_id": self.erasure_id, "seq": self.seq, "actor": self.actor,
                "selector": dict(self.selector), "reason": self.reason, "tx": self.tx,
                "memories": list(self.memories),
                "versions": [[i, v] for i, v in self.versions],
                "counts": dict(self.counts), "files": dict(self.files)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ErasureReceipt:
        return cls(str(data["erasure_id"]), int(data["seq"]), str(data["actor"]),
                   dict(data["selector"]), str(data["reason"]), int(data["tx"]),
                   tuple(data["memories"]), tuple((str(i), int(v)) for i, v in data["versions"]),
                   dict(data["counts"]), dict(data.get("files") or {}))


@dataclass(frozen=True, slots=True)
class MaintenanceReport:
    """What one ``maintain`` run did.

    Attributes:
        expired: ids whose ``expires_at`` passed (now archived with reason ``expired``).
        archived: ids archived because their decayed relevance fell below the floor.
        over_capacity: ids archived to bring a namespace back under its capacity.
        held: ids that were due but kept by a legal hold.
        reinforced: memories whose usage (recall, decisions) was written.
        seq: the logged ``lifecycle.maintained`` event, or ``None`` if nothing changed.
        now: the time the run evaluated against (micros).
        files: the file purge this run finished for an earlier erasure whose own
            purge could not complete (a reader held the SQLite WAL), else empty.
    """

    expired: tuple[str, ...] = ()
    archived: tuple[str, ...] = ()
    over_capacity: tuple[str, ...] = ()
    held: tuple[str, ...] = ()
    reinforced: int = 0
    seq: int | None = None
    now: int = 0
    files: Mapping[str, Any] = field(default_factory=dict)

    @property
    def changed(self) -> int:
        return len(self.expired) + len(self.archived) + len(self.over_capacity)

    def to_dict(self) -> dict[str, Any]:
        return {"expired": list(self.expired), "archived": list(self.archived),
                "over_capacity": list(self.over_capacity), "held": list(self.held),
                "reinforced": self.reinforced, "seq": self.seq, "now": self.now,
                "files": dict(self.files)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MaintenanceReport:
        return cls(tuple(data["expired"]), tuple(data["archived"]),
                   tuple(data["over_capacity"]), tuple(data["held"]), int(data["reinforced"]),
                   None if data.get("seq") is None else int(data["seq"]), int(data["now"]),
                   dict(data.get("files") or {}))
