"""What EngramStore knows of its items: the memory <-> Item mapping and the filter rules.

Each LangGraph item is one EngramDB memory in the namespace encoded by
:mod:`._names`. The item's key, value and per-item options live in the
memory's metadata under ``"langgraph"``; the memory's text is what gets
indexed (the ``fields`` of the index config, or the whole value as JSON).
``created_at`` is the memory's first version (its ``valid_from``, which an
update keeps); ``updated_at`` is the version's ``recorded_at``.

:class:`Items` is the store's view of the current items, kept up to date from
the store's own writes and from the database's change feed (other processes,
other agents). It keeps LangGraph's reference ordering: namespaces in the order
first seen, keys in the order first written, an overwrite keeping its place.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from langgraph.store.base import Item, SearchItem, get_text_at_path, tokenize_path

from engramdb.integrations import _names
from engramdb.model import Memory, Receipt

META = "langgraph"  # the metadata key that marks a memory as an EngramStore item
MAX_TEXT = 32_000  # the engine's default max_text_chars


class EngramItem(Item):
    """A LangGraph ``Item`` that also names the EngramDB memory version behind it."""

    __slots__ = ("author", "memory_id", "version")

    def __init__(self, *, memory_id: str, version: int, author: str, **fields: Any) -> None:
        super().__init__(**fields)
        self.memory_id = memory_id
        self.version = version
        self.author = author


class EngramSearchItem(SearchItem):
    """A LangGraph ``SearchItem`` with EngramDB's provenance, contest marks and receipt.

    ``receipt`` names the exact memory versions the search returned: pass it to
    ``store.session.decide(..., basis=receipt)`` to record a decision on them.
    ``contested`` is true when an open conflict involves this item's memory;
    ``rivals`` are the ids of the memories it conflicts with.
    """

    __slots__ = ("author", "contested", "memory_id", "receipt", "rivals", "version")

    def __init__(self, item: EngramItem, score: float | None, receipt: Receipt,
                 rivals: tuple[str, ...]) -> None:
        super().__init__(namespace=item.namespace, key=item.key, value=item.value,
                         created_at=item.created_at, updated_at=item.updated_at, score=score)
        self.memory_id = item.memory_id
        self.version = item.version
        self.author = item.author
        self.receipt = receipt
        self.rivals = rivals
        self.contested = bool(rivals)


def index_paths(fields: list[str] | None) -> list[tuple[str, Any]]:
    return [(p, tokenize_path(p) if p != "$" else p) for p in (fields or ["$"])]


def texts_at(value: Mapping[str, Any], paths: list[tuple[str, Any]]) -> list[str]:
    """The texts LangGraph would embed for ``value``, one per path (and array element)."""
    out: list[str] = []
    for _, tokens in paths:
        out.extend(t for t in get_text_at_path(value, tokens) if t)
    return out


def memory_text(value: Mapping[str, Any], paths: list[tuple[str, Any]]) -> str:
    """What EngramDB indexes and judges for an item: the indexed fields' text, or
    (for the whole-document default ``$``) the value's strings, one per line."""
    texts = (texts_at(value, paths) if any(p != "$" for p, _ in paths)
             else list(_strings(value)))
    text = "\n".join(texts).strip() or json.dumps(value, ensure_ascii=False, sort_keys=True,
                                                   default=str)
    return text[:MAX_TEXT]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


@dataclass(slots=True)
class Entry:
    """One live item and what the store needs to change or rank it."""

    item: EngramItem
    tx: int
    expires_at: datetime | None
    ttl: float | None
    index: bool | list[str] | None  # the put's ``index`` argument
    vectors: list[list[float]] | None = None  # None: not embedded yet

    @property
    def memory_id(self) -> str:
        return self.item.memory_id

    @property
    def version(self) -> int:
        return self.item.version

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


def entry_from_memory(root: str, m: Memory) -> Entry | None:
    """The live item a memory version stands for, or None (not an item, or not live)."""
    meta = (m.metadata or {}).get(META)
    ns = _names.decode(root, m.namespace)
    if m.status != "active" or not isinstance(meta, Mapping) or not ns:
        return None
    updated = meta.get("updated_at")
    item = EngramItem(
        memory_id=m.id, version=m.version, author=m.author,
        namespace=ns, key=str(meta.get("key")), value=dict(meta.get("value") or {}),
        created_at=m.valid_from,
        updated_at=datetime.fromisoformat(updated) if isinstance(updated, str) else m.recorded_at,
    )
    return Entry(item, m.tx_from, m.expires_at, meta.get("ttl"), meta.get("index"))


