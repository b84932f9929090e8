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
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TermStats", "choose_lexemes", "content_words", "load_term_stats", "tsquery_literal"]

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
