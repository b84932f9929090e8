"""Full-text search on SQLite: FTS5 queries with the namespace inside the index.

A query is the OR of its content words, restricted to the ``text`` column.
Words found in more than 5% of a large database's memories are dropped, and
in a database of 20,000 memories or more, words are taken rarest first only
until about ``MATCH_BUDGET`` rows match (the rarest word is always kept):
BM25 gives common words almost no weight, yet FTS5 scores every row matching
any word, so they decide the query's cost. A word in no row is left out (it
adds nothing to any score). The contradiction check's candidate search keeps at
most :data:`CANDIDATE_WORDS` words, the rarest.
Document frequencies come from ``fts5vocab``, which holds *stems*, so each
word is stemmed first as that tokenizer (``porter unicode61``) stems it: a word of
ASCII letters, digits and underscores by ``porter.py`` (its first token), any other
through a scratch FTS5 table (cached per connection).

A query scoped to namespaces holding a minority of the rows intersects its
words with the namespaces' ``scope`` tokens (migration 0013) inside FTS5, so
FTS5 ranks only in-scope matches. A broad scope ranks every match, keeps the
best few hundred and filters those; only when fewer than ``limit`` survive
does the filtered query run in full.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Sequence

from engramdb.storage.sqlite.porter import stem_ascii_word

__all__ = ["CANDIDATE_WORDS", "FullText", "content_words", "fts_query", "scope_token"]

STOPWORDS = frozenset(
    """
    a an and are as at be by did do does for from had has have he her his how i in is it
    its me my of on or our she so that the their them they this to was we were what when
    where which who why will with you your
    """.split()
)
_WORD = re.compile(r"\w+", re.UNICODE)
MAX_WORDS = 32
COMMON_SHARE = 0.05  # a word in more of the memories than this is pruned
# From this many rows on, stop adding words once this many rows match (ranking
# 1,000 matches takes ~1 ms, 2,700 ~20 ms at 100k rows on 2 busy cores).
MATCH_BUDGET = 1000
BUDGET_FROM_ROWS = 20_000
# The contradiction check ranks its candidates by at most this many words of the new
# text, its rarest that occur in some row (docs/trust.md, "Free text"): a text the
# heuristic judge calls contradicting repeats all but a few of its words, the rarest
# among them, and FTS5 pays for every word in every index segment. Three lost a
# two-word value ("a socket" / "a symbolic link"); four lost nothing measured.
CANDIDATE_WORDS = 4
SCOPE_SHARE = 0.5  # push the namespace filter into FTS5 when its rows are below this share
_STATS_TTL_S = 5.0


def content_words(text: str) -> list[str]:
    """The distinct lower-cased content words of ``text``, in order (at most 32)."""
    # ASCII text is lower-cased whole (the same words: lower-casing ASCII moves no
    # word boundary), not word by word; other text word by word, as lower-casing
    # can change what \w matches.
    words = (_WORD.findall(text.lower()) if text.isascii()
             else [w.lower() for w in _WORD.findall(text)])
    content = [w for w in words if w not in STOPWORDS] or words
    return list(dict.fromkeys(content))[:MAX_WORDS]


def _quote(word: str) -> str:
    return '"' + word.replace('"', '""') + '"'


def fts_query(text: str) -> str | None:
    """Turn free text into a safe FTS5 OR-query of its content words."""
    words = content_words(text)
    return " OR ".join(_quote(w) for w in words) if words else None


def scope_token(namespace: str) -> str:
    """The ``scope`` column's token for ``namespace`` (as migration 0013 writes it)."""
    return "n" + namespace.encode("utf-8").hex() + "0"


def _ascii_stem(word: str) -> str | None:
    """The stem FTS5 indexes first for ``word``, a ``\\w`` run of ASCII letters,
    digits and underscores, as ``porter unicode61`` makes it: ``unicode61`` separates
    tokens at anything but letters and digits (so at ``_``) and lower-cases them; the
    first token's stem is porter.py's (a digit run is its own stem); None when only
    underscores. No round trip to FTS5 (``tests/test_porter_stem.py`` checks it
    against FTS5's tokenizer)."""
    first = next((t for t in word.split("_") if t), None)
    if first is None:
        return None
    return first if first.isdigit() else stem_ascii_word(first)


