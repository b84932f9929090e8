"""The Python porter stemmer gives exactly the stems FTS5's ``porter unicode61`` indexes.

The full-text word pruning (recall, and a write's contradiction check) counts a
word's rows by its stem in ``fts5vocab``. A word of ASCII letters and digits is
now stemmed in Python (``storage/sqlite/porter.py``) instead of through a scratch
FTS5 table: a stem that differed from FTS5's would count the wrong rows, so a
rare word could be pruned as absent and a contradiction's candidate missed.
Checked against FTS5's own tokenizer on every word of this repository's sources
and documents, on words built from every suffix the algorithm knows, and on
random words; and the storage layer's stems for those words come with no round
trip to FTS5.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engramdb.storage.sqlite.fulltext import FullText
from engramdb.storage.sqlite.porter import fts5_porter, stem_ascii_word

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def oracle() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE s USING fts5(w, tokenize = 'porter unicode61')")
    conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab(s, instance)")
    yield conn
    conn.close()


def fts5_stems(conn: sqlite3.Connection, words: Sequence[str]) -> list[str | None]:
    """The first token FTS5 indexes for each word (None: no token)."""
    out: list[str | None] = []
    for start in range(0, len(words), 5_000):
        part = words[start:start + 5_000]
        conn.execute("DELETE FROM s")
        conn.executemany("INSERT INTO s (rowid, w) VALUES (?, ?)",
                         list(enumerate(part, start=1)))
        got = dict(conn.execute("SELECT doc, term FROM v WHERE offset = 0").fetchall())
        out += [got.get(i) for i in range(1, len(part) + 1)]
    return out


def _repository_words() -> list[str]:
    words: set[str] = set()
    for pattern in ("src/**/*.py", "tests/*.py", "docs/*.md", "*.md"):
        for path in ROOT.glob(pattern):
            words.update(re.findall(r"[A-Za-z0-9]+", path.read_text(encoding="utf-8")))
    return sorted(words)


_SUFFIXES = ("s", "es", "sses", "ies", "ss", "eed", "ed", "ing", "at", "bl", "iz", "y",
             "ational", "tional", "enci", "anci", "izer", "logi", "bli", "alli", "entli",
             "eli", "ousli", "ization", "ation", "ator", "alism", "iveness", "fulness",
             "ousness", "aliti", "iviti", "biliti", "ical", "ness", "icate", "iciti", "ful",
             "ative", "alize", "al", "ance", "ence", "er", "ic", "able", "ible", "ant",
             "ement", "ment", "ent", "sion", "tion", "ion", "ou", "ism", "ate", "iti", "ous",
             "ive", "ize", "e", "ll", "l")
_ROOTS = ("", "a", "y", "b", "ay", "by", "ab", "yb", "ya", "sy", "hop", "fil", "tr", "oy",
          "agre", "conflat", "troubl", "siz", "fail", "cr", "gener", "rat", "feed", "relat",
          "condit", "val", "digit", "hopp", "tann", "fall", "hiss", "fizz", "w", "x", "bow",
          "box", "tray", "sky", "motor", "ration", "electr", "form", "sens", "adopt", "irr",
          "dep", "ceas", "contr", "oll", "1", "a1", "x9z", "ee", "ii", "uu")


def _suffix_words() -> list[str]:
    return sorted({r + a + b for r in _ROOTS for a in ("", *_SUFFIXES) for b in _SUFFIXES})


@pytest.mark.parametrize("source", ["repository", "suffixes"])
def test_equal_to_fts5_on_word_lists(oracle: sqlite3.Connection, source: str) -> None:
    words = _repository_words() if source == "repository" else _suffix_words()
    assert len(words) > 5_000
    expected = fts5_stems(oracle, words)
    differ = [(w, stem_ascii_word(w), e) for w, e in zip(words, expected, strict=True)
              if stem_ascii_word(w) != e]
    assert differ == []


_ASCII = st.text(alphabet="aeiouybcdlnstrzwxgmAEYSZ0129", min_size=1, max_size=20)


@settings(max_examples=3_000, deadline=None)
@given(st.lists(_ASCII, min_size=1, max_size=40))
def test_equal_to_fts5_on_random_words(oracle: sqlite3.Connection, words: list[str]) -> None:
    assert [stem_ascii_word(w) for w in words] == fts5_stems(oracle, words)


def test_long_and_short_tokens_pass_through(oracle: sqlite3.Connection) -> None:
    words = ["ab", "is", "Y", "a" * 63 + "s", "b" * 64 + "ing", "x" * 200 + "ational"]
    assert [stem_ascii_word(w) for w in words] == fts5_stems(oracle, words)
    assert fts5_porter("relational") == "relat"


def test_words_of_other_characters_are_left_to_fts5() -> None:
    assert stem_ascii_word("café") is None
    assert stem_ascii_word("a_b") is None
    assert stem_ascii_word("INC-7") is None


def test_storage_stems_ascii_words_without_a_round_trip(oracle: sqlite3.Connection
                                                         ) -> None:
    """FullText.stems: ASCII words stemmed in process, others still by FTS5, all equal
    to what FTS5 indexes (the stems decide which rows a word's count reads)."""
    conn = sqlite3.connect(":memory:")
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    fts = FullText()
    ascii_words = ["Generalizations", "hopping", "conflated", "relational", "7", "sky"]
    other = ["café", "naïveté", "snake_case", "résumés"]
    got = fts.stems(conn, ascii_words)
    assert not any("engram_stemmer" in s for s in statements)
    got |= fts.stems(conn, other)
    assert any("INSERT INTO temp.engram_stemmer" in s for s in statements)
    words = ascii_words + other
    assert [got[w] for w in words] == fts5_stems(oracle, words)


_SNAKE = st.text(alphabet="aeiouybcdlnstrzwxgmAEYSZ0129_", min_size=1, max_size=24)


@settings(max_examples=2_000, deadline=None)
@given(st.lists(_SNAKE, min_size=1, max_size=40))
def test_words_with_underscores_stem_as_fts5_indexes_them(oracle: sqlite3.Connection,
                                                          words: list[str]) -> None:
    """A word such as ``max_lines`` or ``__init__`` (``\\w`` holds ``_``; unicode61
    separates at it) gets the stem of its first token, or none, with no round trip."""
    conn = sqlite3.connect(":memory:")
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    got = FullText().stems(conn, words)
    assert [got[w] for w in words] == fts5_stems(oracle, words)
    assert statements == []


def test_snake_case_words_of_the_sources_stem_as_fts5_indexes_them(
        oracle: sqlite3.Connection) -> None:
    words = sorted({w for path in ROOT.glob("src/**/*.py")
                    for w in re.findall(r"\w+", path.read_text(encoding="utf-8"))
                    if "_" in w and w.isascii()})
    assert len(words) > 1_000
    got = FullText().stems(sqlite3.connect(":memory:"), words)
    assert [got[w] for w in words] == fts5_stems(oracle, words)
