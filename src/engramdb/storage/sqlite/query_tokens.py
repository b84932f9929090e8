"""What FTS5's tokenizer makes of each query word, for the in-process full-text index.

A quoted query word is a phrase of its tokens to FTS5 (``max_len`` is two, ``word``
one): :class:`QueryWords` learns each word's tokens, in order, through the scratch
FTS5 table of :class:`~.fulltext.FullText`, and keeps them per process. A word of ASCII
letters and digits is one token, its stem, which the word pruning has already asked
for (:meth:`.fulltext.FullText.stems`, cached): only other words cost a round trip.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence

from engramdb.storage.sqlite.fulltext import FullText

__all__ = ["QueryWords", "one_token"]


class QueryWords:
    """Each query word's tokens as FTS5 reads the quoted word (cached per process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[str, tuple[str, ...]] = {}

    def tokens(self, conn: sqlite3.Connection, fts: FullText, words: Sequence[str]
               ) -> dict[str, tuple[str, ...]]:
        with self._lock:
            todo = [w for w in words if w not in self._known]
        if todo:
            # A word of ASCII letters and digits is one token (unicode61 separates at
            # anything else, "_" too), its stem: what fts.stems already asked FTS5 for
            # the word pruning (cached), so no second round trip to the tokenizer.
            single = [w for w in todo if one_token(w)]
            stems = fts.stems(conn, single) if single else {}
            found: dict[str, tuple[str, ...]] = {
                w: (stem,) for w, stem in stems.items() if stem is not None}
            rest = [w for w in todo if w not in found]
            if rest:
                found.update(_ordered_tokens(conn, fts, rest))
            with self._lock:
                if len(self._known) > 100_000:
                    self._known.clear()
                self._known.update(found)
        with self._lock:
            return {w: self._known[w] for w in words}


def one_token(word: str) -> bool:
    """Whether FTS5's ``unicode61`` tokenizer reads ``word`` as one token: a run of ASCII
    letters and digits (its stem is then the word's only token)."""
    return word.isascii() and word.isalnum()


def _ordered_tokens(conn: sqlite3.Connection, fts: FullText, words: Sequence[str]
                    ) -> dict[str, tuple[str, ...]]:
    fts.prepare(conn)
    by_doc: dict[int, list[tuple[int, str]]] = {}
    conn.execute("SAVEPOINT engram_tokens")
    try:
        conn.executemany("INSERT INTO temp.engram_stemmer (rowid, w) VALUES (?, ?)",
                         list(enumerate(words, start=1)))
        for doc, term, offset in conn.execute(
                "SELECT doc, term, offset FROM temp.engram_stemmer_vocab"):
            by_doc.setdefault(doc, []).append((offset, term))
    finally:
        conn.execute("ROLLBACK TO engram_tokens")
        conn.execute("RELEASE engram_tokens")
    return {w: tuple(t for _, t in sorted(by_doc.get(i, ()))) for i, w in enumerate(words, 1)}
