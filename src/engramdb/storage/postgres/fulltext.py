"""Full-text query planning for PostgreSQL: which words to search, and how many rows.

The query is the OR of its content words, as on SQLite, stemmed with the
``english`` configuration that built ``memories.tsv``. Ranking every match
costs a heap visit each, so an OR over a word that half the memories contain
would rank half the table. Like BM25, which gives such a word an inverse
document frequency near zero, the planner here takes words rarest first (by
PostgreSQL's own column statistics, ``pg_stats.most_common_elems``) and stops
adding common ones once the expected matches pass a budget. The rarest word
is always kept; if even it is in more memories than the budget, its matches
are ranked among the newest memories only (a window sized to the budget).
Until the table has statistics, or while every word is rarer than the budget
allows for, the query is exactly the OR of all content words.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import psycopg

from engramdb.model import RecallFilter
from engramdb.storage.postgres.errors import translate
from engramdb.storage.postgres.snapshot import without_every_namespace
from engramdb.storage.schema import TABLES
from engramdb.storage.sql import decode_row, memory_where
from engramdb.storage.words import WORDS_KEY

__all__ = ["TermStats", "choose_lexemes", "content_words", "load_term_stats", "memory_row",
           "search_text", "term_stats", "text_hits", "text_statement", "tsquery_literal"]

_MEMORIES = TABLES["memories"]
_COLUMNS = list(_MEMORIES.columns)
# The same list as the SQLite backend, so both search the same words.
STOPWORDS = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "by", "did", "do", "does", "for", "from", "had",
    "has", "have", "he", "her", "his", "how", "i", "in", "is", "it", "its", "me", "my", "of",
    "on", "or", "our", "she", "so", "that", "the", "their", "them", "they", "this", "to",
    "was", "we", "were", "what", "when", "where", "which", "who", "why", "will", "with", "you",
    "your",
))
_WORD = re.compile(r"\w+", re.UNICODE)
MAX_WORDS = 32


def content_words(text: str) -> list[str]:
    """The distinct lower-cased content words of ``text``, in order (at most 32)."""
    words = [w.lower() for w in _WORD.findall(text)]
    content = [w for w in words if w not in STOPWORDS] or words
    seen: dict[str, None] = {}
    for w in content:
        seen.setdefault(w, None)
    return list(seen)[:MAX_WORDS]


@dataclass(frozen=True, slots=True)
class TermStats:
    """How many memory rows there are and which lexemes are common among them."""

    rows: float = 0.0
    freq: dict[str, float] = field(default_factory=dict)  # fraction of rows containing it
    loaded_at: float = 0.0

    def expected(self, lexeme: str) -> float:
        """Expected number of rows containing ``lexeme`` (0 when it is not common)."""
        return self.freq.get(lexeme, 0.0) * self.rows


def load_term_stats(conn: Any) -> TermStats:
    """Read the planner's statistics for ``memories.tsv`` (cheap: two catalog rows)."""
    row = conn.execute(
        "SELECT GREATEST(c.reltuples, 0), s.most_common_elems::text::text[], "
        "s.most_common_elem_freqs FROM pg_class c LEFT JOIN pg_stats s "
        "ON s.schemaname = current_schema() AND s.tablename = 'memories' AND s.attname = 'tsv' "
        "WHERE c.oid = 'memories'::regclass"
    ).fetchone()
    rows, elems, freqs = row if row else (0.0, None, None)
    freq = dict(zip(elems or [], (freqs or [])[:len(elems or [])], strict=True))
    return TermStats(float(rows or 0.0), freq, time.monotonic())


def choose_lexemes(lexemes: Sequence[str], stats: TermStats, budget: int) -> list[str]:
    """The lexemes to OR together: rarest first, until the expected matches pass ``budget``."""
    ordered = sorted(dict.fromkeys(lexemes), key=lambda lex: (stats.expected(lex), lex))
    chosen: list[str] = []
    expected = 0.0
    for lex in ordered:
        cost = stats.expected(lex)
        if chosen and expected + cost > budget:
            break  # every later word is at least as common
        chosen.append(lex)
        expected += cost
    return chosen


def tsquery_literal(lexemes: Sequence[str]) -> str:
    """A ``tsquery`` text OR-ing already-stemmed lexemes (cast with ``::tsquery``)."""
    return " | ".join("'" + lex.replace("\\", "\\\\").replace("'", "''") + "'"
                      for lex in lexemes)


