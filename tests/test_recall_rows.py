"""Recall's candidate rows on SQLite: decoded as every other read decodes a row."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from engramdb.storage.schema import TABLES
from engramdb.storage.sql import decode_row
from engramdb.storage.sqlite.rows import _COLS, ROW_KEY, brief, is_brief
from engramdb.storage.sqlite.rows import candidate as _candidate
from engramdb.storage.words import WORDS_KEY

_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=6)
_VALUE = {"json": st.none() | st.just("{}") | _JSON.map(json.dumps),
          "int": st.none() | st.integers(-(2 ** 63), 2 ** 63 - 1),
          "micros": st.none() | st.integers(0, 2 ** 62),
          "real": st.none() | st.floats(allow_nan=False),
          "text": st.none() | st.text(max_size=12)}


@st.composite
def _rows(draw):
    spec = TABLES["memories"]
    values = tuple(draw(_VALUE.get(spec.columns[c], _VALUE["text"])) for c in _COLS)
    return values, draw(st.none() | st.text(max_size=20))


@given(_rows())
def test_a_candidate_row_is_the_row_decode_row_gives_plus_its_stored_words(row):
    values, words = row
    want = decode_row(TABLES["memories"], _COLS, values)
    if words is not None:
        want[WORDS_KEY] = words
    got = _candidate((*values, words))
    assert got == want
    assert list(got) == list(want)  # same keys in the same order


@given(_rows(), st.integers(1, 2 ** 40))
def test_a_brief_row_is_decode_row_over_its_columns_plus_words_and_row_id(row, row_id):
    values, words = row
    by_name = dict(zip(_COLS, values, strict=True))
    names = ("id", "version", "namespace", "text", "metadata", "importance", "session",
             "valid_from", "recorded_at")
    want = decode_row(TABLES["memories"], names, [by_name[n] for n in names])
    if words is not None:
        want[WORDS_KEY] = words
    want[ROW_KEY] = row_id
    got = brief((*(by_name[n] for n in names), words, row_id))
    assert got == want
    assert list(got) == list(want)
    assert is_brief(got) and not is_brief(_candidate((*values, words)))
