"""The heuristic judge's lexicon: stopwords, negations, time words, antonym groups,
and its crude stemmer (data only; :mod:`.heuristic_judge` parses and compares)."""

from __future__ import annotations

import functools

__all__ = [
    "ADDITIVE", "ANTONYM_GROUPS", "APPROX", "HEDGES", "ID_NOUNS", "LOWER_BOUND", "MONTHS",
    "MULTI_VERBS", "NEGATIONS", "NO_POLAR", "POLAR", "PREFIXES", "SCOPE", "STOP", "SUFFIXES",
    "TIME_NOUNS", "UPPER_BOUND", "WEEKDAYS", "seq", "stem", "words",
]


def words(text: str) -> frozenset[str]:
    """The distinct words of ``text``."""
    return frozenset(text.split())


def seq(text: str) -> tuple[str, ...]:
    """The words of ``text``, in order."""
    return tuple(text.split())


STOP = words(
    "a an the of to in on at by for from with and or but as is are was were be been being am "
    "has have had do does did will would shall should must can could may might it its that "
    "these those they them their there here we our us i me my you your he him his she her "
    "which who whom whose what when where how than so if because while into onto via each "
    "every any some all own same such only very much more most other it's per"
)
HEDGES = words(
    "about roughly approximately around nearly almost ~ still now currently yet already "
    "really actually just"
)
APPROX = words("about roughly approximately around nearly almost ~")
ADDITIVE = words("also too another additionally both")
NEGATIONS = words("not never no none nobody nothing neither nor without")
# Words that place a fact in time or among several instances; kept as content so
# that "this week" vs "next week" shows up as a difference, and named in reasons.
SCOPE = words(
    "this next last previous former formerly previously until since before after earlier "
    "later today tomorrow yesterday tonight first second third"
)
TIME_NOUNS = words("week month quarter year day weekend morning afternoon evening night")
LOWER_BOUND = words("over above exceeds exceeding")
UPPER_BOUND = words("under below")
ID_NOUNS = words(
    "user customer order ticket invoice issue sensor flight room floor port sku node host "
    "server account case incident pr step gate"
)
# Verbs whose object usually has several values: differing objects are not a conflict.
MULTI_VERBS = words(
    "speaks speak knows like likes loves enjoys visited owns supports includes contains integrates"
)
MONTHS = {
    m: i
    for i, m in enumerate(
        seq(
            "- january february march april may june july august september "
            "october november december"
        )
    )
    if i
}
WEEKDAYS = words("monday tuesday wednesday thursday friday saturday sunday")
PREFIXES = ("un", "in", "im", "ir", "il", "dis", "non")
ANTONYM_GROUPS: tuple[tuple[str, str], ...] = (
    ("positive optimistic bullish", "negative pessimistic bearish"),
    ("up online", "down offline"),
    (
        "increase increased increasing grow grew growing rise rose risen rising gain gained",
        "decrease decreased decreasing shrink shrank shrinking fall fell fallen falling drop "
        "dropped dropping decline declined declining",
    ),
    (
        "approve approved accept accepted grant granted",
        "reject rejected decline declined deny denied",
    ),
    ("elevated high raised", "low lowered"),
    ("open opened", "closed close shut"),
    ("true correct", "false incorrect wrong"),
    ("alive living", "dead died"),
    ("like likes liked love loves", "dislike dislikes disliked hate hates"),
    ("enable enabled", "disable disabled"),
    (
        "pass passed passing succeed succeeded success successful successfully complete completed",
        "fail failed failing failure",
    ),
    ("public", "private"),
    ("present", "absent"),
    ("healthy", "unhealthy sick degraded"),
    ("in_stock", "out_of_stock"),
    ("married", "single divorced"),
    ("win won", "lose lost"),
    ("allow allowed permit permitted", "forbid forbidden block blocked"),
    ("running started", "stopped halted"),
    ("early", "late"),
    ("dark", "light"),
    ("buy bought", "sell sold"),
    ("required mandatory", "optional"),
    ("confirmed", "cancelled canceled"),
    ("hot", "cold"),
    ("full", "empty"),
)
# Longest first: the first suffix that leaves a 3-letter stem is cut.
SUFFIXES = seq("ingly edly ation ible able ing ies ied ed es ly ic al y s e")


@functools.lru_cache(maxsize=65_536)
def stem(word: str) -> str:
    """A deliberately crude stemmer: enough to match allergic/allergy, passed/passing."""
    for suffix in SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


POLAR: dict[str, frozenset[tuple[int, int]]] = {}
NO_POLAR: frozenset[tuple[int, int]] = frozenset()  # one object, shared by every token
for _gi, _group in enumerate(ANTONYM_GROUPS):
    for _side, _members in enumerate(_group):
        for _w in _members.split():
            POLAR[stem(_w)] = POLAR.get(stem(_w), frozenset()) | {(_gi, _side)}