def search_text(store: Any, query: str, flt: RecallFilter, limit: int, *, brief: bool = False
                ) -> list[tuple[dict[str, Any], float]]:
    """Full-text matches (OR of content words), best ``ts_rank_cd`` first.

    Words are taken rarest first and common ones dropped once the expected
    matches pass ``text_candidates`` (:func:`choose_lexemes`), so a query never
    ranks most of the table; below that size it is the plain OR. ``brief``: each
    row also carries its stored words (:data:`~engramdb.storage.words.WORDS_KEY`),
    which spare the ranking splitting its text.
    """
    stats = term_stats(store)  # before taking a connection: it may need one
    with store._read_conn() as conn:
        statement = text_statement(store, conn, stats, query, flt, limit, brief=brief)
        if statement is None:
            return []
        # Planned for its words every time: a generic plan cannot know how many rows
        # they match and filters every row of the table by its times (~3 ms at 100k).
        cur = store._exec(conn, statement[0], statement[1], prepare=False)
        return text_hits(cur.fetchall(), brief=brief)


def text_statement(store: Any, conn: Any, stats: TermStats, query: str, flt: RecallFilter,
                   limit: int, *, brief: bool = False) -> tuple[str, list[Any]] | None:
    """The full-text statement (``?`` placeholders) and its parameters for
    :func:`search_text`, or None when nothing can match. Stems words not seen
    before on ``conn`` (one round trip, only then); ``stats``: :func:`term_stats`.
    Run it with ``prepare=False`` (planned for its words every time) and read its
    rows with :func:`text_hits`."""
    words = content_words(query)
    if not words or limit <= 0:
        return None
    cols = list(TABLES["memories"].columns)
    cond, params = memory_where(without_every_namespace(store, flt), store.dialect_impl)
    budget = store._text_candidates
    lexemes = [lex for w in words for lex in _stem(store, conn, words)[w]]
    chosen = choose_lexemes(lexemes, stats, budget)
    if not chosen:
        return None  # only words the english configuration does not index
    recent = ""
    expected = sum(stats.expected(lex) for lex in chosen)
    if expected > budget:
        # Even the rarest word is in more memories than the budget: rank its
        # matches among the newest memories only (row_id grows with each row).
        window = int(budget * stats.rows / expected)
        recent = f"AND m.row_id + 0 > (SELECT max(row_id) FROM memories) - {window} "
    sql = (
        f"SELECT {', '.join('m.' + c for c in cols)}, {'m.words, ' if brief else ''}"
        "ts_rank_cd(m.tsv, q.query) AS rank "
        "FROM memories m, CAST(? AS tsquery) AS q(query) "
        f"WHERE m.tsv @@ q.query {recent}AND {cond} "
        f"ORDER BY rank DESC, m.row_id DESC LIMIT {int(limit)}"
    )
    return sql, [tsquery_literal(chosen), *params]


def text_hits(rows: Sequence[Sequence[Any]], *, brief: bool = False
              ) -> list[tuple[dict[str, Any], float]]:
    """The rows of a :func:`text_statement` (of the same ``brief``) as ``(row, rank)``,
    best first."""
    return [(memory_row(r[:-1], brief), max(float(r[-1]), 1e-9)) for r in rows]


def memory_row(r: Sequence[Any], brief: bool) -> dict[str, Any]:
    """A memory row from every memory column and, if ``brief``, then its stored words
    (under :data:`~engramdb.storage.words.WORDS_KEY`, when the row has them)."""
    if not brief:
        return decode_row(_MEMORIES, _COLUMNS, r)
    row = decode_row(_MEMORIES, _COLUMNS, r[:-1])
    if r[-1] is not None:  # rows written before migration 0020 have none
        row[WORDS_KEY] = r[-1]
    return row


def _stem(store: Any, conn: Any, words: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The ``english`` lexemes of each word, asking the server only for new words."""
    cache: dict[str, tuple[str, ...]] = store._lexemes
    todo = [w for w in words if w not in cache]
    if todo:
        rows = store._exec(
            conn,
            "SELECT w.word, array_remove(array_agg(t.lexeme), NULL) "
            "FROM unnest(CAST(? AS text[])) AS w(word) "
            "LEFT JOIN LATERAL unnest(to_tsvector('english', w.word)) AS t ON true "
            "GROUP BY w.word",
            [todo],
        ).fetchall()
        if len(cache) > 50_000:
            cache.clear()
        for word, lexemes in rows:
            cache[word] = tuple(lexemes or ())
    return {w: cache.get(w, ()) for w in words}


def term_stats(store: Any, conn: Any = None) -> TermStats:
    """The storage's term statistics, read again (on ``conn`` if given) when a minute old."""
    stats: TermStats = store._stats
    if time.monotonic() - stats.loaded_at > 60.0:
        with nullcontext(conn) if conn is not None else store._read_conn() as c:
            try:
                stats = store._stats = load_term_stats(c)
            except psycopg.Error as exc:
                raise translate(exc) from exc
    return stats
