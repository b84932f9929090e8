"""A write's JSON is encoded and decoded no more than it needs, with the same results.

Two cuts on the single-write path (issue 15, a LangGraph put): the metadata size
limit is measured on the text the JSON check already encoded (not on a second
encoding of the decoded value), and a contradiction candidate read from SQLite
parses only the JSON columns the check reads (an assertion's ``value``; the
LangGraph item in ``metadata`` only when the row is copied whole). What a user sees
must not change: the size limit cuts at the same byte, and a candidate row reads
back exactly what was stored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engramdb
from engramdb.codec import check_json, checked_json, json_dumps
from engramdb.engine.rows import EngineConfig
from engramdb.errors import InvalidMetadata
from engramdb.storage.sqlite import candidates
from engramdb.storage.sqlite.candidates import CandidateRow

_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                max_size=12)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | _TEXT
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(_JSON)
def test_checked_text_is_the_stored_encoding(value: Any) -> None:
    checked, text = checked_json(value, what="value")
    assert checked == check_json(value, what="value")
    assert text == json_dumps(checked)


def test_metadata_limit_cuts_at_the_same_byte(tmp_path: Path) -> None:
    limit = 200
    db = engramdb.open(tmp_path / "e.db", embedder=None,
                       config=EngineConfig(max_metadata_bytes=limit))
    try:
        # {"k":"é..."}: 8 bytes around the value, é is two bytes in UTF-8.
        at_limit = {"k": "é" * ((limit - 8) // 2)}
        assert len(json_dumps(at_limit).encode()) == limit
        db.remember("fits exactly", metadata=at_limit)
        over = {"k": "é" * ((limit - 8) // 2) + "x"}
        with pytest.raises(InvalidMetadata):
            db.remember("one byte over", metadata=over)
    finally:
        db.close()


def _row(**given: Any) -> tuple[Any, ...]:
    cols = candidates._COLS
    base = dict.fromkeys(cols)
    base.update(given)
    return tuple(base[c] for c in cols)


def test_candidate_row_reads_back_what_was_stored(monkeypatch: pytest.MonkeyPatch) -> None:
    meta = {"langgraph": {"key": "k", "value": {"text": "a note", "n": [1, 2.5, None]}}}
    row = CandidateRow(_row(id="m1", text="a note", metadata=json_dumps(meta),
                            value=json_dumps("a string value")))
    parsed: list[str] = []
    loads = json.loads
    monkeypatch.setattr(candidates.json, "loads", lambda s: parsed.append(s) or loads(s))
    # The check reads the assertion's value: the item in the metadata stays unparsed.
    assert row["value"] == "a string value"
    assert row.get("value") == "a string value"  # a JSON string is not parsed twice
    assert parsed == [json_dumps("a string value")]
    assert row["metadata"] == meta
    assert row["metadata"] is row["metadata"]
    assert dict(row) == {**dict.fromkeys(candidates._COLS), "id": "m1", "text": "a note",
                         "metadata": meta, "value": "a string value"}
    assert row.as_dict() == dict(row)
    assert CandidateRow(_row(metadata="{}"))["metadata"] == {}
