"""What a write becomes once trust has had its say, and the batch search it may use.

Values passed between :mod:`engramdb.engine.trust` (which plans) and
:mod:`engramdb.engine.writes` (which commits the plan through the one commit
path).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from engramdb.engine.rows import memory_from_row
from engramdb.model import Conflict, Memory
from engramdb.storage.base import Effect, Head

__all__ = ["BatchItem", "FreeTextBatch", "Plan"]


@dataclass(frozen=True, slots=True)
class Plan:
    """What a write becomes once trust has had its say.

    Attributes:
        row: The memory version the caller gets back (for a merged predicate,
            the merged memory's new version).
        effects: The memory and conflict effects to log with the write.
        conflicts: Conflicts this write recorded, as the writer may see them.
    """

    row: dict[str, Any]
    effects: list[Effect]
    conflicts: tuple[Conflict, ...] = ()
    carry: tuple[tuple[str, int, int], ...] = ()  # (id, from, to): vectors kept by new versions

    def memory(self) -> Memory:
        m = memory_from_row(self.row)
        return m.replace(conflicts=self.conflicts) if self.conflicts else m


class FreeTextBatch:
    """Free-text rival candidates for every memory of one ``remember_many``, found at once.

    Found in two steps. Before the write lock (:meth:`TrustEngine.prepare_batch`):
    one vector search per (namespace, subject) group against committed memories
    as of a recorded head, keeping a few candidates beyond the ``n + 1`` the
    per-memory search takes, and one matrix product per namespace comparing the
    batch's memories with one another. Under the lock
    (:meth:`TrustEngine.settle_batch`): if nothing committed since that head,
    the lists stand; otherwise only rows recorded since are searched, and
    earlier candidates that changed since are dropped, which gives the same
    top ``n + 1`` as a search under the lock (a memory whose kept candidates
    ran out falls back to its own search). Planning each memory then uses the
    lists as the per-memory path does (see :meth:`TrustEngine._free_text_rivals`),
    and falls back to that path for a memory whose lists do not apply (an
    earlier memory of the batch was an idempotent replay, so it never became
    pending; or the namespace's settings changed meanwhile).
    """

    def __init__(self, size: int, snapshot: Head) -> None:
        self.snapshot = snapshot  # the committed head the first searches saw (or later)
        # Per position, before the lock: committed (id, version, similarity) at or
        # above the floor, best first, and whether more than were kept exist.
        self.found: list[list[tuple[str, int, float]] | None] = [None] * size
        self.truncated: list[bool] = [False] * size
        # Per position, under the lock: the committed candidate ids the memory's own
        # search would find (best first, floor applied), or None: search yourself.
        self.committed: list[list[str] | None] = [None] * size
        # Per position: earlier positions of the batch that qualify as pending
        # candidates, most recent first, at most ``free_text_candidates`` of them.
        self.earlier: list[list[int] | None] = [None] * size
        # (detect_free_text, free_text_candidates) each list was computed for.
        self.settings: list[tuple[bool, int] | None] = [None] * size
        # (namespace, subject, positions, unit vectors) of each search group.
        self.groups: list[tuple[str, str | None, list[int], np.ndarray]] = []
        self.rows: list[dict[str, Any] | None] = [None] * size  # planned rows, as they come


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One memory of a :class:`FreeTextBatch`: the batch and the memory's position."""

    batch: FreeTextBatch
    index: int
