"""FTS5's ``porter`` stemmer in Python, for words of ASCII letters and digits.

:meth:`.fulltext.FullText.stems` needs each query word's stem as the
``porter unicode61`` tokenizer indexes it (``fts5vocab`` counts stems). Asking
FTS5 costs a round trip through a scratch table (a savepoint, an insert, a
vocabulary read, a rollback) for every word not seen before; a write's
contradiction check met such a word in about a third of the LangGraph benchmark's
puts. For a word of ASCII letters and digits, ``unicode61`` yields one token, the
word lower-cased, and FTS5's porter step is a fixed function of that token, so
it is computed here instead. It follows FTS5's variant of Porter's algorithm
exactly where that variant differs from the textbook (tokens shorter than 3 or
longer than 64 bytes pass through unchanged; in the ``*v*`` condition ``y``
counts as a vowel anywhere but in the first place; a rule whose suffix matches
but whose condition fails ends its step). ``tests/test_porter_stem.py`` checks it
against FTS5's own tokenizer on every word of a large list and on random words.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["fts5_porter", "stem_ascii_word"]

_MAX_TOKEN = 64  # FTS5 passes longer tokens through unstemmed
_VOWELS = frozenset("aeiou")


def _consonants(word: str) -> list[bool]:
    """Whether each letter is a consonant: not a, e, i, o, u, nor a ``y`` after a
    consonant (a digit is a consonant)."""
    out: list[bool] = []
    prev = False
    for c in word:
        prev = not (c in _VOWELS or (prev and c == "y"))
        out.append(prev)
    return out


def _measure_at_least(stem: str, m: int) -> bool:
    """Whether ``stem`` holds at least ``m`` vowel-consonant sequences (Porter's m)."""
    found = 0
    seen_vowel = False
    for cons in _consonants(stem):
        if not cons:
            seen_vowel = True
        elif seen_vowel:
            found += 1
            if found >= m:
                return True
            seen_vowel = False
    return False


def _m_gt0(stem: str) -> bool:
    return _measure_at_least(stem, 1)


def _m_gt1(stem: str) -> bool:
    return _measure_at_least(stem, 2)


def _m_eq1(stem: str) -> bool:
    return _measure_at_least(stem, 1) and not _measure_at_least(stem, 2)


def _o_star(stem: str) -> bool:
    """Consonant, vowel, consonant at the end, the last not w, x or y."""
    if not stem or stem[-1] in "wxy":
        return False
    bits = _consonants(stem)
    return len(bits) >= 3 and bits[-3] and not bits[-2] and bits[-1]


def _has_vowel(stem: str) -> bool:
    """FTS5's ``*v*``: a, e, i, o, u anywhere, or ``y`` anywhere after the first place."""
    return any(c in _VOWELS or (i > 0 and c == "y") for i, c in enumerate(stem))


def _s_or_t_m_gt1(stem: str) -> bool:
    return stem[-1:] in ("s", "t") and _m_gt1(stem)


# (suffix, condition on the stem before it, replacement), in FTS5's order. Within a
# step the first suffix the word ends with (leaving at least one letter) decides:
# its rule applies if its condition holds, and no later rule is tried either way.
_STEP2 = (
    ("ational", _m_gt0, "ate"), ("tional", _m_gt0, "tion"),
    ("enci", _m_gt0, "ence"), ("anci", _m_gt0, "ance"),
    ("izer", _m_gt0, "ize"),
    ("logi", _m_gt0, "log"),
    ("bli", _m_gt0, "ble"), ("alli", _m_gt0, "al"), ("entli", _m_gt0, "ent"),
    ("eli", _m_gt0, "e"), ("ousli", _m_gt0, "ous"),
    ("ization", _m_gt0, "ize"), ("ation", _m_gt0, "ate"), ("ator", _m_gt0, "ate"),
    ("alism", _m_gt0, "al"), ("iveness", _m_gt0, "ive"), ("fulness", _m_gt0, "ful"),
    ("ousness", _m_gt0, "ous"),
    ("aliti", _m_gt0, "al"), ("iviti", _m_gt0, "ive"), ("biliti", _m_gt0, "ble"),
)
_STEP3 = (
    ("ical", _m_gt0, "ic"),
    ("ness", _m_gt0, ""),
    ("icate", _m_gt0, "ic"), ("iciti", _m_gt0, "ic"),
    ("ful", _m_gt0, ""),
    ("ative", _m_gt0, ""),
    ("alize", _m_gt0, "al"),
)
_STEP4 = (
    ("al", _m_gt1, ""),
    ("ance", _m_gt1, ""), ("ence", _m_gt1, ""),
    ("er", _m_gt1, ""),
    ("ic", _m_gt1, ""),
    ("able", _m_gt1, ""), ("ible", _m_gt1, ""),
    ("ant", _m_gt1, ""), ("ement", _m_gt1, ""), ("ment", _m_gt1, ""), ("ent", _m_gt1, ""),
    ("ion", _s_or_t_m_gt1, ""), ("ou", _m_gt1, ""),
    ("ism", _m_gt1, ""),
    ("ate", _m_gt1, ""), ("iti", _m_gt1, ""),
    ("ous", _m_gt1, ""),
    ("ive", _m_gt1, ""),
    ("ize", _m_gt1, ""),
)


_Rule = tuple[str, Callable[[str], bool], str]


def _apply(word: str, rules: tuple[_Rule, ...]) -> str:
    for suffix, cond, out in rules:
        if len(word) > len(suffix) and word.endswith(suffix):
            stem = word[: -len(suffix)]
            return stem + out if cond(stem) else word
    return word


def _step1a(w: str) -> str:
    if w.endswith("s"):
        if w[-2:-1] == "e":
            if (len(w) > 4 and w[-4:-2] == "ss") or (len(w) > 3 and w[-3] == "i"):
                return w[:-2]
            return w[:-1]
        if w[-2:-1] != "s":
            return w[:-1]
    return w


def _step1b(w: str) -> str:
    if len(w) > 3 and w.endswith("eed"):
        return w[:-1] if _m_gt0(w[:-3]) else w
    if len(w) > 2 and w.endswith("ed"):
        stem = w[:-2]
    elif len(w) > 3 and w.endswith("ing"):
        stem = w[:-3]
    else:
        return w
    if not _has_vowel(stem):
        return w
    for ending, longer in (("at", "ate"), ("bl", "ble"), ("iz", "ize")):
        if len(stem) > 2 and stem.endswith(ending):
            return stem[:-2] + longer
    last = stem[-1]
    if last not in _VOWELS and last not in "lsz" and len(stem) >= 2 and stem[-2] == last:
        return stem[:-1]
    if _m_eq1(stem) and _o_star(stem):
        return stem + "e"
    return stem


def fts5_porter(token: str) -> str:
    """The stem FTS5's ``porter`` tokenizer gives a lower-case ASCII token."""
    if len(token) < 3 or len(token) > _MAX_TOKEN:
        return token
    w = _step1b(_step1a(token))
    if w.endswith("y") and _has_vowel(w[:-1]):  # step 1c
        w = w[:-1] + "i"
    w = _apply(_apply(_apply(w, _STEP2), _STEP3), _STEP4)
    if w.endswith("e"):  # step 5a
        stem = w[:-1]
        if _m_gt1(stem) or (_m_eq1(stem) and not _o_star(stem)):
            w = stem
    if len(w) > 1 and w.endswith("ll") and _m_gt1(w[:-1]):  # step 5b
        w = w[:-1]
    return w


def stem_ascii_word(word: str) -> str | None:
    """The indexed stem of ``word`` when it is ASCII letters and digits, else None
    (not decided here: ask FTS5)."""
    if not (word.isascii() and word.isalnum()):
        return None
    return fts5_porter(word.lower())
