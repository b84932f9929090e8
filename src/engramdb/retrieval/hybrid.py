"""Calibrated hybrid ranking of recall candidates, with conversational context.

The candidates are the union of the full-text and the vector retrievers' hits.
Each is scored in three steps, all pure functions of the candidates:

1. **Lexical relevance** is BM25 recomputed over the candidate pool itself
   (term rarity measured among the candidates, not over the whole database).
   A word that most candidates share (the name of whoever the whole thread is
   about, a topic every hit mentions) then counts for little, and the words
   that tell candidates apart count for much. Scores are divided by the best
   one, so they lie in [0, 1].
2. **Semantic relevance** is the cosine similarity, rescaled so that the
   best candidate scores 1 and the ``floor_rank``-th best scores 0 (clipped
   at 0): cosine values of different queries are not on one scale, ranks
   within a query are.
3. **Speaker**: a memory whose speaker the query names (``metadata["speaker"]``,
   or the ``Name:`` that opens a transcript line such as ``"Ana: I moved to Oslo"``)
   gains a fixed share: "what did Ana say about X" is about Ana's own words
   more than about others' words addressed to her.
4. **Time**: a query that names calendar dates ("in July 2022", "on 1 May, 2022")
   favours memories valid inside that span or in the days after it (an event is
   usually told shortly after it happened); a "when" question favours memories
   that say when something happened ("last Friday", "in 2021").
   See :mod:`engramdb.retrieval.temporal`.
5. **Context**: a memory recorded in a session (a conversation, a task run)
   often answers a question only together with what was said next to it (a
   reply to a question, a follow-up). Each candidate gains a share of the
   relevance of its nearest earlier and later candidates of the same session
   (order of memory ids, which are time-ordered) and of the best candidate of
   its session.

The blend with recency and importance is the same as :func:`engramdb.retrieval.rank.fuse`'s,
and every part of the score is kept in ``why``.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from engramdb.retrieval.rank import (
    FusionWeights,
    Row,
    ScoredRow,
    blend,
    blended,
    gather,
    top,
)
from engramdb.retrieval.temporal import asks_when, named_span, span_affinity, states_time
from engramdb.storage.words import WORDS_KEY

__all__ = ["ContextWeights", "rank_hybrid", "speaker_named", "terms"]

_WORD = re.compile(r"\w+", re.UNICODE)
# Function words of English questions and statements; content words stay.
_STOPWORDS = frozenset(
    """
    a about after again all also am an and any are as at be been before being but by can
    could did do does doing for from had has have having he her here hers him his how i if
    in into is it its just me my of on or our ours she should so some than that the their
    theirs them then there these they this those to too was we were what when where which
    while who whom why will with would you your yours
    """.split()
)
_SUFFIXES = ("ing", "ed", "es", "s")
# "Name:" or "First Last:" opening a transcript line (at most four words).
_SPEAKER = re.compile(r"^\s*([^\W\d_][\w'.-]*(?: [^\W\d_][\w'.-]*){0,3}):\s", re.UNICODE)


@lru_cache(maxsize=65_536)  # words repeat far more than texts: most calls are hits
def _stem(word: str) -> str:
    """A light suffix strip, so that 'paints', 'painted' and 'painting' agree."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def terms(text: str) -> tuple[str, ...]:
    """The content-word stems of ``text``, in order (repeats kept)."""
    return tuple(_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOPWORDS)


def _words(text: str, stored: str | None = None) -> tuple[Counter[str], int]:
    """How often each lower-cased word occurs in ``text``, and how many content words it has.

    Ranking needs no more of a candidate than this: the occurrences of the query's stems
    are found among the word counts through :func:`_forms`, so a candidate's words are
    never stemmed one by one. ``stored``: the text's words as stored at write time
    (:func:`engramdb.storage.words.stored_words`), which spares splitting the text.
    Memoised for texts of up to 2,000 characters (the same memories come back as
    candidates query after query).
    """
    if stored is not None:
        return _tally(stored) if len(stored) <= 2000 else _tally.__wrapped__(stored)
    return _counted(text) if len(text) <= 2000 else _counted.__wrapped__(text)


