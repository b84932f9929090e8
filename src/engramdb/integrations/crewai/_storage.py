"""EngramStorage: CrewAI's unified-memory ``StorageBackend`` kept in EngramDB.

A CrewAI ``MemoryRecord`` is one EngramDB memory: its content is the memory's
text, everything else (record id, scope, categories, metadata, source,
privacy, times, and CrewAI's embedding as base64 float32) sits in the memory's
metadata under ``"crewai"``. A scope maps to a namespace under ``root``; the
``/agent/<role>`` part CrewAI puts in an agent's scope becomes the *author*
instead (the record is written by EngramDB agent ``<role>``), so a crew's
agents write into one shared namespace where their contradictions are
detected. Vector search ranks CrewAI's own embeddings (cosine), since CrewAI
brings its own embedder.
"""

from __future__ import annotations

import asyncio
import base64
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from crewai.memory.types import MemoryRecord, ScopeInfo

from engramdb.errors import NotFound, PermissionDenied
from engramdb.integrations import _names
from engramdb.integrations._feed import Follower
from engramdb.model import Memory

META = "crewai"
REPORT = "engramdb"  # metadata key added to search results: provenance and contest marks
_ROLE = re.compile(r"[^a-z0-9_-]+")


@dataclass(slots=True)
class _Rec:
    record: MemoryRecord
    memory_id: str
    version: int
    author: str
    vector: np.ndarray | None


def _split(scope: str) -> tuple[tuple[str, ...], str | None]:
    """(namespace labels, agent role) of a CrewAI scope."""
    parts = [p for p in (scope or "/").split("/") if p]
    for i in range(len(parts) - 1):
        if parts[i] == "agent":
            return tuple(parts[:i] + parts[i + 2:]), parts[i + 1]
    return tuple(parts), None


def _under(scope: str, prefix: str | None) -> bool:
    if prefix is None or not prefix.strip("/"):
        return True
    p = "/" + prefix.strip("/")
    s = "/" + (scope or "/").strip("/")
    return s == p or s.startswith(p + "/")


def _pack(vec: list[float] | None) -> str | None:
    if vec is None:
        return None
    return base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode()


def _unpack(raw: Any) -> np.ndarray | None:
    if not isinstance(raw, str):
        return None
    return np.frombuffer(base64.b64decode(raw), dtype="<f4").astype(np.float64)


