"""Full-text ranking in process: FTS5's own postings and BM25 scores, computed with NumPy.

FTS5 ranks a query by calling ``bm25()`` once for every row matching any of its
words (about 5 us a match: each looks up the row's size), so a query whose
rarest kept word is common costs milliseconds. This index holds, per process,
what that ranking reads: for each stem of the ``text`` column the rows holding
it and how often (the *postings*), each row's size in tokens, and the columns
a recall filter tests (namespace, layer, author, status, transaction and valid
times). A query then costs one vectorised pass over its words' postings.

It is a projection, like the vector index (:mod:`.ann`), and never the
authority:

- The *base* is a snapshot (:mod:`.lexsnap`) as of a transaction ``T``, read
  from FTS5's index itself (``fts5vocab``) and the ``memories`` table in one read
  transaction, so its postings are exactly what FTS5 held at ``T``. It is written
  once to files beside the vector snapshots and memory-mapped by every process
  (one copy in the page cache, opened in milliseconds); whichever process first
  needs it builds it (in the searching thread up to ``sync_build_max`` rows, else
  in the background while FTS5 answers), the others open it. Rows written since
  (``row_tx`` newer than what the index has seen) are read before each search and
  tokenised by FTS5's tokenizer (``porter unicode61``, through a scratch FTS5
  table) into this process's *delta*, overriding the snapshot's copy. A delta
  grown past ``rebuild_min`` rows (and a quarter of the base) is folded into a new
  snapshot in the background. An erasure (in any process) drops the delta, and a
  snapshot older than the erasure is neither used nor kept: it is rebuilt without
  the erased rows.
- Scores are FTS5's ``bm25(memories_fts, 1.0, 0.0)`` term for term: the same
  formula, its constants, the row count and token total read from FTS5's
  averages record at the search's snapshot, document frequencies counted in
  the postings, phrases summed in the query's order. Ties go by row id, as in
  the SQL query.
- The column filters are applied inside (so a scoped query ranks only its
  namespaces' matches); the candidates are then read from SQL in rank order
  under the whole filter, which decides (see ``SQLiteStorage._search_text``).

A query word FTS5 reads as a phrase of several tokens (``max_len``) has its rows
from FTS5 (the index holds no token positions) and each row's count of it read
back from the phrase's own score. The index answers only what it can answer
exactly: a search reading an older snapshot than the index holds (another thread
refreshed it meanwhile, or the published snapshot is newer than the read), a word
with no token or one that could be a namespace token, SQL-only filters, searches
while no snapshot is usable yet and right after a bulk load go to FTS5 as before.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from engramdb.errors import InvalidInput
from engramdb.model import RecallFilter
from engramdb.storage.sqlite.dialect import changed_since
from engramdb.storage.sqlite.fulltext import FullText
from engramdb.storage.sqlite.lexsnap import (
    CODED,
    TIMES,
    LexBase,
    build_base,
    directory_of,
    lock,
    open_current,
    pointer_path,
    pointer_stamp,
    remove_snapshot,
)
from engramdb.storage.sqlite.pinned import Pinned
from engramdb.storage.sqlite.query_tokens import QueryWords
from engramdb.storage.sqlite.vectors import NONE, Codes, VectorIndex, column_mask

__all__ = ["LexicalIndex", "LexicalSearch", "averages", "in_rank_order", "tokenize"]

log = logging.getLogger("engramdb.index")

# FTS5's bm25() constants (fts5_aux.c).
K1 = 1.2
B = 0.75
_ROW_SQL = ("SELECT row_id, namespace, layer, author, status, tx_from, tx_to, valid_from, "
            "valid_to, recorded_at, row_tx, text FROM memories")
_SCOPE_LIKE = frozenset("0123456789abcdef")


def averages(conn: sqlite3.Connection, pinned: Pinned | None = None) -> tuple[int, int]:
    """FTS5's row count and token total over all columns (its averages record, id 1;
    ``pinned``: as the snapshot read it first)."""
    if pinned is not None:
        block = pinned.fts_averages
    else:
        row = conn.execute("SELECT block FROM memories_fts_data WHERE id = 1").fetchone()
        block = None if row is None else row[0]
    if not block:
        return 0, 0
    values = _varints(bytes(block))
    return values[0], sum(values[1:])


def _varints(data: bytes) -> list[int]:
    """SQLite's variable-length integers, one after another (FTS5 writes its records so)."""
    out: list[int] = []
    i = 0
    while i < len(data):
        value = 0
        for n in range(9):
            byte = data[i]
            i += 1
            if n == 8:
                value = (value << 8) | byte
                break
            value = (value << 7) | (byte & 0x7F)
            if byte < 0x80:
                break
        out.append(value)
    return out


