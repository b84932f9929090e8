"""Time cues in recall: a question naming a date, and a "when" question, on real text and the
real embedder; and the date reading itself (:mod:`engramdb.retrieval.temporal`).

Like tests/test_recall_quality.py, each ranking scenario also ranks the very same candidates
with the cue switched off, to show it is the cue that puts the answer where the user finds it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import engramdb
from engramdb.retrieval.hybrid import ContextWeights
from engramdb.retrieval.temporal import asks_when, named_span, span_affinity, states_time
from tests.support.ranking import rank_candidates

NS = "chat/ana-ben"


def _micros(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1_000_000)


def _load(db: Any, turns: list[tuple[datetime, str]]) -> None:
    db.remember_many([
        {"text": text, "namespace": NS, "layer": "episodic", "valid_from": when,
         "session": when.date().isoformat()}
        for when, text in turns])


def _ranked(db: Any, query: str, context: ContextWeights | None = None) -> list[str]:
    return rank_candidates(db, NS, query, context)


@pytest.fixture
def chat(tmp_path, embedder) -> Any:
    db = engramdb.open(tmp_path / "chat.db", embedder=embedder)
    yield db
    db.close()


FILLER = [
    (datetime(2024, 2, 2, 18, tzinfo=UTC), "Ben: The new coach keeps changing the line-up."),
    (datetime(2024, 2, 9, 18, tzinfo=UTC), "Ana: Work has been hectic, we ship the app on Friday."),
    (datetime(2024, 3, 15, 18, tzinfo=UTC), "Ben: My sister found a flat near the river."),
    (datetime(2024, 4, 5, 18, tzinfo=UTC), "Ana: The weather has been awful, rain every day."),
    (datetime(2024, 5, 10, 18, tzinfo=UTC), "Ben: I have been reading a lot of history books."),
]


def test_a_question_naming_a_month_finds_what_was_told_that_month(chat: Any) -> None:
    march = "Ana: I went hiking in the hills, hiking there is the best way to relax."
    april = "Ana: I went hiking by the lake, the water was so calm."
    _load(chat, [(datetime(2024, 3, 8, 18, tzinfo=UTC), march),
                 (datetime(2024, 4, 19, 18, tzinfo=UTC), april), *FILLER])
    query = "Where did Ana go hiking in April 2024?"
    hits = [h.memory.text for h in chat.recall(query, namespace=NS, k=1).hits]
    assert hits == [april]
    undated = _ranked(chat, query, ContextWeights(dates=0.0))
    assert undated.index(march) < undated.index(april), undated[:3]
    # The same question about March finds the March memory.
    assert _ranked(chat, "Where did Ana go hiking in March 2024?")[0] == march


def test_a_when_question_prefers_the_memory_that_says_when(chat: Any) -> None:
    timed = "Ben: Fixed the fence in the garden last Sunday."
    untimed = "Ben: I repaired the fence in the garden, it was hard work."
    _load(chat, [(datetime(2024, 3, 8, 18, tzinfo=UTC), untimed),
                 (datetime(2024, 3, 22, 18, tzinfo=UTC), timed), *FILLER])
    query = "When did Ben repair the garden fence?"
    hits = [h.memory.text for h in chat.recall(query, namespace=NS, k=1).hits]
    assert hits == [timed]
    untouched = _ranked(chat, query, ContextWeights(when=0.0))
    assert untouched.index(untimed) < untouched.index(timed), untouched[:3]
    # Not a question about time: the cue stays off and the ranking is the same.
    other = "What did Ben repair in the garden?"
    assert _ranked(chat, other) == _ranked(chat, other, ContextWeights(when=0.0))


@pytest.mark.parametrize(("query", "span"), [
    ("What movie did Ana watch on 1 May, 2022?", ((2022, 5, 1), (2022, 5, 2))),
    ("What happened on May 7, 2023?", ((2023, 5, 7), (2023, 5, 8))),
    ("What did Ben do on the 3rd of March 2021", ((2021, 3, 3), (2021, 3, 4))),
    ("Where did Ana travel in July 2022?", ((2022, 7, 1), (2022, 8, 1))),
    ("Which gift did Ben get in December 2022?", ((2022, 12, 1), (2023, 1, 1))),
    ("What did Ana achieve in 2023?", ((2023, 1, 1), (2024, 1, 1))),
    ("Where was Ana between June 2022 and August 2022?", ((2022, 6, 1), (2022, 9, 1))),
    ("What did Ben cook on 31 February, 2022?", ((2022, 2, 1), (2022, 3, 1))),  # no such day
])
def test_named_span_reads_the_dates_a_question_names(query: str, span: Any) -> None:
    assert named_span(query) == (_micros(*span[0]), _micros(*span[1]))


@pytest.mark.parametrize("query", [
    "May I ask what Ana said about the lake?",  # a month name without a year is no date
    "What did Ben say about room 2?",
    "Which of the 12345 tickets won?",
    "",
])
def test_a_question_without_a_dated_year_names_no_span(query: str) -> None:
    assert named_span(query) is None


@given(st.text(alphabet=st.characters(blacklist_categories=["Nd"]), max_size=80))
def test_text_without_digits_never_names_a_span(query: str) -> None:
    assert named_span(query) is None


def test_span_affinity_is_one_inside_and_fades_after() -> None:
    day = 86_400 * 1_000_000
    span = (_micros(2022, 7, 1), _micros(2022, 8, 1))
    near = {"after_days": 14.0, "before_days": 2.0}
    assert span_affinity(span, _micros(2022, 7, 15), **near) == 1.0
    assert span_affinity(span, span[1] + 7 * day, **near) == pytest.approx(0.5)
    assert span_affinity(span, span[1] + 14 * day, **near) == 0.0
    assert span_affinity(span, span[0] - 1 * day, **near) == pytest.approx(0.5)
    assert span_affinity(span, span[0] - 3 * day, **near) == 0.0
    assert span_affinity(span, None, **near) == 0.0


def test_when_questions_and_time_statements_are_told_apart() -> None:
    assert asks_when("When did Ana move to Oslo?")
    assert asks_when("How long has Ben had his turtles?")
    assert asks_when("In what year did Ana graduate?")
    assert not asks_when("Where did Ana move?")
    assert states_time("Ana: I moved last week.")
    assert states_time("Ben: We met back in 2019 at the conference.")
    assert states_time("Ana: See you on Friday!")
    assert not states_time("Ana: I moved to a flat near the river.")
    assert not states_time("Ben: You may like the lake.")  # "may" the verb is no time


def test_every_backend_and_door_applies_the_date_cue(db: Any) -> None:
    # valid_from comes back from each backend in its own way; the cue must read it on all.
    march = "Ana: I went hiking in the hills, hiking there is the best way to relax."
    april = "Ana: I went hiking by the lake, the water was so calm."
    _load(db, [(datetime(2024, 3, 8, 18, tzinfo=UTC), march),
               (datetime(2024, 4, 19, 18, tzinfo=UTC), april), *FILLER])
    hits = db.recall("Where did Ana go hiking in April 2024?", namespace=NS, k=2).hits
    assert [h.memory.text for h in hits] == [april, march]
    assert hits[0].why["date"] > 0.0 == hits[1].why["date"]  # the score part says why
