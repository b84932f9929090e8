"""Calibrated hybrid ranking of recall candidates, with conversational context.

The candidates are the union of the full-text and the vector retrievers' hits.
Each gets a relevance in [0, 1]: the weighted mean of a few cues, each itself
in [0, 1], all pure functions of the candidates (:class:`ContextWeights` holds
the weights, fitted on LoCoMo's tuning half; see BENCHMARKS.md, ``quality``):

1. **Lexical**: BM25 recomputed over the candidate pool itself (term rarity
   measured among the candidates, not over the whole database), divided by the
   best candidate's. A word that most candidates share (the name of whoever
   the whole thread is about) counts for little, the words that tell
   candidates apart count for much.
2. **Full text**: the full-text retriever's own rank (``10 / (9 + rank)``): its
   statistics span the database, the pool's do not. A rank, not the backend's
   score, so that SQLite's BM25 and PostgreSQL's ``ts_rank_cd`` read alike.
3. **Semantic**: the cosine similarity rescaled so that the best candidate
   scores 1 and the ``floor_rank``-th best 0: cosine values of different
   queries are not on one scale, ranks within a query are.
4. **Speaker**: the query names the memory's speaker (``metadata["speaker"]``,
   or the ``Name:`` that opens a transcript line such as ``"Ana: I moved to Oslo"``):
   "what did Ana say about X" is about Ana's own words.
5. **Time**: a query that names calendar dates ("in July 2022", "on 1 May, 2022")
   favours memories valid inside that span or in the days after it (an event is
   usually told shortly after it happened); a "when" question favours memories
   that say when something happened ("last Friday", "in 2021").
   See :mod:`engramdb.retrieval.temporal`.
6. **Length**: how many content words the memory has, log-scaled and full at
   ``length_words``: a one-line acknowledgement ("Thanks, see you!") rarely
   answers anything; past a short sentence, length no longer counts.
7. **Context**: a memory recorded in a session (a conversation, a task run)
   often answers a question only together with what was said next to it (a
   reply to a question, a follow-up). A candidate's *match* (its lexical and
   semantic cues) is shared with its nearest earlier and later candidates of
   the same session (order of memory ids, which are time-ordered) and, through
   the best match among them, with the ``session_window`` candidates on either
   side of it: a long conversation drifts, and what was said at one end of it
   says little about the other.

The blend with recency and importance is the same as :func:`engramdb.retrieval.rank.fuse`'s,
and every cue is kept in ``why``.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from engramdb.retrieval.rank import (
    FusionWeights,
    Row,
    ScoredRow,
    blend,
    gather,
    top,
)
from engramdb.retrieval.temporal import asks_when, named_span, span_affinity, states_time
from engramdb.storage.words import WORDS_KEY

__all__ = ["ContextWeights", "rank_hybrid", "speaker_named", "speaker_words", "terms"]

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
# Words of the labels that open a line of structured text the way a name opens a transcript
# line ("Returns: the path", "Note: ...", "See Also: ..."): docstring sections and
# admonitions. An opener made only of these names no speaker, so a query asking what a
# function "returns" neither gets the speaker cue nor has that word turned into "I".
_LABEL_WORDS = frozenset(
    """
    also args arguments attributes caution deprecated example examples hint important
    keyword note notes other parameters params raises references return returns see
    summary tip todo usage warning warnings yield yields
    """.split()
)


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


def _words(text: str, stored: str | None = None) -> tuple[list[str], int]:
    """The lower-cased words of ``text`` in order, and how many of them are content words.

    Ranking needs no more of a candidate than this: the occurrences of the query's stems
    are found among the words through :func:`_forms`, so a candidate's words are never
    stemmed one by one. ``stored``: the text's words as stored at write time
    (:func:`engramdb.storage.words.stored_words`), which spares splitting the text.
    """
    words = stored.split() if stored is not None else _WORD.findall(text.lower())
    return words, len(words) - sum(map(_STOPWORDS.__contains__, words))


@lru_cache(maxsize=65_536)
def _forms(stem: str) -> frozenset[str]:
    """Every content word whose :func:`_stem` is ``stem``: itself, or it and one suffix."""
    return frozenset(w for w in (stem, *(stem + x for x in _SUFFIXES))
                     if w not in _STOPWORDS and _stem(w) == stem)


@dataclass(frozen=True, slots=True)
class ContextWeights:
    """The weight of each relevance cue (:func:`rank_hybrid`) and the cues' own constants.

    Relevance is the weighted mean of the cues that apply to the query, so it lies
    in [0, 1]. The weights were fitted once (logistic regression with non-negative
    weights, each cue in [0, 1]) on the tuning half of the LoCoMo development split
    and rounded; see BENCHMARKS.md, section ``quality`` (``lexical`` halved since, on the
    same half: section ``quality8``). A weight of 0 switches a cue off.
    """

    lexical: float = 0.045  # BM25 recomputed over the candidate pool, best = 1
    fulltext: float = 0.14  # the full-text retriever's own rank: 10 / (9 + rank)
    semantic: float = 0.11  # cosine similarity rescaled: best 1, floor_rank-th 0
    speaker: float = 0.15  # the query names the memory's speaker
    when: float = 0.15  # a "when" question, and the memory states a time
    dates: float = 0.2  # closeness of the memory's valid time to the dates the query names
    length: float = 0.15  # content words, log-scaled, full at length_words
    neighbour: float = 0.11  # match of the best adjacent candidate of the same session
    session: float = 0.16  # best match within session_window candidates of it in its session
    match_lexical: float = 0.6  # a match (for context): this share lexical, the rest semantic
    length_words: int = 16
    session_window: int = 6  # candidates either side of one in its session (0: all of them)
    floor_rank: int = 100  # the semantic score is 0 at this rank and below
    date_after_days: float = 14.0  # a memory this long after the named span gains nothing
    date_before_days: float = 2.0  # nor one this long before it
    k1: float = 1.2
    b: float = 0.75


_NOBODY: frozenset[str] = frozenset()


@lru_cache(maxsize=16_384)
def _name_words(name: str) -> frozenset[str]:
    return frozenset(_WORD.findall(name.lower()))


@lru_cache(maxsize=16_384)  # keyed by what precedes the colon: speakers repeat, texts do not
def _opener_words(head: str) -> frozenset[str]:
    m = _SPEAKER.match(head + ": ")
    if not m:
        return _NOBODY
    words = _name_words(m.group(1))
    return _NOBODY if words <= _LABEL_WORDS else words


def speaker_words(row: Row) -> frozenset[str]:
    """The lower-cased words of ``row``'s speaker's name (``metadata["speaker"]``, or the
    ``Name:`` opening a transcript line, unless it is a label such as ``Returns:``); empty
    when it names no speaker."""
    meta = row.get("metadata")
    if meta and isinstance(meta, dict):
        named = meta.get("speaker")
        if isinstance(named, str) and named:
            return _name_words(named[:200])
    # _SPEAKER's name holds no colon, so only the text before the first one (and a
    # space after it, both within 80 characters) can match; most texts have none and
    # skip the expression.
    text = row.get("text") or ""
    if not isinstance(text, str):
        text = str(text)
    colon = text.find(":", 0, 80)
    if colon < 0 or colon == 79 or not text[colon + 1:colon + 2].isspace():
        return _NOBODY
    return _opener_words(text[:colon])


def speaker_named(query_words: frozenset[str], row: Row) -> bool:
    """Whether every word of ``row``'s speaker's name is among ``query_words``."""
    words = speaker_words(row)
    return bool(words) and words <= query_words


def _bm25(query: str, docs: Sequence[tuple[list[str], int]], k1: float, b: float
          ) -> list[float]:
    """BM25 of each of ``docs`` (words and content length, from :func:`_words`) for
    ``query``, with term rarity measured among ``docs``; equal to BM25 over their
    :func:`terms`."""
    stem_of = {w: t for t in dict.fromkeys(terms(query)) for w in _forms(t)}
    n = len(docs)
    if not stem_of or not n:
        return [0.0] * n
    avg = sum(length for _, length in docs) / n or 1.0
    # tf[stem][i]: occurrences of the stem's words in doc i, for the docs holding any.
    tf: dict[str, dict[int, int]] = defaultdict(dict)
    forms = stem_of.keys()
    for i, (words, _) in enumerate(docs):
        if forms.isdisjoint(words):  # most vector candidates share no query word
            continue
        for w in [w for w in words if w in stem_of]:
            per_doc = tf[stem_of[w]]
            per_doc[i] = per_doc.get(i, 0) + 1
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
        context: the weight of each relevance cue (:class:`ContextWeights`).

    Returns:
        Rows sorted by descending score (ties broken by newer, then id).
    """
    w = weights or FusionWeights()
    cw = context or ContextWeights()
    rows, why = gather(text_hits, vector_hits)
    keys = list(rows)
    pool = list(rows.values())
    # _words of each candidate, inlined (a pool is ~150 rows): the stored words when
    # the row has them (then its text is not looked at), else the text's.
    docs = []
    stopword = _STOPWORDS.__contains__
    for row in pool:
        stored = row.get(WORDS_KEY)
        words = (stored.split() if stored is not None
                 else _WORD.findall(str(row.get("text") or "").lower()))
        docs.append((words, len(words) - sum(map(stopword, words))))
    lexical = _bm25(query, docs, cw.k1, cw.b)
    best_lexical = max(lexical, default=0.0)
    if best_lexical > 0:
        lexical = [v / best_lexical for v in lexical]
    sims = [why[key].get("vector_similarity") for key in keys]
    known = [s for s in sims if s is not None]
    scaled = iter(_rescaled(known, cw.floor_rank))
    semantic = [0.0 if s is None else next(scaled) for s in sims]
    share = cw.match_lexical if vector_hits else 1.0
    query_words = frozenset(_WORD.findall(query.lower()))
    when = asks_when(query) and cw.when > 0
    span = named_span(query) if cw.dates else None
    full_length = math.log1p(cw.length_words)
    sizes: dict[int, float] = {}  # content length -> its cue (lengths repeat in a pool)
    # Every candidate's cues, as plain lists: the explained hits are built for the best k only.
    cues: list[float] = []
    match: list[float] = []
    parts: list[tuple[float, ...]] = []
    for key, row, lx, se, (words, length) in zip(keys, pool, lexical, semantic, docs,
                                                 strict=True):
        rank = why[key].get("text_rank")
        fulltext = 10.0 / (9.0 + rank) if rank else 0.0
        named = speaker_words(row)
        spoke = 1.0 if named and named <= query_words else 0.0
        sized = sizes.get(length)
        if sized is None:
            sized = sizes[length] = min(1.0, math.log1p(length) / full_length)
        cue = (cw.lexical * lx + cw.fulltext * fulltext + cw.semantic * se
               + cw.speaker * spoke + cw.length * sized)
        timed = dated = 0.0
        if when:
            timed = 1.0 if states_time(str(row.get("text") or ""), words) else 0.0
            cue += cw.when * timed
        if span is not None:
            dated = span_affinity(span, row.get("valid_from"), after_days=cw.date_after_days,
                                  before_days=cw.date_before_days)
            cue += cw.dates * dated
        cues.append(cue)
        match.append(share * lx + (1 - share) * se)
        parts.append((lx, se, fulltext, spoke, sized, timed, dated))
    context_of = _context(keys, pool, match, cw)

    total = (cw.lexical + cw.fulltext + cw.speaker + cw.length + cw.neighbour + cw.session
             + (cw.semantic if vector_hits else 0.0) + (cw.when if when else 0.0)
             + (cw.dates if span is not None else 0.0)) or 1.0
    # Score every candidate (rank.blended's arithmetic, inlined), then build the explained
    # hits of the best k only.
    half_life = w.half_life_days * 86_400 * 1_000_000
    neg_ln2 = -math.log(2)
    scored = []
    for i, (key, row) in enumerate(zip(keys, pool, strict=True)):
        relevance = (cues[i] + context_of[i]) / total
        recorded = int(row["recorded_at"])
        age = max(0, now_micros - recorded)
        recency = math.exp(neg_ln2 * age / half_life) if half_life > 0 else 0.0
        score = (w.relevance * relevance + w.recency * recency
                 + w.importance * float(row.get("importance") or 0.0))
        scored.append((-score, -recorded, key[0], key, i, relevance))
    scored.sort()
    out = []
    for *_, key, i, relevance in scored[:k]:
        lx, se, fulltext, spoke, sized, timed, dated = parts[i]
        explained = why[key]
        explained.update(lexical=lx, semantic=se, fulltext=fulltext, speaker=spoke, length=sized)
        if when:
            explained["states_time"] = timed
        if span is not None:
            explained["date"] = dated
        explained["context"] = context_of[i]
        out.append(blend(pool[i], relevance, explained, now_micros, w))
    return top(out, k)


def _context(keys: Sequence[tuple[str, int]], pool: Sequence[Row], match: Sequence[float],
             cw: ContextWeights) -> list[float]:
    """Each candidate's context cue: the best match of its adjacent candidates in its
    session (memory-id order) and the best match within ``cw.session_window`` candidates
    of it there (the whole session at 0), weighted. A memory outside any session is a
    session of its own."""
    sessions: dict[tuple[str, str], list[int]] = defaultdict(list)
    out = [0.0] * len(keys)
    for i, row in enumerate(pool):
        if row.get("session"):
            sessions[(str(row.get("namespace")), str(row["session"]))].append(i)
        else:
            out[i] = cw.neighbour * 0.0 + cw.session * match[i]
    for members in sessions.values():
        members.sort(key=keys.__getitem__)
        matches = [match[m] for m in members]
        window = cw.session_window if cw.session_window > 0 else len(members)
        for j, m in enumerate(members):
            before = matches[j - 1] if j > 0 else 0.0
            after = matches[j + 1] if j + 1 < len(members) else 0.0
            near = max(matches[max(0, j - window):j + window + 1])
            out[m] = cw.neighbour * max(before, after) + cw.session * near
    return out
