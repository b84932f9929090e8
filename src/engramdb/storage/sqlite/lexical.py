"""Full-text ranking in process: FTS5's own postings and BM25 scores, computed with NumPy.

FTS5 ranks a query by calling ``bm25()`` once for every row matching any of its
words (about 5 us a match: each looks up the row's size), so a query whose
rarest kept word is common costs milliseconds. This index holds, per process,
what that ranking reads: for each stem of the ``text`` column the rows holding
it and how often (the *postings*), each row's size in tokens, and the columns
a recall filter tests (namespace, layer, author, status, transaction and valid
times). A query then costs one vectorised pass over its words' postings.

It is a projection, like the vector index (:mod:`.vectors`), and never the
authority:

- The *base* is read from FTS5's index itself (``fts5vocab``) and the
  ``memories`` table in one read transaction, so its postings are exactly what
  FTS5 holds; rows written since (``row_tx`` newer than what the index has seen)
  are read before each search and tokenised by FTS5's tokenizer (``porter
  unicode61``, through a scratch FTS5 table), overriding any older copy. An
  erasure (in any process) drops the whole index: it is rebuilt without the
  erased rows.
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
refreshed it meanwhile), a word with no token or one that could be a namespace
token, SQL-only filters, searches while the index is read and right after a bulk
load go to FTS5 as before.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from engramdb.model import RecallFilter
from engramdb.storage.sqlite.dialect import changed_since
from engramdb.storage.sqlite.fulltext import FullText
from engramdb.storage.sqlite.pinned import Pinned
from engramdb.storage.sqlite.query_tokens import QueryWords
from engramdb.storage.sqlite.vectors import NONE, Codes, Columns, VectorIndex, column_mask

__all__ = ["LexicalIndex", "LexicalSearch", "averages", "in_rank_order", "tokenize"]

log = logging.getLogger("engramdb.index")

# FTS5's bm25() constants (fts5_aux.c).
K1 = 1.2
B = 0.75
_CODED = ("namespace", "layer", "author", "status")
_TIMES = ("tx_from", "tx_to", "valid_from", "valid_to", "recorded_at")
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
    """Postings and filter columns of every memory version, kept fresh by ``row_tx``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen_tx = 0
        self._n = 0
        self._base_n = 0
        self._row_ids = np.zeros(0, dtype=np.int64)
        self._size = np.zeros(0, dtype=np.float64)  # tokens in the row, all columns
        self._text_hash = np.zeros(0, dtype=np.int64)
        self._dead = np.zeros(0, dtype=bool)  # a later copy of the row is held
        self._any_dead = False
        self._cols: dict[str, np.ndarray] = {
            **{c: np.zeros(0, dtype=np.int32) for c in _CODED},
            **{c: np.zeros(0, dtype=np.int64) for c in _TIMES}}
        self._codes = {c: Codes() for c in _CODED}
        self._pos: dict[int, int] = {}  # row id -> position, for rows after the base
        self._last_row_id = 0
        # the base's postings: term -> id, positions and counts per term id in CSR form
        self._terms: dict[str, int] = {}
        self._starts = np.zeros(1, dtype=np.int64)
        self._post = np.zeros(0, dtype=np.int32)
        self._freq = np.zeros(0, dtype=np.int32)
        # postings of the rows after the base: term -> ([position], [count])
        self._delta: dict[str, tuple[list[int], list[int]]] = {}
        self._delta_arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return self._n

    # -- building and keeping fresh ------------------------------------------------------

    def build(self, conn: sqlite3.Connection) -> None:
        """Read the base: every row and FTS5's postings, in one read transaction."""
        vocab = "temp.engram_fts_instance"
        conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {vocab} "
                     "USING fts5vocab('main', 'memories_fts', 'instance')")
        conn.execute("BEGIN")
        try:
            head = conn.execute("SELECT tx FROM chain_head WHERE id = 1").fetchone()
            cur = conn.execute(f"{_ROW_SQL} ORDER BY row_id")
            while batch := cur.fetchmany(20_000):
                self._append_rows(batch)
            # One row per term: its rows, repeated once per occurrence, parsed at once
            # (one array, not one per term: most terms occur once or twice).
            terms, lists = [], []
            for term, docs in conn.execute(
                    f"SELECT term, group_concat(doc) FROM {vocab} WHERE col = 'text' "
                    "GROUP BY term"):
                terms.append(term)
                lists.append(docs)
        finally:
            conn.execute("COMMIT")
        self.seen_tx = int(head[0]) if head else 0
        self._base_n = self._n
        lengths = [s.count(",") + 1 for s in lists]
        docs = (np.fromstring(",".join(lists), dtype=np.int64, sep=",") if lists
                else np.zeros(0, dtype=np.int64))
        del lists
        term_of = np.repeat(np.arange(len(terms), dtype=np.int32), lengths)
        if len(docs) != sum(lengths):
            raise ValueError("the full-text index's postings did not parse")
        order = np.lexsort((docs, term_of))  # rows in order within each term
        if not bool(np.all(order[1:] > order[:-1])):
            docs, term_of = docs[order], term_of[order]
        del order
        # runs of one (term, row): the row's count of the term
        new_run = np.r_[True, (docs[1:] != docs[:-1]) | (term_of[1:] != term_of[:-1])] \
            if len(docs) else np.zeros(0, dtype=bool)
        starts = np.flatnonzero(new_run)
        counts = np.diff(np.r_[starts, len(docs)])
        positions = np.searchsorted(self._row_ids[:self._n], docs[starts])
        self._post = positions.astype(np.int32)
        self._freq = counts.astype(np.int32)
        per_term = np.bincount(term_of[starts], minlength=len(terms))
        self._starts = np.r_[0, np.cumsum(per_term)].astype(np.int64)
        self._terms = {t: i for i, t in enumerate(terms)}
        text_tokens = np.bincount(positions, weights=counts, minlength=self._n)
        self._size[:self._n] = text_tokens + 1.0  # and the one `scope` token

    def _grow(self, need: int) -> None:
        cap = len(self._row_ids)
        if need <= cap:
            return
        cap = max(need, cap * 2, 1024)
        self._row_ids = np.resize(self._row_ids, cap)
        self._size = np.resize(self._size, cap)
        self._text_hash = np.resize(self._text_hash, cap)
        self._dead = np.resize(self._dead, cap)
        self._cols = {k: np.resize(v, cap) for k, v in self._cols.items()}

    def _append_rows(self, rows: Sequence[Sequence[Any]]) -> None:
        """Rows of ``_ROW_SQL`` at new positions (sizes are set by the caller)."""
        self._grow(self._n + len(rows))
        for row in rows:
            self._set(self._n, row)
            self._n += 1

    def _set(self, pos: int, row: Sequence[Any]) -> None:
        (row_id, ns, layer, author, status, tx_from, tx_to, vfrom, vto, rec, _, text) = row
        cols, codes = self._cols, self._codes
        self._row_ids[pos] = row_id
        self._last_row_id = max(self._last_row_id, row_id)
        self._dead[pos] = False
        self._text_hash[pos] = hash(text)
        cols["namespace"][pos] = codes["namespace"].code(ns)
        cols["layer"][pos] = codes["layer"].code(layer)
        cols["author"][pos] = codes["author"].code(author)
        cols["status"][pos] = codes["status"].code(status)
        cols["tx_from"][pos] = tx_from
        cols["tx_to"][pos] = NONE if tx_to is None else tx_to
        cols["valid_from"][pos] = vfrom
        cols["valid_to"][pos] = NONE if vto is None else vto
        cols["recorded_at"][pos] = rec

    def _position(self, row_id: int) -> int | None:
        pos = self._pos.get(row_id)
        if pos is not None:
            return pos
        if self._base_n:
            at = int(np.searchsorted(self._row_ids[:self._base_n], row_id))
            if at < self._base_n and self._row_ids[at] == row_id:
                return at
        return None

    def refresh(self, conn: sqlite3.Connection, fts: FullText, head_tx: int) -> None:
        """Bring the index up to ``head_tx`` (read on ``conn``, at its snapshot).

        A changed row whose text is the same is updated in place (a version closed
        by a newer one); a new row, or one whose text changed, gets a new position
        with its tokens, and an older copy is marked dead.
        """
        if head_tx <= self.seen_tx:
            return
        since, params = changed_since(self.seen_tx)
        rows = conn.execute(f"{_ROW_SQL} WHERE {since} ORDER BY row_tx", params).fetchall()
        fresh: list[Sequence[Any]] = []
        for row in rows:
            pos = self._position(row[0])
            if pos is not None and self._text_hash[pos] == hash(row[-1]) \
                    and not self._dead[pos]:
                self._set(pos, row)
                continue
            if pos is not None:
                self._dead[pos] = True
                self._any_dead = True
            fresh.append(row)
        if fresh:
            counts = tokenize(conn, fts, [r[-1] for r in fresh])
            self._grow(self._n + len(fresh))
            for row, terms in zip(fresh, counts, strict=True):
                pos = self._n
                self._set(pos, row)
                self._size[pos] = sum(terms.values()) + 1.0
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

    def postings(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        """The live positions holding ``term`` and its count in each."""
        parts_p: list[np.ndarray] = []
        parts_f: list[np.ndarray] = []
        tid = self._terms.get(term)
        if tid is not None:
            a, b = int(self._starts[tid]), int(self._starts[tid + 1])
            parts_p.append(self._post[a:b])
            parts_f.append(self._freq[a:b])
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
        pos = np.searchsorted(self._row_ids[:self._base_n], row_ids)
        pos = np.minimum(pos, max(self._base_n - 1, 0))
        held = self._row_ids[pos] == row_ids if self._base_n else np.zeros(len(row_ids), bool)
        if self._pos:
            for i, r in enumerate(row_ids.tolist()):
                later = self._pos.get(r)
                if later is not None:
                    pos[i], held[i] = later, True
        if not bool(np.all(held)) or (self._any_dead and bool(self._dead[pos].any())):
            return None
        return pos.astype(np.int32)

    def size(self, positions: np.ndarray) -> np.ndarray:
        return self._size[positions]

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
            size = self._size[pos]
            score[inverse[at:at + hit]] += idf * ((tf * (K1 + 1.0))
                                                  / (tf + K1 * ((1 - B) + B * size / avgdl)))
            at += hit
        keep = column_mask(Columns(self._cols, union), self._codes_by_value(), flt)
        union, score = union[keep], score[keep]
        ids = self._row_ids[union]
        order = np.lexsort((ids, -score))
        return ids[order], score[order]

    def _codes_by_value(self) -> Mapping[str, Mapping[str, int]]:
        return {k: c.by_value for k, c in self._codes.items()}


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
    """The index of one database in this process: built, kept fresh, asked, or left to FTS5."""

    # Below this many rows FTS5 ranks alone (few matches: it is as fast).
    min_rows = 20_000
    # Build a missing index in the searching thread up to this many rows, else in
    # the background (FTS5 answers meanwhile).
    sync_build_max = 300_000
    # Read a new base once this many rows (and a quarter of the base) came after it.
    rebuild_min = 20_000

    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._lock = threading.Lock()
        self._index: LexicalIndex | None = None
        self._erased_tx = -1
        self._builder: threading.Thread | None = None
        self._words = QueryWords()
        self.builds = 0

    def drop(self) -> None:
        """Forget the index (after an erasure: it held the erased rows' words)."""
        with self._lock:
            self._index = None

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
        index = self._current(int(erased_tx), total)
        if index is None:
            return None
        with index.lock:
            if index.seen_tx > head_tx:
                return None  # refreshed past this read's snapshot by another thread
            if total - index.last_row_id > self.rebuild_min:
                # A bulk load since: tokenising its rows here would stall this search,
                # so FTS5 answers while a new base is read in the background.
                self._start_builder(int(erased_tx))
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
            self._start_builder(int(erased_tx))
        return found

    def _current(self, erased_tx: int, total: int) -> LexicalIndex | None:
        with self._lock:
            if self._erased_tx != erased_tx:
                self._index = None  # an erasure: its rows' words must not stay here
            index = self._index
        if index is not None:
            return index
        if total > self.sync_build_max:
            self._start_builder(erased_tx)
            return None
        built = self._build()
        with self._lock:
            if self._index is None and built is not None:
                self._index, self._erased_tx = built, erased_tx
            return self._index

    def _start_builder(self, erased_tx: int) -> None:
        with self._lock:
            if self._builder is not None and self._builder.is_alive():
                return

            def run() -> None:
                built = self._build()
                if built is not None:
                    with self._lock:
                        self._index, self._erased_tx = built, erased_tx

            self._builder = threading.Thread(target=run, name="engramdb-lexical", daemon=True)
            self._builder.start()

    def _build(self) -> LexicalIndex | None:
        """A base read on a private connection (None, logged, if it could not be read)."""
        index = LexicalIndex()
        try:
            conn = self._connect()
            try:
                index.build(conn)
            finally:
                conn.close()
        except (sqlite3.Error, ValueError, MemoryError) as exc:
            log.warning("full-text index not built (FTS5 answers alone): %s", exc)
            return None
        self.builds += 1
        return index
