"""The built-in extractive summariser: no model, only the episodes' own sentences.

A sentence scores the summed frequency, across the whole session, of its
content words, damped by its length; the best few are kept in the order they
were said, each headed by who said it. Deterministic and offline.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

__all__ = ["extractive_summary"]

_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[^\W\d_]{3,}")
_STOP = frozenset(
    "the and for are but not you your with this that have has had was were will would "
    "can could should from they them their there then than what when where which who why "
    "how all any our out about into over just also its it's been being some such very".split())


def _words(text: str) -> list[str]:
    return [w for w in (x.lower() for x in _WORD.findall(text)) if w not in _STOP]


def extractive_summary(episodes: Sequence[tuple[str, str]], *, max_sentences: int = 6,
                       max_chars: int = 2000) -> str:
    """A summary of ``(role, text)`` episodes made of their most central sentences.

    Args:
        episodes: in the order they happened.
        max_sentences: at most this many sentences.
        max_chars: at most about this many characters.

    Returns:
        Lines ``role: sentence``, in the order said.
    """
    sentences: list[tuple[int, str, str]] = []
    for role, text in episodes:
        for s in _SENTENCE.split(" ".join(text.split())):
            if s:
                sentences.append((len(sentences), role, s))
    freq = Counter(w for _, _, s in sentences for w in set(_words(s)))

    def score(item: tuple[int, str, str]) -> float:
        words = _words(item[2])
        if not words:
            return 0.0
        return sum(freq[w] for w in set(words)) / math.sqrt(len(words))

    ranked = sorted(sentences, key=lambda it: (-score(it), it[0]))
    keep: list[tuple[int, str, str]] = []
    used = 0
    for item in ranked:
        if len(keep) >= max_sentences:
            break
        cost = len(item[1]) + len(item[2]) + 3
        if keep and used + cost > max_chars:
            continue
        keep.append(item)
        used += cost
    return "\n".join(f"{role}: {s}" for _, role, s in sorted(keep))
