"""The hybrid ranking's relevance is a weighted mean of its cues: always in [0, 1], and 1
exactly for a memory that matches on every cue the query applies.

Recall blends relevance with recency and importance (:func:`engramdb.retrieval.rank.blend`),
so a relevance outside [0, 1], or one whose best possible value depends on which cues a query
happens to switch on, would let recency outweigh a perfect match. Pure functions, no embedder.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engramdb.retrieval.hybrid import ContextWeights, rank_hybrid

NOW = int(datetime(2024, 6, 1, tzinfo=UTC).timestamp() * 1_000_000)
DAY = 86_400 * 1_000_000
WORDS = ["Ana:", "Ben:", "pottery", "class", "lake", "hiking", "last", "Friday", "in", "2024",
         "the", "bowls", "wheel", "May", "painted", "thanks", "sure"]


def _row(i: int, text: str, session: str | None, valid_from: int | None) -> dict[str, Any]:
    return {"id": f"m{i:04d}", "version": 1, "text": text, "namespace": "chat",
            "session": session, "valid_from": valid_from, "recorded_at": NOW - i * DAY,
            "importance": 0.0, "metadata": {}}


candidate = st.tuples(
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=30).map(" ".join),
    st.sampled_from([None, "s1", "s2"]),
    st.one_of(st.none(), st.integers(NOW - 400 * DAY, NOW)),
    st.floats(-1.0, 1.0),
    st.booleans(), st.booleans())
queries = st.sampled_from(["When did Ana go hiking?", "What did Ben make in pottery class?",
                           "Where did Ana paint in May 2024?", "thanks", "lake"])


@settings(max_examples=200, deadline=None)
@given(query=queries, cands=st.lists(candidate, min_size=1, max_size=25))
def test_relevance_stays_within_zero_and_one(query: str, cands: list[Any]) -> None:
    rows = [_row(i, *c[:3]) for i, c in enumerate(cands)]
    text_hits = [(r, 10.0 - i) for i, (r, c) in enumerate(zip(rows, cands, strict=True)) if c[4]]
    vector_hits = sorted(((r, c[3]) for r, c in zip(rows, cands, strict=True) if c[5]),
                         key=lambda h: -h[1])
    for hit in rank_hybrid(query, text_hits, vector_hits, now_micros=NOW, k=len(rows)):
        assert 0.0 <= hit.why["relevance"] <= 1.0 + 1e-9, hit.why


@pytest.mark.parametrize("query", [
    "Where did Ana paint the lake?",                 # no time cue
    "When did Ana paint the lake?",                  # a "when" question
    "Where did Ana paint the lake in May 2024?",     # a named date
    "When did Ana paint the lake in May 2024?",      # both
])
def test_a_memory_matching_on_every_cue_has_relevance_one(query: str) -> None:
    # Two alike turns of Ana's, side by side in one session, long, dated inside the span
    # the query names and saying when: each is the other's neighbour and the session's best.
    text = ("Ana: I painted the lake last Friday, in May 2024, from the old wooden pier with "
            "my new brushes, a folding easel, two canvases and a thermos of coffee")
    may = int(datetime(2024, 5, 10, tzinfo=UTC).timestamp() * 1_000_000)
    best = [_row(1, text, "s1", may), _row(2, text, "s1", may)]
    others = [_row(3 + i, t, "s2", NOW - 30 * DAY) for i, t in enumerate(
        ["Ben: Sure.", "Ben: The wheel spun too fast for the bowls.", "Ben: Thanks!"])]
    text_hits = [(r, 5.0) for r in [*best, *others]]
    vector_hits = [(best[0], 0.9), (best[1], 0.9), *((r, 0.1) for r in others)]
    hits = rank_hybrid(query, text_hits, vector_hits, now_micros=NOW, k=5)
    top = hits[0].why
    assert top["relevance"] == pytest.approx(1.0), top
    assert hits[0].row["id"] in {"m0001", "m0002"}
    # Switching a cue off keeps the scale: the best match is still exactly 1.
    for off in ({"length": 0.0}, {"speaker": 0.0}, {"neighbour": 0.0, "session": 0.0}):
        alone = rank_hybrid(query, text_hits, vector_hits, now_micros=NOW, k=1,
                            context=ContextWeights(**off))
        assert alone[0].why["relevance"] == pytest.approx(1.0), (off, alone[0].why)