@lru_cache(maxsize=16_384)
def _counted(text: str) -> tuple[Counter[str], int]:
    return _counts(_WORD.findall(text.lower()))


@lru_cache(maxsize=16_384)
def _tally(stored: str) -> tuple[Counter[str], int]:
    return _counts(stored.split())


def _counts(words: list[str]) -> tuple[Counter[str], int]:
    counts = Counter(words)
    return counts, len(words) - sum(map(counts.__getitem__, _STOPWORDS.intersection(counts)))


@lru_cache(maxsize=65_536)
def _forms(stem: str) -> frozenset[str]:
    """Every content word whose :func:`_stem` is ``stem``: itself, or it and one suffix."""
    return frozenset(w for w in (stem, *(stem + x for x in _SUFFIXES))
                     if w not in _STOPWORDS and _stem(w) == stem)


@dataclass(frozen=True, slots=True)
class ContextWeights:
    """How lexical and semantic relevance and session context combine."""

    lexical: float = 0.6  # share of lexical relevance; the rest is semantic
    neighbour: float = 0.3  # share of the best adjacent candidate's relevance
    session: float = 0.3  # share of the session's best candidate's relevance
    speaker: float = 0.2  # added when the query names the memory's speaker
    floor_rank: int = 100  # the semantic score is 0 at this rank and below
    when: float = 0.2  # added, for a "when" question, to a memory that states a time
    dates: float = 0.2  # added, scaled by closeness, when the query names dates
    date_after_days: float = 14.0  # a memory this long after the named span gains nothing
    date_before_days: float = 2.0  # nor one this long before it
    k1: float = 1.2
    b: float = 0.75


@lru_cache(maxsize=16_384)
def _speaker_words(opening: str, speaker: str | None) -> frozenset[str]:
    if not speaker:
        m = _SPEAKER.match(opening)
        speaker = m.group(1) if m else None
    return frozenset(_WORD.findall(speaker.lower())) if speaker else frozenset()


def speaker_named(query_words: frozenset[str], row: Row) -> bool:
    """Whether every word of ``row``'s speaker's name is among ``query_words``."""
    meta = row.get("metadata") or {}
    named = meta.get("speaker") if isinstance(meta, dict) else None
    words = _speaker_words(str(row.get("text") or "")[:80],
                           named[:200] if isinstance(named, str) else None)
    return bool(words) and words <= query_words


def _bm25(query: str, docs: Sequence[tuple[Counter[str], int]], k1: float, b: float
          ) -> list[float]:
    """BM25 of each of ``docs`` (word counts and length, from :func:`_words`) for ``query``,
    with term rarity measured among ``docs``; equal to BM25 over their :func:`terms`."""
    stem_of = {w: t for t in dict.fromkeys(terms(query)) for w in _forms(t)}
    n = len(docs)
    if not stem_of or not n:
        return [0.0] * n
    avg = sum(length for _, length in docs) / n or 1.0
    # tf[stem][i]: occurrences of the stem's words in doc i, for the docs holding any.
    tf: dict[str, dict[int, int]] = defaultdict(dict)
    for i, (counts, _) in enumerate(docs):
        for w in stem_of.keys() & counts.keys():
            per_doc = tf[stem_of[w]]
            per_doc[i] = per_doc.get(i, 0) + counts[w]
    out = [0.0] * n
    for per_doc in tf.values():
        idf = math.log(1 + (n - len(per_doc) + 0.5) / (len(per_doc) + 0.5))
        for i, f in per_doc.items():
            out[i] += idf * f * (k1 + 1) / (f + k1 * (1 - b + b * docs[i][1] / avg))
    return out


def _rescaled(values: list[float], floor_rank: int) -> list[float]:
    if not values:
        return []
    ordered = sorted(values, reverse=True)
    top = ordered[0]
    floor = ordered[min(floor_rank, len(ordered)) - 1] if len(ordered) > 1 else top - 1.0
    span = top - floor
    if span <= 0:
        return [1.0 if v >= top else 0.0 for v in values]
    return [max(0.0, (v - floor) / span) for v in values]