class EngramStorage:
    """CrewAI's memory storage backend over an EngramDB database or remote client.

    Args:
        db: ``engramdb.open(...)``, ``db.as_agent(...)`` or ``engramdb.connect(...)``.
            With an admin database or client, each crew agent (the role in an
            ``/agent/<role>`` scope) becomes an EngramDB agent, created with
            read/write on ``root/**`` the first time it saves.
        root: the EngramDB namespace segment the crew's scopes live under.
    """

    def __init__(self, db: Any, *, root: str = "crewai") -> None:
        self._db = db
        self._root = _names.check_root(root)
        self._recs: dict[str, _Rec] = {}  # record id -> record, in save order
        self._ids: dict[str, str] = {}  # memory id -> record id
        self._seen: dict[str, int] = {}  # memory id -> tx applied
        self._writers: dict[str, Any] = {}
        head = getattr(db, "head", None)  # an embedded database's log head (see Follower)
        self._feed = Follower(db, f"{self._root}/**", head if callable(head) else None)
        self._rivals: dict[str, tuple[str, ...]] | None = None
        self._lock = threading.RLock()

    @property
    def session(self) -> Any:
        """The EngramDB database or client behind the store (conflicts, decisions, history)."""
        return self._db

    # -- the view ----------------------------------------------------------------------

    def _sync(self) -> None:
        if self._feed.poll(self._seen.get, self._apply, self._drop):
            self._rivals = None

    def _apply(self, m: Memory) -> None:
        if self._seen.get(m.id, -1) > m.tx_from:
            return
        self._seen[m.id] = m.tx_from
        meta = (m.metadata or {}).get(META)
        if m.status != "active" or not isinstance(meta, dict):
            self._drop(m.id, m.tx_from)
            return
        record = MemoryRecord(
            id=meta["id"], content=m.text, scope=meta.get("scope") or "/",
            categories=list(meta.get("categories") or []),
            metadata=dict(meta.get("metadata") or {}), importance=m.importance,
            created_at=datetime.fromisoformat(meta["created_at"]),
            last_accessed=datetime.fromisoformat(meta.get("last_accessed") or meta["created_at"]),
            source=meta.get("source"), private=bool(meta.get("private")))
        vec = _unpack(meta.get("embedding"))
        record.embedding = None if vec is None else vec.tolist()
        self._recs[record.id] = _Rec(record, m.id, m.version, m.author, vec)
        self._ids[m.id] = record.id

    def _drop(self, memory_id: str, tx: int) -> None:
        self._seen[memory_id] = max(tx, self._seen.get(memory_id, -1))
        rid = self._ids.pop(memory_id, None)
        if rid is not None and rid in self._recs and self._recs[rid].memory_id == memory_id:
            del self._recs[rid]

    def _select(self, scope_prefix: str | None = None, categories: list[str] | None = None,
                metadata_filter: dict[str, Any] | None = None,
                record_ids: Iterable[str] | None = None,
                older_than: datetime | None = None) -> list[_Rec]:
        ids = set(record_ids) if record_ids is not None else None
        out = []
        for r in self._recs.values():
            rec = r.record
            if ids is not None and rec.id not in ids:
                continue
            if not _under(rec.scope, scope_prefix):
                continue
            if categories and not any(c in rec.categories for c in categories):
                continue
            if metadata_filter and any(rec.metadata.get(k) != v
                                       for k, v in metadata_filter.items()):
                continue
            if older_than is not None and not _naive(rec.created_at) < _naive(older_than):
                continue
            out.append(r)
        return out

    def _contested(self) -> dict[str, tuple[str, ...]]:
        if self._rivals is None:
            rivals: dict[str, set[str]] = {}
            for c in self._db.conflicts(f"{self._root}/**", status="open", limit=1000):
                ids = {m.id for m in c.memories}
                for i in ids:
                    rivals.setdefault(i, set()).update(ids - {i})
            self._rivals = {i: tuple(sorted(r)) for i, r in rivals.items()}
        return self._rivals

    # -- writes ------------------------------------------------------------------------

    def _writer(self, role: str | None) -> Any:
        """The session that writes for an agent role (created and granted on first use)."""
        if role is None:
            return self._db
        name = _ROLE.sub("-", role.lower()).strip("-_")[:64] or "agent"
        if name not in self._writers:
            try:
                self._writers[name] = self._db.as_agent(name)
            except NotFound:
                try:
                    self._db.admin.create_agent(name)
                    self._db.admin.grant(name, f"{self._root}/**", ["read", "write"])
                    self._writers[name] = self._db.as_agent(name)
                except PermissionDenied:  # not an admin: write as ourselves
                    self._writers[name] = self._db
            except PermissionDenied:
                self._writers[name] = self._db
        return self._writers[name]

    def _fields(self, record: MemoryRecord) -> dict[str, Any]:
        labels, _ = _split(record.scope)
        user_meta = {k: v for k, v in (record.metadata or {}).items() if k != REPORT}
        return {
            "text": record.content, "importance": float(record.importance),
            "metadata": {META: {
                "id": record.id, "scope": record.scope, "categories": list(record.categories),
                "metadata": user_meta, "source": record.source, "private": record.private,
                "created_at": record.created_at.isoformat(),
                "last_accessed": record.last_accessed.isoformat(),
                "embedding": _pack(record.embedding)}},
            "namespace": _names.encode(self._root, labels),
        }

    def _took(self, m: Memory) -> None:
        self._apply(m)
        self._feed.own(m)
        if m.conflicts or (self._rivals is not None and m.id in self._rivals):
            self._rivals = None  # this write opened or closed a conflict

    def save(self, records: list[MemoryRecord]) -> None:
        """Save records; each agent's records in one transaction as that agent."""
        with self._lock:
            self._sync()
            groups: dict[str | None, list[MemoryRecord]] = {}
            for rec in records:
                if rec.id in self._recs:
                    self.update(rec)
                else:
                    groups.setdefault(_split(rec.scope)[1], []).append(rec)
            for role, recs in groups.items():
                writer = self._writer(role)
                drafts = [{"layer": "semantic", **self._fields(r)} for r in recs]
                for m in writer.remember_many(drafts):
                    self._took(m)

    def update(self, record: MemoryRecord) -> None:
        """A new version of the record's memory (EngramDB keeps the old one)."""
        with self._lock:
            self._sync()
            cur = self._recs.get(record.id)
            if cur is None:
                self.save([record])
                return
            fields = self._fields(record)
            fields.pop("namespace")
            writer = self._writer(_split(record.scope)[1])
            self._took(writer.update(cur.memory_id, expected_version=cur.version, **fields))

    def delete(self, scope_prefix: str | None = None, categories: list[str] | None = None,
               record_ids: list[str] | None = None, older_than: datetime | None = None,
               metadata_filter: dict[str, Any] | None = None) -> int:
        """Retract the matching records (their history stays); returns how many."""
        with self._lock:
            self._sync()
            gone = self._select(scope_prefix, categories, metadata_filter, record_ids,
                                older_than)
            for r in gone:
                m = self._db.retract(r.memory_id, reason="deleted through CrewAI memory",
                                     expected_version=r.version)
                self._drop(m.id, m.tx_from)
                self._feed.own(m)
                if self._rivals is not None and m.id in self._rivals:
                    self._rivals = None  # a retraction closes its conflicts
            return len(gone)

    def reset(self, scope_prefix: str | None = None) -> None:
        self.delete(scope_prefix=scope_prefix)

    # -- reads -------------------------------------------------------------------------

    def search(self, query_embedding: list[float], scope_prefix: str | None = None,
               categories: list[str] | None = None,
               metadata_filter: dict[str, Any] | None = None, limit: int = 10,
               min_score: float = 0.0) -> list[tuple[MemoryRecord, float]]:
        """Cosine similarity to CrewAI's query embedding, best first.

        Each returned record's metadata also holds ``"engramdb"``: the memory
        ``id``, ``version`` and ``author``, and ``contested``/``rivals`` when an
        open conflict involves it.
        """
        with self._lock:
            self._sync()
            q = np.asarray(query_embedding, dtype=np.float64)
            qn = float(np.linalg.norm(q)) or 1.0
            scored = []
            for r in self._select(scope_prefix, categories, metadata_filter):
                if r.vector is None or r.vector.shape != q.shape:
                    continue
                vn = float(np.linalg.norm(r.vector)) or 1.0
                score = float(r.vector @ q) / (vn * qn)
                if score >= min_score:
                    scored.append((r, score))
            scored.sort(key=lambda x: x[1], reverse=True)
            rivals = self._contested()
            return [(self._report(r, rivals), s) for r, s in scored[:limit]]

    def _report(self, r: _Rec, rivals: dict[str, tuple[str, ...]]) -> MemoryRecord:
        mine = rivals.get(r.memory_id, ())
        meta = {**r.record.metadata, REPORT: {
            "memory_id": r.memory_id, "version": r.version, "author": r.author,
            "contested": bool(mine), "rivals": list(mine)}}
        return r.record.model_copy(update={"metadata": meta})

    def get_record(self, record_id: str) -> MemoryRecord | None:
        with self._lock:
            self._sync()
            r = self._recs.get(record_id)
            return None if r is None else r.record

    def list_records(self, scope_prefix: str | None = None, limit: int = 200,
                     offset: int = 0) -> list[MemoryRecord]:
        with self._lock:
            self._sync()
            recs = sorted(self._select(scope_prefix), key=lambda r: _naive(r.record.created_at),
                          reverse=True)
            return [r.record for r in recs[offset:offset + limit]]

    def list_scopes(self, parent: str = "/") -> list[str]:
        with self._lock:
            self._sync()
            base = "/" + parent.strip("/") if parent.strip("/") else ""
            depth = len([p for p in base.split("/") if p])
            out = set()
            for r in self._select(parent):
                parts = [p for p in r.record.scope.split("/") if p]
                if len(parts) > depth:
                    out.add(f"{base}/{parts[depth]}")
            return sorted(out)

    def get_scope_info(self, scope: str) -> ScopeInfo:
        with self._lock:
            recs = [r.record for r in self._select(scope)]
            times = [r.created_at for r in recs]
            return ScopeInfo(path=scope, record_count=len(recs),
                             categories=sorted({c for r in recs for c in r.categories}),
                             oldest_record=min(times, key=_naive) if times else None,
                             newest_record=max(times, key=_naive) if times else None,
                             child_scopes=self.list_scopes(scope))

    def list_categories(self, scope_prefix: str | None = None) -> dict[str, int]:
        with self._lock:
            self._sync()
            counts: dict[str, int] = {}
            for r in self._select(scope_prefix):
                for c in r.record.categories:
                    counts[c] = counts.get(c, 0) + 1
            return counts

    def count(self, scope_prefix: str | None = None) -> int:
        with self._lock:
            self._sync()
            return len(self._select(scope_prefix))

    # -- async twins -------------------------------------------------------------------

    async def asave(self, records: list[MemoryRecord]) -> None:
        await asyncio.to_thread(self.save, records)

    async def asearch(self, query_embedding: list[float], scope_prefix: str | None = None,
                      categories: list[str] | None = None,
                      metadata_filter: dict[str, Any] | None = None, limit: int = 10,
                      min_score: float = 0.0) -> list[tuple[MemoryRecord, float]]:
        return await asyncio.to_thread(self.search, query_embedding, scope_prefix, categories,
                                       metadata_filter, limit, min_score)

    async def adelete(self, scope_prefix: str | None = None,
                      categories: list[str] | None = None,
                      record_ids: list[str] | None = None,
                      older_than: datetime | None = None,
                      metadata_filter: dict[str, Any] | None = None) -> int:
        return await asyncio.to_thread(self.delete, scope_prefix, categories, record_ids,
                                       older_than, metadata_filter)


def _naive(t: datetime) -> datetime:
    """CrewAI stamps records with naive UTC times; compare every time that way."""
    return t if t.tzinfo is None else t.astimezone(UTC).replace(tzinfo=None)
