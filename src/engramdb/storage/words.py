"""The words of a memory's text, as the recall ranking counts them, stored at write time.

The hybrid ranking (:mod:`engramdb.retrieval.hybrid`) scores each recall candidate
by BM25 over the candidates themselves, which needs how often each word occurs in
each candidate. Splitting and lower-casing every candidate's text on every recall
was most of the ranking's cost, so a backend that can stores :func:`stored_words`
of each memory version in the row itself (the bookkeeping column ``words``,
migration 0020; written by :class:`~engramdb.storage.sql.SqlWriteTx` with the row)
and hands it to the ranking with the row under :data:`WORDS_KEY`.

The stored form is the text's lower-cased ``\\w+`` words joined by single spaces,
in order, repeats kept: ``stored_words(t).split()`` is exactly
``WORD.findall(t.lower())``, so counts, lengths and any later choice of stemmer or
stopwords are computed from it exactly as from the text. It is derived data, like
the full-text index: filled from ``text`` by the migration (SQLite), deleted with
the row (an erasure removes it), and a row without it is ranked from its text.
"""

from __future__ import annotations

import re

__all__ = ["WORD", "WORDS_KEY", "stored_words"]

WORD = re.compile(r"\w+", re.UNICODE)
# The key a search row carries its stored words under (not a memory column).
WORDS_KEY = "_words"
# In ASCII text a \w character is a letter, a digit or "_": every other ASCII
# character becomes a space, so splitting on whitespace finds WORD's matches.
_ASCII_GAPS = str.maketrans({c: " " for c in map(chr, range(128))
                             if not (c.isalnum() or c == "_")})


def stored_words(text: str | None) -> str:
    """``text``'s lower-cased words joined by spaces (``""`` for no text)."""
    if not text:
        return ""
    if text.isascii():  # most text: a third faster than the regular expression
        return " ".join(text.lower().translate(_ASCII_GAPS).split())
    return " ".join(WORD.findall(text.lower()))
