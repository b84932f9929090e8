"""An LRU cache of vectors in front of any embedder, keyed by the text's sha256."""

from __future__ import annotations

import hashlib
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from engramdb.errors import InvalidInput
from engramdb.retrieval.embed_base import Embedder, Vectors, check_texts

__all__ = ["CachedEmbedder"]


class CachedEmbedder:
    """An LRU cache in front of another embedder, keyed by the text's sha256.

    Only the texts not in the cache go to the inner embedder, in one call, each
    distinct text once. The cache is keyed by content alone, so it must wrap
    exactly one inner embedder. A full cache of 384-dimension vectors holds
    about 1.6 KB per entry (~160 MB at the default 100,000 entries).

    Args:
        inner: The embedder that computes misses.
        max_entries: How many vectors to keep; the least recently used go first.
    """

    def __init__(self, inner: Embedder, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise InvalidInput(f"max_entries must be at least 1, not {max_entries}")
        self._inner = inner
        self._max_entries = max_entries
        self._entries: OrderedDict[bytes, Vectors] = OrderedDict()
        self._lock = threading.Lock()
        _LIVE.add(self)
        self._hits = 0
        self._misses = 0

    @property
    def name(self) -> str:
        """The inner embedder's name: a cache does not change the vectors."""
        return self._inner.name

    @property
    def dimension(self) -> int:
        """The inner embedder's dimension."""
        return self._inner.dimension

    @property
    def inner(self) -> Embedder:
        """The wrapped embedder."""
        return self._inner

    @property
    def hits(self) -> int:
        """Texts answered from the cache (including repeats within one call)."""
        return self._hits

    @property
    def misses(self) -> int:
        """Distinct texts sent to the inner embedder."""
        return self._misses

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Drop every cached vector (the counters keep counting)."""
        with self._lock:
            self._entries.clear()

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Embed texts, computing only the ones not seen recently.

        Raises:
            InvalidInput: ``texts`` is a bare string or holds a non-string.
            EngramError: Whatever the inner embedder raises for the misses.
        """
        batch = check_texts(texts)
        if not batch:
            return self._inner.embed([])
        keys = [hashlib.sha256(t.encode("utf-8", "surrogatepass")).digest() for t in batch]
        rows: list[Vectors | None] = [None] * len(batch)
        todo: dict[bytes, str] = {}
        with self._lock:
            for i, key in enumerate(keys):
                row = self._entries.get(key)
                if row is not None:
                    self._entries.move_to_end(key)
                    rows[i] = row
                elif key not in todo:
                    todo[key] = batch[i]
            self._misses += len(todo)
            self._hits += len(batch) - len(todo)
        if todo:
            # Outside the lock: other threads keep being served from the cache.
            computed = self._inner.embed(list(todo.values()))
            fresh: dict[bytes, Vectors] = {}
            for key, vector in zip(todo, computed, strict=True):
                row = np.array(vector, dtype=np.float32)
                row.flags.writeable = False
                fresh[key] = row
            with self._lock:
                for key, row in fresh.items():
                    self._entries[key] = row
                    self._entries.move_to_end(key)
                while len(self._entries) > self._max_entries:
                    self._entries.popitem(last=False)
            for i, key in enumerate(keys):
                if rows[i] is None:
                    rows[i] = fresh[key]
        return np.stack([row for row in rows if row is not None])

    def __repr__(self) -> str:
        return f"CachedEmbedder({self._inner!r}, max_entries={self._max_entries})"


_LIVE: weakref.WeakSet[CachedEmbedder] = weakref.WeakSet()


def _reset_locks_in_child() -> None:
    # A lock held by another parent thread at fork time is never released here.
    for cache in list(_LIVE):
        cache._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_locks_in_child)
