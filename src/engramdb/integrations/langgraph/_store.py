"""EngramStore: a LangGraph ``BaseStore`` whose items are EngramDB memories.

Every ``put`` is an EngramDB write by the store's agent (a new memory, or a new
version of the item's memory), every delete a retraction, so history, the
audit log, grants and conflict detection apply to a graph's memory as to any
other. Reads are answered from :class:`._items.Items`, which the store brings
up to date from the database's change feed before each batch, so items written
by another process or agent show up; semantic search either ranks with the
caller's embeddings (exactly as LangGraph's ``InMemoryStore`` does) or, with
``index={"embed": "engramdb"}``, runs EngramDB's own hybrid recall.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from langgraph.store.base import (
    BaseStore,
    GetOp,
    IndexConfig,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
    ensure_embeddings,
    validate_op_namespace,
)

from engramdb.errors import InvalidInput, NotFound, VersionConflict
from engramdb.integrations import _names
from engramdb.integrations._feed import Follower
from engramdb.integrations.langgraph._items import (
    META,
    EngramItem,
    EngramSearchItem,
    Entry,
    Items,
    index_paths,
    matches,
    memory_text,
    now_utc,
    texts_at,
)
from engramdb.model import Memory, Receipt, ReceiptItem

ENGRAMDB_EMBEDDER = "engramdb"  # index={"embed": "engramdb"}: EngramDB's embedder and recall
_RETRIES = 3
_MAX_K = 1000  # the engine's default max_k


class EngramStore(BaseStore):
    """A LangGraph store kept in EngramDB.

    Args:
        db: an embedded database (``engramdb.open(...)``), a session
            (``db.as_agent(...)``) or a remote client (``engramdb.connect(...)``).
        agent: act as this EngramDB agent (``db.as_agent(agent)``); every write
            is attributed to it and its grants apply.
        root: the EngramDB namespace segment under which the store's
            namespaces live (``("users", "42")`` -> ``<root>/users/42``).
        index: LangGraph's index config (``fields``, ``embed``, ``dims``).
            ``embed`` may be LangChain ``Embeddings``, an embedding function,
            or ``"engramdb"`` to search with EngramDB's own embedder and recall.
        ttl: LangGraph's TTL config (``default_ttl`` minutes, ``refresh_on_read``).
        layer: the EngramDB layer items are written to (``semantic`` by default,
            where contradictions between agents are detected).
    """

    supports_ttl = True
    __slots__ = (
        "_agents",
        "_db",
        "_embedded",
        "_embeddings",
        "_engram_index",
        "_feed",
        "_items",
        "_layer",
        "_lock",
        "_me",
        "_name",
        "_paths",
        "_pending_vectors",
        "_ranked",
        "_rivals",
        "_root",
        "_tx",
        "index_config",
        "ttl_config",
    )

    def __init__(self, db: Any, *, agent: str | None = None, root: str = "langgraph",
                 index: IndexConfig | None = None, ttl: TTLConfig | None = None,
                 layer: str = "semantic") -> None:
        self._db = db
        self._me = db.as_agent(agent) if agent is not None else db
        self._root = _names.check_root(root)
        self._layer = layer
        self.ttl_config = ttl
        self.index_config = dict(index) if index else None
        embed = (index or {}).get("embed")
        self._engram_index = bool(index) and embed in (None, ENGRAMDB_EMBEDDER)
        self._embeddings = (ensure_embeddings(embed)
                            if index and not self._engram_index else None)
        self._paths = index_paths((index or {}).get("fields"))
        self._items = Items()
        head = getattr(db, "head", None)  # an embedded database's log head (see Follower)
        self._feed = Follower(self._me, f"{self._root}/**", head if callable(head) else None)
        self._tx = 0
        self._rivals: dict[str, tuple[str, ...]] | None = None
        self._pending_vectors: dict[tuple[tuple[str, ...], str], list[list[float]]] = {}
        self._agents: dict[str, EngramStore] = {}
        self._ranked: tuple[Any, tuple[list[Entry], np.ndarray, np.ndarray, bool]] | None = None
        self._embedded: tuple[tuple[str, ...], int] | None = None
        self._lock = threading.RLock()
        self._name = self._me.principal.name

    # -- EngramDB side --------------------------------------------------------------

    @property
    def session(self) -> Any:
        """The EngramDB session (or client) this store acts through: ``decide``,
        ``conflicts``, ``history`` and every other EngramDB call."""
        return self._me

    @property
    def agent(self) -> str:
        """The EngramDB principal every write of this store is attributed to."""
        return str(self._name)

    def as_agent(self, name: str) -> EngramStore:
        """The same store acting as EngramDB agent ``name`` (e.g. one per graph node).

        One store per name is kept, so a node may call this on every run.
        """
        with self._lock:
            if name not in self._agents:
                self._agents[name] = EngramStore(
                    self._db, agent=name, root=self._root,
                    index=self.index_config,  # type: ignore[arg-type]
                    ttl=self.ttl_config, layer=self._layer)
            return self._agents[name]

    def namespace_of(self, namespace: tuple[str, ...]) -> str:
        """The EngramDB namespace that holds LangGraph ``namespace`` (for grants)."""
        return _names.encode(self._root, tuple(namespace))

    def history(self, namespace: tuple[str, ...], key: str) -> list[Memory]:
        """Every version of an item, oldest first (EngramDB keeps them all)."""
        with self._lock:
            self._sync()
            entry = self._items.get(tuple(namespace), key)
            if entry is None:
                raise NotFound(f"no item {key!r} in {namespace!r}")
            return list(self._me.history(entry.memory_id))

    # -- BaseStore --------------------------------------------------------------------

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        for op in ops:
            validate_op_namespace(op)
        queries = {op.query for op in ops if isinstance(op, SearchOp) and op.query}
        qvecs = (dict(zip(queries, self._embeddings.embed_documents(list(queries)),
                          strict=True)) if queries and self._embeddings else {})
        docs = self._doc_texts(ops)
        dvecs = self._embed_docs(docs)
        return self._run(ops, qvecs, dvecs)

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        for op in ops:
            validate_op_namespace(op)
        queries = list({op.query for op in ops if isinstance(op, SearchOp) and op.query})
        qvecs: dict[str, list[float]] = {}
        dvecs: dict[tuple[tuple[str, ...], str], list[list[float]]] = {}
        if self._embeddings is not None:
            if queries:
                vecs = await asyncio.gather(*(self._embeddings.aembed_query(q)
                                              for q in queries))
                qvecs = dict(zip(queries, vecs, strict=True))
            docs = self._doc_texts(ops)
            flat = [t for texts in docs.values() for t in texts]
            if flat:
                out = iter(await self._embeddings.aembed_documents(flat))
                dvecs = {k: [next(out) for _ in texts] for k, texts in docs.items()}
        else:
            dvecs = {}
        return await asyncio.to_thread(self._run, ops, qvecs, dvecs)

    # -- the batch, once its embeddings are known --------------------------------------

    def _run(self, ops: list[Op], qvecs: Mapping[str, list[float]],
             dvecs: Mapping[tuple[tuple[str, ...], str], list[list[float]]]) -> list[Result]:
        with self._lock:
            self._sync()
            now = now_utc()
            results: list[Result] = []
            puts: dict[tuple[tuple[str, ...], str], PutOp] = {}
            refresh: dict[str, Entry] = {}
            for op in ops:
                if isinstance(op, GetOp):
                    entry = self._items.get(tuple(op.namespace), op.key)
                    if entry is not None and entry.expired(now):
                        entry = None
                    if entry is not None and op.refresh_ttl:
                        refresh[entry.memory_id] = entry
                    results.append(entry.item if entry is not None else None)
                elif isinstance(op, SearchOp):
                    found = self._search(op, qvecs.get(op.query or ""), now)
                    if op.refresh_ttl:
                        for r in found:
                            e = self._items.find(r.memory_id)
                            if e is not None:
                                refresh[e.memory_id] = e
                    results.append(list[SearchItem](found))
                elif isinstance(op, ListNamespacesOp):
                    results.append(self._list_namespaces(op, now))
                elif isinstance(op, PutOp):
                    puts[(tuple(op.namespace), op.key)] = op
                    results.append(None)
                else:
                    raise ValueError(f"Unknown operation type: {type(op)}")
            if puts:
                self._write(puts, dvecs)
            stale = [e for e in refresh.values() if e.ttl is not None
                     and (e.item.namespace, e.item.key) not in puts]
            if stale:
                self._refresh(stale)
            return results

    def _doc_texts(self, ops: Sequence[Op]) -> dict[tuple[tuple[str, ...], str], list[str]]:
        """The texts to embed for each put (the last put of a key wins, as in LangGraph)."""
        if self._embeddings is None:
            return {}
        puts = {(tuple(op.namespace), op.key): op for op in ops if isinstance(op, PutOp)}
        out = {}
        for k, op in puts.items():
            if op.value is None or op.index is False:
                continue
            texts = texts_at(op.value, self._op_paths(op.index))
            if texts:
                out[k] = texts
        return out

    def _op_paths(self, index: bool | list[str] | None) -> list[tuple[str, Any]]:
        return self._paths if index is None or index is True else index_paths(list(index or []))

    def _embed_docs(self, docs: Mapping[Any, list[str]]) -> dict[Any, list[list[float]]]:
        flat = [t for texts in docs.values() for t in texts]
        if not flat or self._embeddings is None:
            return {}
        out = iter(self._embeddings.embed_documents(flat))
        return {k: [next(out) for _ in texts] for k, texts in docs.items()}

    # -- reads ---------------------------------------------------------------------------

    def _sync(self) -> None:
        """Catch up with every change to the store's namespaces since the last batch."""
        if self._feed.poll(self._items.applied, lambda m: self._items.apply(self._root, m),
                           self._items.drop):
            self._rivals = None
        self._tx = max(self._tx, self._feed.tx)

    def _contested(self) -> dict[str, tuple[str, ...]]:
        if self._rivals is None:
            rivals: dict[str, set[str]] = {}
            for c in self._me.conflicts(f"{self._root}/**", status="open", limit=_MAX_K):
                ids = {m.id for m in c.memories}
                for i in ids:
                    rivals.setdefault(i, set()).update(ids - {i})
            self._rivals = {i: tuple(sorted(r)) for i, r in rivals.items()}
        return self._rivals

    def _receipt(self, items: Sequence[EngramItem]) -> Receipt:
        return Receipt(tuple(ReceiptItem(i.memory_id, i.version) for i in items),
                       as_of=self._tx, principal=self._name)

    def _search(self, op: SearchOp, qvec: list[float] | None, now: datetime
                ) -> list[EngramSearchItem]:
        prefix = tuple(op.namespace_prefix)

        def passing() -> Iterator[Entry]:
            return (e for e in self._items.under(prefix, now) if matches(e.item.value, op.filter))

        def candidates() -> list[Entry]:
            return list(passing())

        receipt = None
        if op.query and self._engram_index:
            ranked, receipt = self._recall(op, prefix, candidates())
        elif op.query and qvec is not None:
            ranked = self._rank(op, qvec, now, candidates)
        else:
            # No ranking: the page is the first passing items, so stop once it is full.
            page = (itertools.islice(passing(), op.offset, op.offset + op.limit)
                    if op.offset >= 0 and op.limit >= 0
                    else candidates()[op.offset:op.offset + op.limit])
            ranked = [(e, None) for e in page]
        if receipt is None:
            receipt = self._receipt([e.item for e, _ in ranked])
        rivals = self._contested()
        return [EngramSearchItem(e.item, s, receipt, rivals.get(e.memory_id, ()))
                for e, s in ranked]

    def _rank(self, op: SearchOp, qvec: list[float], now: datetime,
              candidates: Callable[[], list[Entry]]) -> list[tuple[Entry, float | None]]:
        """Cosine similarity, best vector of each item, as LangGraph's InMemoryStore ranks."""
        prefix = tuple(op.namespace_prefix)
        self._embed_missing(prefix)
        entries, owners, unit, expiring = self._matrix(prefix)
        cands: list[Entry] | None = None
        if op.filter or expiring:
            cands = candidates()
            allowed = {e.memory_id for e in cands}
            rows = np.fromiter((entries[o].memory_id in allowed for o in owners), dtype=bool,
                               count=len(owners))
            picked, unit = owners[rows], unit[rows]
        else:
            picked = owners  # every item under the prefix is a candidate
        q = np.asarray(qvec, dtype=np.float64)
        qn = float(np.linalg.norm(q))
        scores = (unit @ q) / qn if qn and len(picked) else np.zeros(len(picked))
        order = np.argsort(-scores, kind="stable")  # stable: ties keep the items' order
        seen: set[int] = set()
        kept: list[tuple[Entry, float | None]] = []
        for i in order:
            owner = int(picked[i])
            if owner in seen:
                continue
            seen.add(owner)
            if len(seen) > op.offset + op.limit:
                break
            if len(seen) > op.offset:
                kept.append((entries[owner], float(scores[i])))
        if len(kept) < op.limit:
            scoreless = [e for e in (cands if cands is not None else candidates())
                         if not e.vectors]
            kept += [(e, None) for e in scoreless[:op.limit - len(kept)]]
        return kept

    def _matrix(self, prefix: tuple[str, ...]
                ) -> tuple[list[Entry], np.ndarray, np.ndarray, bool]:
        """Every embedded item under ``prefix``: (items, row -> item, unit-length rows,
        whether any of them can expire).

        Kept until the items change, so repeated searches do not rebuild it.
        """
        key = (prefix, self._items.generation)
        if self._ranked is not None and self._ranked[0] == key:
            return self._ranked[1]
        entries = [e for e in self._items.under(prefix, None) if e.vectors]
        owners = np.fromiter((i for i, e in enumerate(entries) for _ in e.vectors or ()),
                             dtype=np.int64)
        flat = [v for e in entries for v in e.vectors or ()]
        mat = np.asarray(flat, dtype=np.float64) if flat else np.zeros((0, 0))
        norms = np.linalg.norm(mat, axis=1, keepdims=True) if flat else np.zeros((0, 1))
        unit = np.divide(mat, norms, out=np.zeros_like(mat), where=norms != 0)
        expiring = any(e.expires_at is not None for e in entries)
        self._ranked = (key, (entries, owners, unit, expiring))
        return entries, owners, unit, expiring

    def _recall(self, op: SearchOp, prefix: tuple[str, ...], cands: list[Entry]
                ) -> tuple[list[tuple[Entry, float | None]], Receipt]:
        """EngramDB's hybrid recall over the prefix, then LangGraph's filter and paging."""
        by_id = {e.memory_id: e for e in cands if e.index is not False}
        glob = (_names.encode(self._root, prefix) if prefix else self._root) + "/**"
        want = op.offset + op.limit
        k = min(_MAX_K, max(10, want * (4 if op.filter else 1)))
        result = self._me.recall(op.query, namespace=glob, k=k)
        hits = [(by_id[h.memory.id], h.score) for h in result.hits if h.memory.id in by_id]
        kept: list[tuple[Entry, float | None]] = list(hits[op.offset:want])
        if len(kept) < op.limit:
            scoreless = [e for e in cands if e.index is False]
            kept += [(e, None) for e in scoreless[:op.limit - len(kept)]]
        return kept, result.receipt

    def _embed_missing(self, prefix: tuple[str, ...]) -> None:
        """Embed items this store has not embedded itself (written elsewhere)."""
        key = (prefix, self._items.generation)
        if self._embedded == key:
            return
        todo = [e for e in self._items.under(prefix, None)
                if e.vectors is None and e.index is not False]
        docs = {e.memory_id: texts_at(e.item.value, self._op_paths(e.index)) for e in todo}
        vecs = self._embed_docs({k: v for k, v in docs.items() if v})
        for e in todo:
            e.vectors = vecs.get(e.memory_id, [])
        if todo:
            self._items.generation += 1
        self._embedded = (prefix, self._items.generation)

    def _list_namespaces(self, op: ListNamespacesOp, now: datetime) -> list[tuple[str, ...]]:
        spaces = self._items.namespaces(now)
        for cond in op.match_conditions or ():
            path = tuple(cond.path)
            if cond.match_type not in ("prefix", "suffix"):
                raise ValueError(f"Unsupported match type: {cond.match_type}")
            spaces = [ns for ns in spaces if _path_match(
                ns if cond.match_type == "prefix" else ns[::-1],
                path if cond.match_type == "prefix" else path[::-1])]
        if op.max_depth is not None:
            spaces = list({ns[:op.max_depth] for ns in spaces})
        return sorted(spaces)[op.offset:op.offset + op.limit]

    # -- writes --------------------------------------------------------------------------

    def _write(self, puts: Mapping[tuple[tuple[str, ...], str], PutOp],
               dvecs: Mapping[tuple[tuple[str, ...], str], list[list[float]]]) -> None:
        new: list[tuple[PutOp, dict[str, Any]]] = []
        for place, op in puts.items():
            entry = self._items.get(*place)
            if op.value is None:
                if entry is not None:
                    self._retry(place, lambda e: self._me.retract(
                        e.memory_id, reason="deleted through LangGraph",
                        expected_version=e.version))
                continue
            fields = self._fields(op)
            if entry is None:
                new.append((op, fields))
            else:
                self._retry(place, lambda e, f=fields: self._me.update(
                    e.memory_id, expected_version=e.version, **f))
            if self._embeddings is not None:
                self._pending_vectors[place] = dvecs.get(place, [])
        if len(new) == 1:
            op, fields = new[0]
            self._took(self._me.remember(namespace=self.namespace_of(op.namespace),
                                         layer=self._layer, **fields))
        elif new:
            for m in self._me.remember_many([
                    {"namespace": self.namespace_of(op.namespace), "layer": self._layer,
                     **fields} for op, fields in new]):
                self._took(m)
        self._attach_vectors()

    def _fields(self, op: PutOp, *, updated_at: datetime | None = None) -> dict[str, Any]:
        """The memory fields of a put: text to index, and the item in the metadata."""
        if not isinstance(op.value, dict):
            raise InvalidInput("a LangGraph item value must be a dict", field="value")
        index: bool | list[str] | None = op.index
        meta: dict[str, Any] = {"key": op.key, "value": op.value,
                                "index": list(index) if isinstance(index, list) else index}
        ttl = op.ttl
        if ttl is not None:
            meta["ttl"] = ttl
        if updated_at is not None:
            meta["updated_at"] = updated_at.isoformat()
        expires = now_utc() + timedelta(minutes=ttl) if ttl is not None else None
        paths = self._op_paths(index) if index is not False else [("$", "$")]
        return {"text": memory_text(op.value, paths), "metadata": {META: meta},
                "expires_at": expires}

    def _took(self, m: Memory) -> None:
        self._tx = max(self._tx, m.tx_from)
        self._items.apply(self._root, m)
        self._feed.own(m)
        self._conflicts_touched(m)

    def _conflicts_touched(self, m: Memory) -> None:
        """Forget the cached conflict inbox if this write opened or closed a conflict."""
        if m.conflicts or (self._rivals is not None and m.id in self._rivals):
            self._rivals = None

    def _retry(self, place: tuple[tuple[str, ...], str], call: Any) -> None:
        """Write over the item's current version; last writer wins, as in LangGraph."""
        for attempt in range(_RETRIES):
            entry = self._items.get(*place)
            if entry is None:
                return
            try:
                m = call(entry)
            except (VersionConflict, NotFound):
                if attempt == _RETRIES - 1:
                    raise
                self._sync()
                continue
            if m.status != "active":
                self._items.drop(m.id, m.tx_from)
                self._tx = max(self._tx, m.tx_from)
                self._feed.own(m)
                self._conflicts_touched(m)
            else:
                self._took(m)
            return

    def _attach_vectors(self) -> None:
        for place, vecs in self._pending_vectors.items():
            entry = self._items.get(*place)
            if entry is not None:
                entry.vectors = vecs
        self._pending_vectors.clear()
        self._items.generation += 1

    def _refresh(self, entries: list[Entry]) -> None:
        """Push back the expiry of items read with ``refresh_ttl`` (a new version each)."""
        for e in entries:
            op = PutOp(e.item.namespace, e.item.key, e.item.value, index=e.index,  # type: ignore[arg-type]
                       ttl=e.ttl)
            fields = self._fields(op, updated_at=e.item.updated_at)
            vectors = e.vectors
            self._retry((e.item.namespace, e.item.key),
                        lambda cur, f=fields: self._me.update(
                            cur.memory_id, expected_version=cur.version, **f))
            fresh = self._items.get(e.item.namespace, e.item.key)
            if fresh is not None and fresh.vectors is None:
                fresh.vectors = vectors
                self._items.generation += 1

    # -- TTL ------------------------------------------------------------------------------

    def sweep_ttl(self) -> int:
        """Retract every expired item this store's agent can see; returns how many."""
        with self._lock:
            self._sync()
            now = now_utc()
            gone = [e for ns in list(self._items.by_ns.values()) for e in list(ns.values())
                    if e.expired(now)]
            for e in gone:
                self._retry((e.item.namespace, e.item.key), lambda cur: self._me.retract(
                    cur.memory_id, reason="LangGraph TTL expired", expected_version=cur.version))
            return len(gone)


def _path_match(ns: tuple[str, ...], path: tuple[str, ...]) -> bool:
    return len(ns) >= len(path) and all(p in ("*", n) for n, p in zip(ns, path, strict=False))


__all__ = ["ENGRAMDB_EMBEDDER", "EngramStore"]