def rank_hybrid(
    query: str,
    text_hits: Sequence[tuple[Row, float]],
    vector_hits: Sequence[tuple[Row, float]],
    *,
    now_micros: int,
    k: int,
    weights: FusionWeights | None = None,
    context: ContextWeights | None = None,
) -> list[ScoredRow]:
    """Rank the union of both retrievers' candidates; the top ``k`` rows.

    Args:
        query: the query text (its words are matched against the candidates).
        text_hits: full-text hits, best first, with their engine score.
        vector_hits: vector hits, best first, with their cosine similarity.
        now_micros: the read point's time, for recency.
        k: how many rows to return.
        weights: the recency and importance blend (:class:`FusionWeights`).
        context: lexical/semantic/context shares (:class:`ContextWeights`).

    Returns:
        Rows sorted by descending score (ties broken by newer, then id).
    """
    w = weights or FusionWeights()
    cw = context or ContextWeights()
    rows, why = gather(text_hits, vector_hits)
    keys = list(rows)
    docs = [_words(str(rows[key].get("text") or ""), rows[key].get(WORDS_KEY)) for key in keys]
    lexical = _bm25(query, docs, cw.k1, cw.b)
    best_lexical = max(lexical, default=0.0)
    if best_lexical > 0:
        lexical = [v / best_lexical for v in lexical]
    sims = [why[key].get("vector_similarity") for key in keys]
    known = [s for s in sims if s is not None]
    scaled = iter(_rescaled(known, cw.floor_rank))
    semantic = [0.0 if s is None else next(scaled) for s in sims]
    share = cw.lexical if vector_hits else 1.0
    query_words = frozenset(_WORD.findall(query.lower()))
    when = cw.when if asks_when(query) else 0.0
    span = named_span(query) if cw.dates else None
    base: dict[tuple[str, int], float] = {}
    for key, lx, se, (words, _) in zip(keys, lexical, semantic, docs, strict=True):
        row = rows[key]
        spoke = cw.speaker if speaker_named(query_words, row) else 0.0
        timed = when if when and states_time(str(row.get("text") or ""), words) else 0.0
        dated = 0.0 if span is None else cw.dates * span_affinity(
            span, row.get("valid_from"), after_days=cw.date_after_days,
            before_days=cw.date_before_days)
        base[key] = share * lx + (1 - share) * se + spoke + timed + dated
        why[key].update(lexical=lx, semantic=se, speaker=spoke)
        if when:
            why[key]["states_time"] = timed
        if span is not None:
            why[key]["date"] = dated

    # A memory outside any session is a session of its own.
    sessions: dict[tuple[str, ...], list[tuple[str, int]]] = defaultdict(list)
    for key in sorted(keys):
        row = rows[key]
        group = (("session", str(row.get("namespace")), str(row["session"]))
                 if row.get("session") else ("memory", *map(str, key)))
        sessions[group].append(key)
    context_of = dict.fromkeys(keys, 0.0)
    for members in sessions.values():
        best = max(base[m] for m in members)
        for i, m in enumerate(members):
            before = base[members[i - 1]] if i > 0 else 0.0
            after = base[members[i + 1]] if i + 1 < len(members) else 0.0
            context_of[m] = cw.neighbour * max(before, after) + cw.session * best

    top_possible = ((1.0 + cw.speaker + when + (cw.dates if span else 0.0))
                    * (1.0 + cw.neighbour + cw.session))
    # Score every candidate, then build the explained hits of the best k only.
    scored = []
    for key in keys:
        row = rows[key]
        relevance = (base[key] + context_of[key]) / top_possible
        score = blended(row, relevance, now_micros, w)[0]
        scored.append((-score, -int(row["recorded_at"]), str(row["id"]), key, relevance))
    scored.sort()
    out = []
    for _score, _at, _id, key, relevance in scored[:k]:
        why[key]["context"] = context_of[key]
        out.append(blend(rows[key], relevance, why[key], now_micros, w))
    return top(out, k)
