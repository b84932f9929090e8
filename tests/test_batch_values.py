"""The values a batch hands back are the values the classes themselves make.

``validate_fields`` and ``memory_from_row`` build ``MemoryDraft`` and ``Memory``
without the dataclasses' generated ``__init__`` (a batch builds thousands); what
they build must be indistinguishable from the class's own: equal, the same
repr, every field where it belongs, usable as any other value (``replace``,
pickling). End to end, what ``remember_many`` returns is what a read returns.
"""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engramdb
from engramdb.engine.rows import EngineConfig, memory_from_row, validate_fields
from engramdb.model import Memory, MemoryDraft

_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                min_size=1, max_size=30).filter(str.strip)
_SHORT = st.none() | st.text("abcxyz", min_size=1, max_size=8)
_WHEN = st.none() | st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2030, 1, 1),
                                 timezones=st.just(UTC))


@settings(max_examples=200, deadline=None)
@given(text=_TEXT, layer=st.sampled_from(["episodic", "semantic", "working"]),
       subject=_SHORT, source=_SHORT, session=_SHORT,
       importance=st.floats(0, 1), confidence=st.floats(0, 1),
       metadata=st.dictionaries(st.text("kv", min_size=1, max_size=3), st.integers(), max_size=3),
       valid_from=_WHEN, expires_at=_WHEN,
       key=st.none() | st.text("k0123", min_size=1, max_size=10))
def test_a_validated_draft_is_the_draft_the_class_makes(
        text: str, layer: str, subject: str | None, source: str | None, session: str | None,
        importance: float, confidence: float, metadata: dict[str, int],
        valid_from: datetime | None, expires_at: datetime | None, key: str | None) -> None:
    given_fields: dict[str, Any] = {
        "text": text, "namespace": "team/a", "layer": layer, "subject": subject,
        "importance": importance, "confidence": confidence, "metadata": metadata,
        "source": source, "session": session, "valid_from": valid_from,
        "expires_at": expires_at, "idempotency_key": key}
    got = validate_fields(given_fields, EngineConfig(), None)
    assert got.metadata == metadata  # validation may order its keys: the same object
    want = MemoryDraft(**{**given_fields, "metadata": got.metadata})
    assert type(got) is MemoryDraft
    assert got == want and repr(got) == repr(want)
    assert pickle.loads(pickle.dumps(got)) == want


def test_a_memory_read_from_a_row_is_the_memory_the_class_makes() -> None:
    row = {"id": "m1", "version": 2, "namespace": "team/a", "layer": "semantic",
           "text": "Ana likes tea", "subject": "ana", "predicate": "likes", "value": "tea",
           "metadata": {"k": 1}, "importance": 0.25, "confidence": 0.75, "author": "ana",
           "source": "chat", "session": "s1", "valid_from": 1_700_000_000_000_000,
           "valid_to": None, "tx_from": 7, "tx_to": 9, "recorded_at": 1_700_000_000_000_001,
           "status": "active", "expires_at": None}
    got = memory_from_row(row, as_of=8)  # read before its end: open, active
    t0 = datetime.fromtimestamp(1_700_000_000, UTC)
    want = Memory("m1", 2, "team/a", "semantic", "Ana likes tea", "ana", "likes", "tea",
                  {"k": 1}, 0.25, 0.75, "ana", "chat", "s1", t0, None, 7, None,
                  t0.replace(microsecond=1), "active", None)
    assert got == want and repr(got) == repr(want)
    assert got.conflicts == ()
    assert memory_from_row(row).status == "superseded" and memory_from_row(row).tx_to == 9
    assert got.replace(text="x").text == "x" and got.replace(text="x").id == "m1"
    assert pickle.loads(pickle.dumps(got)) == want
    with pytest.raises(AttributeError):
        got.text = "changed"  # type: ignore[misc]  # still frozen


def test_what_a_batch_returns_is_what_a_read_returns(tmp_path: Any) -> None:
    db = engramdb.open(tmp_path / "v.db")
    try:
        made = db.remember_many([
            {"text": f"Reading {i} of the meter", "namespace": "iot/a", "layer": "episodic",
             "metadata": {"i": i}, "session": "s" if i % 2 else None, "importance": 0.5}
            for i in range(50)])
        assert [db.get(m.id) for m in made] == made
        assert all(type(m) is Memory and m.version == 1 and m.status == "active"
                   for m in made)
    finally:
        db.close()