def tokenize(conn: sqlite3.Connection, fts: FullText, texts: Sequence[str | None]
             ) -> list[dict[str, int]]:
    """Each text's tokens as FTS5 indexes them (stem -> count), through a scratch table."""
    out: list[dict[str, int]] = [{} for _ in texts]
    todo = [(i + 1, t) for i, t in enumerate(texts) if t]
    if not todo:
        return out
    fts.prepare(conn)
    conn.execute("SAVEPOINT engram_tokens")
    try:
        for start in range(0, len(todo), 2000):
            conn.executemany("INSERT INTO temp.engram_stemmer (rowid, w) VALUES (?, ?)",
                             todo[start:start + 2000])
        for doc, term, count in conn.execute(
                "SELECT doc, term, count(*) FROM temp.engram_stemmer_vocab GROUP BY doc, term"):
            out[doc - 1][term] = count
    finally:
        conn.execute("ROLLBACK TO engram_tokens")
        conn.execute("RELEASE engram_tokens")
    return out


class LexicalIndex:
    """A snapshot's postings and filter columns (:mod:`.lexsnap`, mapped, shared) plus the
    rows written since (in this process), kept fresh by ``row_tx``.

    Positions ``0 .. base.n - 1`` are the snapshot's rows, later ones the rows read
    since. A row changed since the snapshot is a new position (its tokens read again)
    and its snapshot copy is marked dead; a later row changed again with the same text
    is updated in place.
    """

    def __init__(self, base: LexBase) -> None:
        self.lock = threading.Lock()
        self.base = base
        self.seen_tx = base.tx
        self._base_n = base.n
        self._n = base.n
        self._last_row_id = base.last_row_id
        self._dead = np.zeros(base.n, dtype=bool)  # a later copy of the row is held
        self._any_dead = False
        self._codes = {c: Codes() for c in CODED}
        for c in CODED:
            self._codes[c].by_value = dict(base.codes[c])
        # the rows after the base, at positions base.n + i
        self._row_ids = np.zeros(0, dtype=np.int64)
        self._size = np.zeros(0, dtype=np.float64)  # tokens in the row, all columns
        self._text_hash = np.zeros(0, dtype=np.int64)
        self._cols: dict[str, np.ndarray] = {
            **{c: np.zeros(0, dtype=np.int32) for c in CODED},
            **{c: np.zeros(0, dtype=np.int64) for c in TIMES}}
        self._pos: dict[int, int] = {}  # row id -> position, for rows after the base
        # postings of the rows after the base: term -> ([position], [count])
        self._delta: dict[str, tuple[list[int], list[int]]] = {}
        self._delta_arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return self._n

    # -- keeping fresh ------------------------------------------------------------------

    def _grow(self, need: int) -> None:
        cap = len(self._row_ids)
        if need <= cap:
            return
        cap = max(need, cap * 2, 1024)
        self._row_ids = np.resize(self._row_ids, cap)
        self._size = np.resize(self._size, cap)
        self._text_hash = np.resize(self._text_hash, cap)
        self._dead = np.resize(self._dead, self._base_n + cap)
        self._cols = {k: np.resize(v, cap) for k, v in self._cols.items()}

    def _set(self, pos: int, row: Sequence[Any]) -> None:
        (row_id, ns, layer, author, status, tx_from, tx_to, vfrom, vto, rec, _, text) = row
        cols, codes, i = self._cols, self._codes, pos - self._base_n
        self._row_ids[i] = row_id
        self._last_row_id = max(self._last_row_id, row_id)
        self._dead[pos] = False
        self._text_hash[i] = hash(text)
        cols["namespace"][i] = codes["namespace"].code(ns)
        cols["layer"][i] = codes["layer"].code(layer)
        cols["author"][i] = codes["author"].code(author)
        cols["status"][i] = codes["status"].code(status)
        cols["tx_from"][i] = tx_from
        cols["tx_to"][i] = NONE if tx_to is None else tx_to
        cols["valid_from"][i] = vfrom
        cols["valid_to"][i] = NONE if vto is None else vto
        cols["recorded_at"][i] = rec

    def _position(self, row_id: int) -> int | None:
        pos = self._pos.get(row_id)
        if pos is not None:
            return pos
        if self._base_n:
            at = int(np.searchsorted(self.base.row_ids, row_id))
            if at < self._base_n and self.base.row_ids[at] == row_id:
                return at
        return None

    def refresh(self, conn: sqlite3.Connection, fts: FullText, head_tx: int) -> None:
        """Bring the index up to ``head_tx`` (read on ``conn``, at its snapshot)."""
        if head_tx <= self.seen_tx:
            return
        since, params = changed_since(self.seen_tx)
        rows = conn.execute(f"{_ROW_SQL} WHERE {since} ORDER BY row_tx", params).fetchall()
        fresh: list[Sequence[Any]] = []
        for row in rows:
            pos = self._position(row[0])
            if pos is not None and pos >= self._base_n and not self._dead[pos] \
                    and self._text_hash[pos - self._base_n] == hash(row[-1]):
                self._set(pos, row)
                continue
            if pos is not None:
                self._dead[pos] = True
                self._any_dead = True
            fresh.append(row)
        if fresh:
            counts = tokenize(conn, fts, [r[-1] for r in fresh])
            self._grow(self._n - self._base_n + len(fresh))
            for row, terms in zip(fresh, counts, strict=True):
                pos = self._n
                self._set(pos, row)
                self._size[pos - self._base_n] = sum(terms.values()) + 1.0
                self._pos[int(row[0])] = pos
                self._n += 1
                for term, count in terms.items():
                    entry = self._delta.get(term)
                    if entry is None:
                        entry = self._delta[term] = ([], [])
                    entry[0].append(pos)
                    entry[1].append(count)
                    self._delta_arrays.pop(term, None)
        self.seen_tx = max(self.seen_tx, head_tx)

    @property
    def delta_rows(self) -> int:
        return self._n - self._base_n

    @property
    def last_row_id(self) -> int:
        """The largest row id held (new rows get larger ones)."""
        return self._last_row_id

    # -- searching ----------------------------------------------------------------------

    def _take(self, base: np.ndarray, later: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """A per-row column at ``pos``: the snapshot's value or the later row's."""
        if self._n == self._base_n:
            return base[pos]
        late = pos >= self._base_n
        if not late.any():
            return base[pos]
        out = np.empty(len(pos), dtype=later.dtype)
        early = ~late
        out[early] = base[pos[early]]
        out[late] = later[pos[late] - self._base_n]
        return out

    def postings(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        """The live positions holding ``term`` and its count in each."""
        parts_p: list[np.ndarray] = []
        parts_f: list[np.ndarray] = []
        tid = self.base.term_id(term)
        if tid is not None:
            a, b = int(self.base.starts[tid]), int(self.base.starts[tid + 1])
            parts_p.append(self.base.post[a:b])
            parts_f.append(self.base.freq[a:b])
        entry = self._delta.get(term)
        if entry is not None:
            arrays = self._delta_arrays.get(term)
            if arrays is None:
                arrays = self._delta_arrays[term] = (np.array(entry[0], dtype=np.int32),
                                                     np.array(entry[1], dtype=np.int32))
            parts_p.append(arrays[0])
            parts_f.append(arrays[1])
        if not parts_p:
            return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int32)
        pos = parts_p[0] if len(parts_p) == 1 else np.concatenate(parts_p)
        freq = parts_f[0] if len(parts_f) == 1 else np.concatenate(parts_f)
        if self._any_dead:
            live = ~self._dead[pos]
            pos, freq = pos[live], freq[live]
        return pos, freq

    def doc_counts(self, terms: Sequence[str]) -> dict[str, int]:
        """How many live rows hold each term (what ``fts5vocab`` counts)."""
        return {t: len(self.postings(t)[0]) for t in terms}

    def positions(self, row_ids: np.ndarray) -> np.ndarray | None:
        """The live positions of ``row_ids`` (None if one is not held)."""
        base_ids = self.base.row_ids
        pos = np.searchsorted(base_ids, row_ids)
        pos = np.minimum(pos, max(self._base_n - 1, 0))
        held = base_ids[pos] == row_ids if self._base_n else np.zeros(len(row_ids), bool)
        if self._pos:
            for i, r in enumerate(row_ids.tolist()):
                later = self._pos.get(r)
                if later is not None:
                    pos[i], held[i] = later, True
        if not bool(np.all(held)) or (self._any_dead and bool(self._dead[pos].any())):
            return None
        return pos.astype(np.int32)

    def size(self, positions: np.ndarray) -> np.ndarray:
        return self._take(self.base.size, self._size, positions)

    def rank(self, found: Sequence[tuple[np.ndarray, np.ndarray]], flt: RecallFilter,
             rows: int, tokens: int) -> tuple[np.ndarray, np.ndarray]:
        """Row ids passing ``flt``'s column filters in any of ``found`` (each phrase's
        live positions and counts, in the query's order), best first, with their
        BM25 scores.

        ``rows`` and ``tokens``: FTS5's row count and token total (:func:`averages`).
        """
        if not any(len(p) for p, _ in found) or rows <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        everyone = np.concatenate([p for p, _ in found])
        union, inverse = np.unique(everyone, return_inverse=True)
        score = np.zeros(len(union))
        avgdl = tokens / rows
        at = 0
        for pos, freq in found:
            hit = len(pos)
            if not hit:
                continue
            # fts5Bm25Function, term for term (the same operations in the same order)
            idf = math.log((rows - hit + 0.5) / (hit + 0.5))
            if idf <= 0.0:
                idf = 1e-6
            tf = freq.astype(np.float64)
            size = self.size(pos)
            score[inverse[at:at + hit]] += idf * ((tf * (K1 + 1.0))
                                                  / (tf + K1 * ((1 - B) + B * size / avgdl)))
            at += hit
        keep = column_mask(_Gathered(self, union), self._codes_by_value(), flt)
        union, score = union[keep], score[keep]
        ids = self._take(self.base.row_ids, self._row_ids, union)
        order = np.lexsort((ids, -score))
        return ids[order], score[order]

    def _codes_by_value(self) -> Mapping[str, Mapping[str, int]]:
        return {k: c.by_value for k, c in self._codes.items()}


class _Gathered(dict[str, np.ndarray]):
    """The index's filter columns at ``positions``, each read when the filter first asks."""

    def __init__(self, index: LexicalIndex, positions: np.ndarray) -> None:
        super().__init__()
        self._index = index
        self._positions = positions

    def __missing__(self, name: str) -> np.ndarray:
        index = self._index
        value = self[name] = index._take(index.base.cols[name], index._cols[name],
                                         self._positions)
        return value


def in_rank_order(ids: np.ndarray, scores: np.ndarray, limit: int,
                  read: Callable[[list[int], int], list[Any]]) -> list[tuple[Any, float]]:
    """The best ``limit`` of ``ids`` (ranked) that ``read`` passes, with their scores.

    ``read(row_ids, n)`` returns at most ``n`` rows of ``row_ids`` that pass the whole
    filter, in order, each starting with its index in ``row_ids``. Asked a few more
    than ``limit`` at a time: the column filters already held, so nearly all pass.
    """
    out: list[tuple[Any, float]] = []
    step = limit + 8
    for start in range(0, len(ids), step):
        if len(out) >= limit:
            break
        out += [(r, float(scores[start + r[0]]))
                for r in read(ids[start:start + step].tolist(), limit - len(out))]
    return out


def scope_like(words: Mapping[str, Sequence[str]]) -> bool:
    """Whether a query word's token could be a namespace's ``scope`` token (``n``, hex
    digits, ``0``), or a word has no token at all: FTS5 answers those."""
    for tokens in words.values():
        if not tokens:
            return True
        for t in tokens:
            if len(t) >= 2 and t[0] == "n" and t[-1] == "0" and set(t[1:]) <= _SCOPE_LIKE:
                return True
    return False


def _phrase(conn: sqlite3.Connection, index: LexicalIndex, word: str, rows: int,
            tokens: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The postings of a word FTS5 reads as a phrase of several tokens (``max_len``):
    its rows from FTS5 (the index holds no token positions), each row's count of the
    phrase recovered from the phrase's own BM25 score (exactly: an integer)."""
    found = conn.execute(
        "SELECT rowid, bm25(memories_fts, 1.0, 0.0) FROM memories_fts "
        "WHERE memories_fts MATCH ? ORDER BY rowid",
        ['text : "' + word.replace('"', '""') + '"']).fetchall()
    if not found:
        return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int32)
    ids = np.array([r[0] for r in found], dtype=np.int64)
    score = -np.array([r[1] for r in found], dtype=np.float64)
    pos = index.positions(ids)
    if pos is None:
        return None
    hit = len(found)
    idf = math.log((rows - hit + 0.5) / (hit + 0.5))
    if idf <= 0.01:
        return None  # too flat to read a count from
    norm = K1 * ((1 - B) + B * index.size(pos) / (tokens / rows))
    # score = idf * tf (K1 + 1) / (tf + norm), solved for tf
    tf = score * norm / (idf * (K1 + 1.0) - score)
    counts = np.rint(tf)
    if len(counts) and (counts.min() < 1 or float(np.abs(tf - counts).max()) > 1e-3):
        return None
    return pos, counts.astype(np.int32)


class LexicalSearch:
    """The index of one database in this process: its snapshot opened (or built), kept
    fresh, asked, or left to FTS5."""

    # Below this many rows FTS5 ranks alone (few matches: it is as fast).
    min_rows = 20_000
    # Build a missing snapshot in the searching thread up to this many rows, else in
    # the background (FTS5 answers meanwhile).
    sync_build_max = 300_000
    # Build a new snapshot once this many rows (and a quarter of the snapshot) came after it.
    rebuild_min = 20_000
    # After a background build found another process building: wait this long to try again.
    retry_s = 1.0

    def __init__(self, connect: Callable[[], sqlite3.Connection],
                 db_path: str | None = None) -> None:
        self._connect = connect
        self._dir = directory_of(db_path)
        self._pointer = None if self._dir is None else pointer_path(self._dir)
        self._lock = threading.Lock()
        self._index: LexicalIndex | None = None
        self._erased_tx = -1
        self._stamp: tuple[int, int] | None = None  # lex-current's, when last read
        self._pending: LexBase | None = None  # built or published, not yet checked
        self._builder: threading.Thread | None = None
        self._retry_at = 0.0
        self._words = QueryWords()
        self.builds = 0

    def drop(self) -> None:
        """Forget the index (after an erasure: it held the erased rows' words)."""
        with self._lock:
            self._index = self._pending = self._stamp = None

    def ranked(self, conn: sqlite3.Connection, fts: FullText, query: str, flt: RecallFilter,
               total: int, pinned: Pinned | None = None
               ) -> tuple[np.ndarray, np.ndarray] | None:
        """The row ids matching ``query`` that pass ``flt``'s column filters, best first,
        with FTS5's BM25 scores; None when FTS5 must answer (see the module's notes).

        ``conn`` reads inside a snapshot (one read transaction); ``pinned``: that
        snapshot's head and latest erasure, when it read them already.
        """
        if total < self.min_rows or VectorIndex.needs_sql(flt):
            return None
        if pinned is not None:
            head_tx, erased_tx = pinned.head.tx, pinned.erased_tx
        else:
            head_tx, erased_tx = conn.execute(
                "SELECT (SELECT tx FROM chain_head WHERE id = 1), "
                "(SELECT COALESCE(MAX(tx), 0) FROM erasures)").fetchone()
        index = self._current(conn, int(head_tx), int(erased_tx), total)
        if index is None:
            return None
        with index.lock:
            if index.seen_tx > head_tx:
                return None  # refreshed past this read's snapshot by another thread
            if total - index.last_row_id > self.rebuild_min:
                # A bulk load since: tokenising its rows here would stall this search,
                # so FTS5 answers while a new snapshot is built in the background.
                self._start_builder()
                return None
            index.refresh(conn, fts, head_tx)
            words = fts.kept_words(conn, query, total, counts=index.doc_counts)
            if words is None:
                return np.zeros(0, dtype=np.int64), np.zeros(0)
            tokens = self._words.tokens(conn, fts, words)
            if scope_like(tokens):
                return None
            rows, total_tokens = averages(conn, pinned)
            postings = []
            for w in words:
                if len(tokens[w]) == 1:
                    postings.append(index.postings(tokens[w][0]))
                    continue
                phrase = _phrase(conn, index, w, rows, total_tokens)
                if phrase is None:
                    return None
                postings.append(phrase)
            if any(len(p) > rows for p, _ in postings):
                return None  # not FTS5's counts (never at one snapshot): let it answer
            found = index.rank(postings, flt, rows, total_tokens)
            grown = index.delta_rows >= max(self.rebuild_min, len(index) // 4)
        if grown:
            self._start_builder()
        return found

    # -- the snapshot ------------------------------------------------------------------------

    def _current(self, conn: sqlite3.Connection, head_tx: int, erased_tx: int, total: int
                 ) -> LexicalIndex | None:
        """The index to search at this read: the usable snapshot with the rows since, a
        snapshot built here (small databases), or None (FTS5 answers)."""
        with self._lock:
            if self._erased_tx != erased_tx:
                # An erasure: the rows read since the snapshot may hold the erased words,
                # and the snapshot itself must be as of the erasure or later.
                self._index, self._stamp, self._erased_tx = None, None, erased_tx
            self._look(conn, head_tx, erased_tx)
            if self._index is not None:
                return self._index
        if total > self.sync_build_max:
            self._start_builder()
            return None
        built = self._build(wait=True)
        with self._lock:
            if built is not None:
                self._pending = built
            self._look(conn, head_tx, erased_tx)
            return self._index

    def _look(self, conn: sqlite3.Connection, head_tx: int, erased_tx: int) -> None:
        """Adopt a newly published or built snapshot if this read may use it (held lock)."""
        if self._dir is not None and self._pointer is not None:
            stamp = pointer_stamp(self._pointer)
            if stamp != self._stamp:
                self._stamp = stamp
                published = open_current(self._dir) if stamp is not None else None
                if published is not None and (
                        self._pending is None or published.tx >= self._pending.tx):
                    self._pending = published
        base = self._pending
        if base is None:
            return
        if self._index is not None and self._index.base.path == base.path:
            self._pending = None
            return
        ok = _usable(conn, base, head_tx, erased_tx)
        if ok is None:
            return  # newer than this read: kept for a later one
        self._pending = None
        if not ok:
            if base.tx < erased_tx and self._dir is not None and base.path.parent == self._dir:
                remove_snapshot(base)  # published before an erasure: its words must go
            return
        if self._index is None or base.tx >= self._index.base.tx:
            self._index = LexicalIndex(base)

    def _start_builder(self) -> None:
        with self._lock:
            if (self._builder is not None and self._builder.is_alive()) \
                    or time.monotonic() < self._retry_at:
                return

            def run() -> None:
                built = self._build(wait=False)
                with self._lock:
                    if built is None:
                        self._retry_at = time.monotonic() + self.retry_s
                    else:
                        self._pending = built

            self._builder = threading.Thread(target=run, name="engramdb-lexical", daemon=True)
            self._builder.start()

    def _build(self, *, wait: bool) -> LexBase | None:
        """A snapshot built and published on a private connection, or the published one if
        it is recent enough (another process built it meanwhile); None if another process
        holds the builder lock (``wait``: wait for it instead) or it could not be built
        (logged: FTS5 answers)."""
        try:
            conn = self._connect()
            try:
                base, built = self._publish(conn, wait=wait)
            finally:
                conn.close()
        except (sqlite3.Error, ValueError, MemoryError, OSError, InvalidInput) as exc:
            log.warning("full-text index not built (FTS5 answers alone): %s", exc)
            return None
        if built:
            self.builds += 1
            _release_freed()
        return base

    def _publish(self, conn: sqlite3.Connection, *, wait: bool) -> tuple[LexBase | None, bool]:
        if self._dir is None:
            return build_base(conn, None), True
        try:
            with lock(self._dir, wait=wait) as mine:
                if not mine:
                    return None, False
                current = open_current(self._dir)
                if current is not None and self._recent(conn, current):
                    return current, False
                return build_base(conn, self._dir, erased_tx=lambda: conn.execute(
                    "SELECT COALESCE(MAX(tx), 0) FROM erasures").fetchone()[0]), True
        except (OSError, InvalidInput) as exc:  # no place to publish it: kept in this process
            log.warning("full-text snapshot not published (kept in this process): %s", exc)
            return build_base(conn, None), True

    def _recent(self, conn: sqlite3.Connection, base: LexBase) -> bool:
        """Whether ``base`` is usable now with fewer than ``rebuild_min`` rows since."""
        head_tx, erased_tx = conn.execute(
            "SELECT (SELECT tx FROM chain_head WHERE id = 1), "
            "(SELECT COALESCE(MAX(tx), 0) FROM erasures)").fetchone()
        if not _usable(conn, base, int(head_tx or 0), int(erased_tx)):
            return False
        since, params = changed_since(base.tx)
        return bool(conn.execute(f"SELECT COUNT(*) FROM memories WHERE {since}",
                                 params).fetchone()[0] < self.rebuild_min)


def _release_freed() -> None:
    """Hand the memory a build freed back to the system (glibc keeps freed heap pages of
    its many small objects otherwise: ~180 MB after a base of 1M rows). No-op elsewhere."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _usable(conn: sqlite3.Connection, base: LexBase, head_tx: int, erased_tx: int
            ) -> bool | None:
    """Whether a read at ``head_tx`` (latest erasure ``erased_tx``) may use ``base``: a
    snapshot of this database (its chain hash at its tx matches), not older than the
    latest erasure; None if it is newer than the read."""
    if base.tx > head_tx:
        return None
    if base.tx < erased_tx:
        return False
    if base.tx == 0:
        return base.n == 0
    row = conn.execute("SELECT hash FROM events WHERE tx = ? ORDER BY seq DESC LIMIT 1",
                       (base.tx,)).fetchone()
    return row is not None and row[0] == base.hash
