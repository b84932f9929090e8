"""A query about someone, asked as they would say it: the text recall embeds.

People's own memories speak of them in the first person ("Ana: I took up pottery
to unwind"), while a question about them names them ("What does Ana do to
unwind?"). A sentence embedder puts much of a name's weight in the query's
vector, and that weight pulls toward memories that *mention* the name (others
talking to or about the person) rather than toward what the person said. So
when a query names the speaker of some of the candidates (``metadata["speaker"]``
or a transcript's ``Name:`` opener, see :func:`engramdb.retrieval.hybrid.speaker_words`),
recall embeds the query with that name turned into "I" and "Name's" into
"my" ("What does I do to unwind?") and searches with that vector. The query's
words are unchanged for full text and for the ranking's other cues (the speaker
cue still sees the name). Pure functions; nothing here reads storage.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from engramdb.retrieval.hybrid import speaker_words
from engramdb.retrieval.rank import Row

__all__ = ["first_person", "speakers"]

_WORD = re.compile(r"\w+", re.UNICODE)


def speakers(rows: Iterable[Row]) -> set[frozenset[str]]:
    """The speakers of ``rows``, each as the lower-cased words of their name."""
    return {words for words in map(speaker_words, rows) if words}


def first_person(query: str, names: Iterable[frozenset[str]]) -> str | None:
    """``query`` with the speakers it names (among ``names``, see :func:`speakers`)
    turned into "I" and their possessives into "my"; ``None`` when it names none.

    A speaker counts as named when every word of their name is among the query's
    words (as for the ranking's speaker cue); each of those words is replaced.
    """
    query_words = frozenset(_WORD.findall(query.lower()))
    named = {word for words in names if words <= query_words for word in words}
    if not named:
        return None
    alternatives = "|".join(sorted(map(re.escape, named), key=len, reverse=True))
    # "Ana Lima's" -> "my", "Ana Lima" -> "I": a run of name words is one person.
    run = rf"\b(?:{alternatives})(?:\s+(?:{alternatives}))*\b"
    text = re.sub(rf"{run}['\u2019]s\b", "my", query, flags=re.IGNORECASE)
    return re.sub(run, "I", text, flags=re.IGNORECASE)