@dataclass
class Items:
    """The store's current items, by namespace then key, plus memory id -> place."""

    by_ns: dict[tuple[str, ...], dict[str, Entry]] = field(default_factory=dict)
    places: dict[str, tuple[tuple[str, ...], str]] = field(default_factory=dict)
    seen_tx: dict[str, int] = field(default_factory=dict)  # memory id -> last tx applied
    generation: int = 0  # bumped on every change (search caches key on it)

    def get(self, namespace: tuple[str, ...], key: str) -> Entry | None:
        return self.by_ns.get(namespace, {}).get(key)

    def applied(self, memory_id: str) -> int | None:
        return self.seen_tx.get(memory_id)

    def apply(self, root: str, m: Memory) -> Entry | None:
        """Take in a memory version (the store's own write, or one read back)."""
        if self.seen_tx.get(m.id, -1) > m.tx_from:
            return self.find(m.id)  # an older version than one already applied
        self.seen_tx[m.id] = m.tx_from
        entry = entry_from_memory(root, m)
        if entry is None:
            self.drop(m.id)
            return None
        place = (entry.item.namespace, entry.item.key)
        old_place = self.places.get(m.id)
        if old_place is not None and old_place != place:
            self.drop(m.id)
        keys = self.by_ns.setdefault(place[0], {})
        other = keys.get(place[1])
        if other is not None and other.memory_id != m.id and other.tx > entry.tx:
            return other  # two writers created the same key at once: the later one stands
        if other is not None and other.vectors is not None and other.item.value == \
                entry.item.value and other.index == entry.index:
            entry.vectors = other.vectors  # same content: keep the embeddings
        keys[place[1]] = entry
        self.places[m.id] = place
        self.generation += 1
        return entry

    def drop(self, memory_id: str, tx: int | None = None) -> None:
        if tx is not None:
            self.seen_tx[memory_id] = max(tx, self.seen_tx.get(memory_id, -1))
        place = self.places.pop(memory_id, None)
        if place is None:
            return
        keys = self.by_ns.get(place[0], {})
        if keys.get(place[1]) is not None and keys[place[1]].memory_id == memory_id:
            del keys[place[1]]
            self.generation += 1

    def find(self, memory_id: str) -> Entry | None:
        place = self.places.get(memory_id)
        return None if place is None else self.get(*place)

    def under(self, prefix: tuple[str, ...], now: datetime | None) -> Iterator[Entry]:
        """Items under ``prefix`` in reference order; expired ones left out (if ``now``)."""
        n = len(prefix)
        for ns, keys in list(self.by_ns.items()):
            if ns[:n] != prefix:
                continue
            for e in list(keys.values()):
                if now is None or not e.expired(now):
                    yield e

    def namespaces(self, now: datetime) -> list[tuple[str, ...]]:
        return [ns for ns, keys in self.by_ns.items()
                if any(not e.expired(now) for e in keys.values())]


def now_utc() -> datetime:
    return datetime.now(UTC)


# -- filters (LangGraph's documented semantics: JSONB-like, with $ operators) -------------

def matches(value: Mapping[str, Any], flt: Mapping[str, Any] | None) -> bool:
    """Whether an item value passes a LangGraph search filter."""
    return not flt or all(_match(value.get(k), want) for k, want in flt.items())


def _match(have: Any, want: Any) -> bool:
    if isinstance(want, dict):
        if any(k.startswith("$") for k in want):
            return all(_op(have, op, arg) for op, arg in want.items())
        return isinstance(have, dict) and all(_match(have.get(k), v) for k, v in want.items())
    if isinstance(want, list | tuple):
        return (isinstance(have, list | tuple) and len(have) == len(want)
                and all(_match(h, w) for h, w in zip(have, want, strict=True)))
    return bool(have == want)


def _op(have: Any, op: str, arg: Any) -> bool:
    if op == "$eq":
        return bool(have == arg)
    if op == "$ne":
        return bool(have != arg)
    compare = {"$gt": float.__gt__, "$gte": float.__ge__, "$lt": float.__lt__,
               "$lte": float.__le__}.get(op)
    if compare is None:
        raise ValueError(f"Unsupported operator: {op}")
    return bool(compare(float(have), float(arg)))
