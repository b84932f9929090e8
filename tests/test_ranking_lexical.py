"""The ranking's lexical score, computed from word counts, is BM25 over the candidates' stems.

Ranking no longer stems every word of every candidate: it counts the words once and looks up
the forms of the query's stems. This checks the shortcut against BM25 written out plainly over
:func:`engramdb.retrieval.hybrid.terms`, on generated texts rich in suffixes and stopwords.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engramdb.retrieval.hybrid import _SPEAKER, _bm25, _words, speaker_named, terms
from engramdb.storage.words import WORD

# Stems, their suffixed forms (including ones the stemmer must not strip), stopwords, case.
WORDS = ["paint", "paints", "painted", "painting", "paintings", "goes", "go", "this", "thi",
         "sing", "sings", "class", "classes", "walk", "Walked", "WALKING", "the", "is",
         "hiking", "hike", "hikes", "ed", "es", "s", "ana", "Ana's", "lake", "lakes"]
text = st.lists(st.sampled_from(WORDS), max_size=12).map(" ".join)


def _plain_bm25(query: str, docs: list[tuple[str, ...]], k1: float, b: float) -> list[float]:
    q = list(dict.fromkeys(terms(query)))
    n = len(docs)
    avg = (sum(len(d) for d in docs) / n or 1.0) if n else 1.0
    out = [0.0] * n
    for t in q:
        holding = [i for i, d in enumerate(docs) if t in d]
        idf = math.log(1 + (n - len(holding) + 0.5) / (len(holding) + 0.5))
        for i in holding:
            tf = docs[i].count(t)
            out[i] += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(docs[i]) / avg))
    return out


@settings(max_examples=300, deadline=None)
@given(query=text, docs=st.lists(text, max_size=8))
def test_word_count_bm25_equals_bm25_over_stems(query: str, docs: list[str]) -> None:
    fast = _bm25(query, [_words(d) for d in docs], 1.2, 0.75)
    plain = _plain_bm25(query, [terms(d) for d in docs], 1.2, 0.75)
    assert fast == pytest.approx(plain, abs=1e-9)


def test_a_candidate_matching_a_rarer_query_word_scores_higher() -> None:
    docs = ["Ana painted the lake", "Ana walked by the lake", "Ana walked home"]
    scores = _bm25("Where did Ana paint?", [_words(d) for d in docs], 1.2, 0.75)
    assert scores[0] > scores[1] == scores[2] > 0.0  # "Ana" is in all three, "paint" in one


# Openings with and without a "Name:" speaker: colons in odd places, tabs, digits, long names.
OPENERS = ["Ana:", "Ana Maria:", "ana:", "Dr. Who:", "O'Brien:", "Ana :", "Ana:x", "2pac:",
           "Ana\t:", "a b c d e:", "Ana:\t", ":", "::", "Ben: Ana:", "time: 10:30", "x"]
opening = st.lists(st.sampled_from(OPENERS + WORDS), min_size=1, max_size=8).map(" ".join)


@settings(max_examples=400, deadline=None)
@given(query=text, said=opening, named=st.sampled_from([None, "", "Ana", "Ana Maria", 3]))
def test_speaker_shortcut_equals_the_speaker_pattern_on_the_opening(
        query: str, said: str, named: object) -> None:
    """speaker_named looks only at the text before the first colon; that is exactly what
    the speaker pattern over the text's first 80 characters finds."""
    row = {"text": said, "metadata": {} if named is None else {"speaker": named}}
    query_words = frozenset(WORD.findall(query.lower()))
    if isinstance(named, str) and named:
        speaker: str | None = named
    else:
        m = _SPEAKER.match(said[:80])
        speaker = m.group(1) if m else None
    words = frozenset(WORD.findall(speaker.lower())) if speaker else frozenset()
    assert speaker_named(query_words, row) == (bool(words) and words <= query_words)