class FullText:
    """Per-connection helpers: stemming, document frequencies, the MATCH expression."""

    def __init__(self) -> None:
        self._stems: dict[str, str | None] = {}
        self._prepared: set[int] = set()
        self._docs: dict[str, tuple[float, int]] = {}  # term -> (read at, rows containing it)

    def prepare(self, conn: sqlite3.Connection) -> None:
        """Create the connection's temp tables (before any transaction on it)."""
        self._prepare(conn)

    def _prepare(self, conn: sqlite3.Connection) -> None:
        if id(conn) in self._prepared:
            return
        conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.memories_fts_vocab "
                     "USING fts5vocab('main', 'memories_fts', 'row')")
        conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.engram_stemmer "
                     "USING fts5(w, tokenize = 'porter unicode61')")
        conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.engram_stemmer_vocab "
                     "USING fts5vocab('temp', 'engram_stemmer', 'instance')")
        self._prepared.add(id(conn))

    def stems(self, conn: sqlite3.Connection, words: Sequence[str]) -> dict[str, str | None]:
        """Each word's stem as FTS5 indexes it (None: the tokenizer keeps nothing of it)."""
        out: dict[str, str | None] = {}
        todo: list[str] = []
        cache = self._stems
        fresh: list[str] = []
        for w in words:
            if w in cache:
                out[w] = cache[w]
            elif w.isascii() and w.isalnum():
                # ASCII letters and digits: one token, whose stem porter.py computes as
                # FTS5 does (a digit run is its own stem), with no round trip to FTS5.
                if w.isdigit():
                    out[w] = w  # not kept: every number would fill the cache
                else:
                    out[w] = stem_ascii_word(w)
                    fresh.append(w)
            else:
                todo.append(w)
        if not todo:  # every word known or stemmed here (nearly every write's text)
            self._learn(fresh, out)
            return out
        # ASCII words with underscores are stemmed here too (see _ascii_stem), after
        # the others as before, so the stems come out in the same order.
        asked = [w for w in todo
                 if not (w.isascii() and (w.replace("_", "").isalnum() or not w.strip("_")))]
        found: dict[int, str] = {}
        if asked:
            self._prepare(conn)
            conn.execute("SAVEPOINT engram_stem")
            try:
                conn.executemany("INSERT INTO temp.engram_stemmer (rowid, w) VALUES (?, ?)",
                                 list(enumerate(asked, start=1)))
                found = dict(conn.execute(
                    "SELECT doc, term FROM temp.engram_stemmer_vocab WHERE offset = 0"
                ).fetchall())
            finally:
                conn.execute("ROLLBACK TO engram_stem")
                conn.execute("RELEASE engram_stem")
        at = {w: i for i, w in enumerate(asked, start=1)}
        for w in todo:
            out[w] = found.get(at[w]) if w in at else _ascii_stem(w)
        self._learn([w for w in out if w not in cache and not (w.isascii() and w.isdigit())],
                    out)
        return out

    def _learn(self, fresh: list[str], stems: dict[str, str | None]) -> None:
        """Keep ``fresh`` words' stems (the cache is emptied past 100,000 words)."""
        if fresh:
            if len(self._stems) > 100_000:
                self._stems.clear()
            for w in fresh:
                self._stems[w] = stems[w]

    def doc_counts(self, conn: sqlite3.Connection, terms: Sequence[str]) -> dict[str, int]:
        """How many rows contain each indexed term (stem or scope token), briefly cached."""
        self._prepare(conn)
        now = time.monotonic()
        docs = self._docs
        stale = [t for t in terms
                 if (cached := docs.get(t)) is None or now - cached[0] > _STATS_TTL_S]
        if not stale:  # all read within the last _STATS_TTL_S
            return {term: docs[term][1] for term in terms}
        stale = list(dict.fromkeys(stale))
        # One statement for every term not known (fts5vocab looks each up in turn);
        # a term in no row is not returned.
        for start in range(0, len(stale), 250):
            part = stale[start:start + 250]
            found = dict(conn.execute(
                "SELECT term, doc FROM temp.memories_fts_vocab WHERE term IN "
                f"({', '.join('?' * len(part))})", part).fetchall())
            for term in part:
                self._docs[term] = (now, int(found.get(term, 0)))
        out = {term: self._docs[term][1] for term in terms}
        for term in stale:  # a term in no row yet may be in the next write's: never kept
            if out[term] == 0:
                del self._docs[term]
        if len(self._docs) > 100_000:
            self._docs.clear()
        return out

    def match(self, conn: sqlite3.Connection, query: str, total: int,
              max_words: int | None = None) -> str | None:
        """The MATCH expression of the ``text`` column for ``query``, common words pruned.

        Words in no row are left out (they add nothing to any row's score). With
        ``max_words`` (the contradiction check's candidate search), at most that
        many words are kept, the rarest: see :data:`CANDIDATE_WORDS`.
        """
        found = self.counted_match(conn, query, total, max_words)
        return None if found is None else found[0]

    def counted_match(self, conn: sqlite3.Connection, query: str, total: int,
                      max_words: int | None = None) -> tuple[str, int | None] | None:
        """:meth:`match`'s expression and the rows its words were counted in (their
        ``fts5vocab`` counts summed, read within the last few seconds: about the most
        rows the expression matches; None when the words were not counted)."""
        found = self._kept(conn, query, total, max_words, None)
        if found is None:
            return None
        words, matches = found
        terms = " OR ".join(_quote(w) for w in words)
        # Only a word holding a "0" can be a `scope` token (each ends in one, and no
        # stemming adds a digit): any other query matches the same rows with the
        # same scores without the column filter, which costs FTS5 ~15% more.
        return (f"text : ({terms})" if any("0" in w for w in words) else f"({terms})",
                matches)

    def kept_words(self, conn: sqlite3.Connection, query: str, total: int,
                   max_words: int | None = None,
                   counts: Callable[[Sequence[str]], dict[str, int]] | None = None
                   ) -> list[str] | None:
        """The words of :meth:`match`'s expression, in the query's order (None: none).

        ``counts`` gives the rows holding each stem (default: :meth:`doc_counts`;
        the in-process index passes its exact counts).
        """
        found = self._kept(conn, query, total, max_words, counts)
        return None if found is None else found[0]

    def _kept(self, conn: sqlite3.Connection, query: str, total: int, max_words: int | None,
              counts: Callable[[Sequence[str]], dict[str, int]] | None
              ) -> tuple[list[str], int | None] | None:
        """:meth:`kept_words` and the sum of their counts (None: not counted)."""
        words = content_words(query)
        if not words:
            return None
        if total >= 2000 and len(words) > 1:
            stems = self.stems(conn, words)
            known = [s for s in stems.values() if s is not None]
            df = self.doc_counts(conn, known) if counts is None else counts(known)
            freq = {w: df.get(stems[w] or "", 0) for w in words}
            # Rarest first, common words never, and stop adding once the matches
            # to rank pass the budget: FTS5 scores every match of the OR.
            kept: list[str] = []
            matches = 0
            budget = MATCH_BUDGET if total >= BUDGET_FROM_ROWS else total
            cap = max_words or len(words)
            for w in sorted(words, key=lambda w: freq[w]):
                if stems[w] is not None and freq[w] == 0:
                    continue  # in no row (a count of 0 is never cached, so this is now)
                if kept and (freq[w] > COMMON_SHARE * total or matches + freq[w] > budget
                             or len(kept) >= cap):
                    break
                kept.append(w)
                matches += freq[w]
            if not kept:
                return None
            return [w for w in words if w in kept], matches
        return words, None

    def scope(self, conn: sqlite3.Connection, namespaces: Sequence[str] | None,
              known: Callable[[], int], total: int) -> str | None:
        """The ``scope:(...)`` clause when ``namespaces`` hold a minority of rows, else None.

        Args:
            namespaces: the filter's namespaces (None: unscoped).
            known: how many namespaces the database has (asked only for several:
                one namespace holding every row fails the share test below anyway).
            total: how many memory rows it has.
        """
        if namespaces is None or not namespaces or len(namespaces) > 64:
            return None
        if len(namespaces) > 1 and len(namespaces) >= known():
            return None
        tokens = [scope_token(ns) for ns in namespaces]
        rows = sum(self.doc_counts(conn, tokens).values())
        if rows > SCOPE_SHARE * total:
            return None
        return "scope : (" + " OR ".join(_quote(t) for t in tokens) + ")"
