"""The heuristic contradiction judge: no model, deterministic, explainable.

It first decides whether two statements are about the same thing (shared
topic words), then looks for exactly one point where they disagree: a
negation, an antonym, a number with the same unit, a date or time, or the
value of the same attribute ("X's CEO is Alice" / "X's CEO is Bob"). Two or
more differences mean different things or different times, which is not a
contradiction. Reasons start with the deciding signal, e.g.
``negation: 'is approved' vs 'is not approved' on shared 'loan application'``.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from engramdb.policy.judgment import Judgment, Statement, Verdict

__all__ = ["HeuristicJudge"]


# --------------------------------------------------------------------------- lexicon


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _seq(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_STOP = _words(
    "a an the of to in on at by for from with and or but as is are was were be been being am "
    "has have had do does did will would shall should must can could may might it its that "
    "these those they them their there here we our us i me my you your he him his she her "
    "which who whom whose what when where how than so if because while into onto via each "
    "every any some all own same such only very much more most other it's per"
)
_HEDGES = _words(
    "about roughly approximately around nearly almost ~ still now currently yet already "
    "really actually just"
)
_APPROX = _words("about roughly approximately around nearly almost ~")
_ADDITIVE = _words("also too another additionally both")
_NEGATIONS = _words("not never no none nobody nothing neither nor without")
# Words that place a fact in time or among several instances; kept as content so
# that "this week" vs "next week" shows up as a difference, and named in reasons.
_SCOPE = _words(
    "this next last previous former formerly previously until since before after earlier "
    "later today tomorrow yesterday tonight first second third"
)
_TIME_NOUNS = _words("week month quarter year day weekend morning afternoon evening night")
_LOWER_BOUND = _words("over above exceeds exceeding")
_UPPER_BOUND = _words("under below")
_ID_NOUNS = _words(
    "user customer order ticket invoice issue sensor flight room floor port sku node host "
    "server account case incident pr step gate"
)
# Verbs whose object usually has several values: differing objects are not a conflict.
_MULTI_VERBS = _words(
    "speaks speak knows like likes loves enjoys visited owns supports includes contains integrates"
)
_MONTHS = {
    m: i
    for i, m in enumerate(
        _seq(
            "- january february march april may june july august september "
            "october november december"
        )
    )
    if i
}
_WEEKDAYS = _words("monday tuesday wednesday thursday friday saturday sunday")
_PREFIXES = ("un", "in", "im", "ir", "il", "dis", "non")
_ANTONYM_GROUPS: tuple[tuple[str, str], ...] = (
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
_SUFFIXES = _seq("ingly edly ation ible able ing ies ied ed es ly ic al y s e")


@functools.lru_cache(maxsize=65_536)
def _stem(word: str) -> str:
    """A deliberately crude stemmer: enough to match allergic/allergy, passed/passing."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


_POLAR: dict[str, frozenset[tuple[int, int]]] = {}
# One empty set, shared by every token without a polarity (a new one per memoised
# token was ~10,000 objects more for the garbage collector to walk at 10k writes).
_NO_POLAR: frozenset[tuple[int, int]] = frozenset()
for _gi, _group in enumerate(_ANTONYM_GROUPS):
    for _side, _members in enumerate(_group):
        for _w in _members.split():
            _POLAR[_stem(_w)] = _POLAR.get(_stem(_w), frozenset()) | {(_gi, _side)}

# --------------------------------------------------------------------------- parsing

_TOKEN_RE = re.compile(
    r"""(?P<iso>\d{4}-\d{2}-\d{2})
      | (?P<time>\d{1,2}:\d{2}(?:\s?[ap]m\b)?|\d{1,2}\s?[ap]m\b)
      | (?P<num>[$€£]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:%|[a-zA-Z]+\b)?)
      | (?P<word>[\#/]?[A-Za-z][\w'+\-./:\#]*|\#\d+)
      | (?P<sym>~)""",
    re.X,
)
_NUM_RE = re.compile(r"([$€£]?)((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)(%|[a-zA-Z]+)?")
_OFFSET_RE = re.compile(r"(UTC|GMT)([+-]\d{1,2}(?::?\d{2})?)", re.I)
_MULTIPLIERS = {"k": 1e3, "m": 1e6, "mm": 1e6, "b": 1e9, "bn": 1e9}
_SIZES = {"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12}
_VALUE_KINDS = frozenset({"num", "date"})


@dataclass(frozen=True, slots=True)
class _Num:
    value: float
    unit: str
    approx: bool = False
    bound: str = ""  # ">" at least, "<" at most


@dataclass(slots=True)
class _Tok:
    raw: str
    norm: str
    kind: str  # word, id, scope, num, date, neg, stop
    sub: str = ""  # date sub-kind (day, weekday, time, year, month) or number unit
    num: _Num | None = None
    polar: frozenset[tuple[int, int]] = _NO_POLAR


@dataclass(slots=True)
class _Frame:
    raws: list[_Tok]
    content: list[_Tok] = field(default_factory=list)
    negations: list[int] = field(default_factory=list)  # indexes into raws
    additive: bool = False
    equational: bool = False

    @property
    def topic(self) -> set[str]:
        return {t.norm for t in self.content if t.kind in ("word", "id") and not t.polar}


_CANNOT = re.compile(r"\b(?:can't|cannot)\b", re.I)
_WONT = re.compile(r"\bwon't\b", re.I)
_NT = re.compile(r"(\w)n't\b", re.I)
_POSSESSIVE = re.compile(r"(\w)'s\b")
_PLURAL_POSSESSIVE = re.compile(r"(\w)s'(?=\s)")
_PERCENT = re.compile(r"(\d)\s*(?:percent|per cent)\b", re.I)
_OUT_OF_STOCK = re.compile(r"\bout of stock\b", re.I)
_IN_STOCK = re.compile(r"\bin stock\b", re.I)


def _normalise(text: str) -> str:
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    # A rewrite runs only where its words can be: ASCII text without them is left
    # as is (the patterns ignore case, which non-ASCII letters can meet: all run).
    low = text.lower() if text.isascii() else None
    if low is None or "can" in low:
        text = _CANNOT.sub("can not", text)
    if "'" in text:
        text = _WONT.sub("will not", text)
        text = _NT.sub(r"\1 not", text)
        text = _POSSESSIVE.sub(r"\1", text)
        text = _PLURAL_POSSESSIVE.sub(r"\1s", text)
    if low is None or "per" in low:
        text = _PERCENT.sub(r"\1%", text)
    if low is None or "stock" in low:
        text = _OUT_OF_STOCK.sub("out_of_stock", text)
        text = _IN_STOCK.sub("in_stock", text)
    return text


_CLASSIFIED: dict[tuple[str, str, str], tuple[Any, ...]] = {}  # see _classify


def _classify(raw: str, group: str, prev: str) -> _Tok:
    """The token ``raw`` (of regex group ``group``, after the token ``prev``).

    Memoised as field values (each call gets its own token: a frame tells its tokens
    apart by identity); the previous token matters only to numbers and "longer"."""
    key = (raw, group,
           prev if group == "num" or (len(raw) == 6 and raw.lower() == "longer") else "")
    fields = _CLASSIFIED.get(key)
    if fields is None:
        if len(_CLASSIFIED) >= 100_000:
            _CLASSIFIED.clear()
        tok = _classify_new(raw, group, prev)
        fields = _CLASSIFIED[key] = (tok.raw, tok.norm, tok.kind, tok.sub, tok.num, tok.polar)
        return tok
    return _Tok(*fields)


def _classify_new(raw: str, group: str, prev: str) -> _Tok:
    low = raw.lower()
    if group == "iso":
        return _Tok(raw, low, "date", "day")
    if group == "time":
        m = re.match(r"(\d{1,2})(?::(\d{2}))?\s?([ap]m)?", low)
        assert m is not None
        hour = (
            int(m.group(1)) % 12 + (12 if m.group(3) == "pm" else 0)
            if m.group(3)
            else int(m.group(1))
        )
        return _Tok(raw, f"{hour:02d}:{m.group(2) or '00'}", "date", "time")
    if group == "num":
        m = _NUM_RE.fullmatch(raw)
        assert m is not None
        cur, digits, suf = m.group(1), m.group(2), (m.group(3) or "").lower()
        value = float(digits.replace(",", ""))
        if (
            not cur
            and not suf
            and digits.isdigit()
            and (prev.lower() in _ID_NOUNS or (prev.isupper() and prev.isalpha() and len(prev) > 1))
        ):
            return _Tok(raw, low, "id")
        if not cur and not suf and digits.isdigit() and 1900 <= value <= 2099:
            return _Tok(raw, low, "date", "year")
        unit = "%" if suf == "%" else cur
        if cur and suf in _MULTIPLIERS:
            value *= _MULTIPLIERS[suf]
        elif suf in _SIZES:
            value, unit = value * _SIZES[suf], "bytes"
        elif suf and suf != "%":
            unit += suf
        return _Tok(raw, low, "num", unit, _Num(value, unit))
    offset = _OFFSET_RE.fullmatch(raw)
    if offset:  # UTC+2, GMT-5: a number whose unit is the prefix
        unit = offset.group(1).lower()
        hours, _, minutes = offset.group(2).partition(":")
        value = float(hours) + math.copysign(float(minutes or 0) / 60, float(hours))
        return _Tok(raw, low, "num", unit, _Num(value, unit))
    if low in _NEGATIONS:
        return _Tok(raw, low, "neg")
    if len(raw) > 1 and raw.isupper():  # acronyms (US, IT, EU) are names, never stopwords
        return _Tok(raw, low, "word")
    if (
        low in _STOP
        or low in _HEDGES
        or low in _ADDITIVE
        or (low, prev.lower()) == ("longer", "no")
    ):
        return _Tok(raw, low, "stop")
    if low in _SCOPE:
        return _Tok(raw, low, "scope")
    if low.rstrip("s") in _WEEKDAYS:
        return _Tok(raw, low.rstrip("s"), "date", "weekday")
    if any(map(str.isdigit, low)) or low[:1] in "#/" or "_" in low.strip("_"):
        polar = _POLAR.get(low, _NO_POLAR)
        return _Tok(raw, low, "word" if polar else "id", polar=polar)
    stem = _stem(low)
    return _Tok(raw, stem, "word", polar=_POLAR.get(stem, _NO_POLAR))


_EQUATIONAL = re.compile(r"\b(?:is|was|are|were) the\b", re.I)
# Month names: where the lower-cased normalised text holds none, no token lowers to
# one and the date merge (a loop over every token) has nothing to fold. A token's text
# is part of the normalised text, and only ASCII letters lower to a month's letters
# (the Kelvin sign lowers to "k", in no month; "İ" to two characters), so such a
# token's lower case is in the text's. (Substring tests: a case-blind regex cost ~6 us.)
_MONTH_NAMES = tuple(_MONTHS)


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> _Frame:
    """The frame of ``text``. Memoised: a write judges its new text against each of
    its candidates, and the same committed candidates come back write after write
    (parsing was most of a free-text check). Frames are never changed after this."""
    toks: list[_Tok] = []
    normal = _normalise(text)
    known = _CLASSIFIED.get
    prev = ""  # the previous token's text (a token's raw is the text it was made of)
    for m in _TOKEN_RE.finditer(normal):
        group = m.lastgroup or "word"
        raw = m.group().rstrip(".-/':") if group == "word" else m.group()
        # _classify's memo read inline (its key; a miss goes through it)
        fields = known((raw, group, prev if group == "num" or (
            len(raw) == 6 and raw.lower() == "longer") else ""))
        toks.append(_classify(raw, group, prev) if fields is None else _Tok(*fields))
        prev = raw
    low = normal.lower()
    for name in _MONTH_NAMES:
        if name in low:
            _merge_dates(toks)
            break
    frame = _Frame(toks)
    for i, tok in enumerate(toks):
        if tok.kind == "neg":
            frame.negations.append(i)
        elif tok.kind == "num" and tok.num is not None:
            before = [t.norm for t in toks[max(0, i - 2) : i]]
            tok.num = _Num(
                tok.num.value, _unit(toks, i), bool(_APPROX & set(before)), _bound(before)
            )
            tok.sub = tok.num.unit
        if tok.norm in _ADDITIVE:
            frame.additive = True
        if tok.kind not in ("neg", "stop"):
            frame.content.append(tok)
    frame.equational = _EQUATIONAL.search(text) is not None
    return frame


_TOPICS: dict[bytes, tuple[str, ...]] = {}  # digest of a text -> its topic words
_TOPICS_KEPT = 32_768  # about 8 MB; emptied when full


def _topic(text: str) -> tuple[str, ...]:
    """``_parse(text).topic``, kept for many more texts than whole frames are (a
    few hundred bytes each, by the text's digest, not the text): most candidates
    share too few topic words with a new text to contradict it, which the two
    topics alone decide, so a candidate whose frame was evicted is not parsed again."""
    key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    found = _TOPICS.get(key)
    if found is None:
        if len(_TOPICS) >= _TOPICS_KEPT:
            _TOPICS.clear()
        found = _TOPICS[key] = tuple(sys.intern(w) for w in _parse(text).topic)
    return found


# The last text judged as the new side, with its topic as a set: a write judges its
# new text against each of its candidates in turn (one tuple, swapped whole, so
# threads judging different texts only miss it).
_LAST: tuple[str, frozenset[str]] = ("", frozenset())


def _new_topic(text: str) -> frozenset[str]:
    """``frozenset(_topic(text))``, kept for the text judged last."""
    global _LAST
    last = _LAST
    if last[0] == text and text:
        return last[1]
    topic = frozenset(_topic(text))
    _LAST = (text, topic)
    return topic


def _merge_dates(toks: list[_Tok]) -> None:
    """Fold "March 14" / "14 March" / "March 1, 2025" into one day token, in place."""
    i = 0
    while i < len(toks):
        month = _MONTHS.get(toks[i].raw.lower())
        if month and toks[i].raw[0].isupper():
            day_at = (
                i + 1
                if i + 1 < len(toks) and toks[i + 1].raw.isdigit()
                else (i - 1 if i > 0 and toks[i - 1].raw.isdigit() else -1)
            )
            day = int(toks[day_at].raw) if day_at >= 0 else 0
            if 1 <= day <= 31:
                year = "*"
                if i + 2 < len(toks) and day_at == i + 1 and toks[i + 2].sub == "year":
                    year = toks.pop(i + 2).norm
                raw = " ".join(t.raw for t in toks[min(i, day_at) : max(i, day_at) + 1])
                toks[min(i, day_at)] = _Tok(raw, f"{year}-{month:02d}-{day:02d}", "date", "day")
                del toks[min(i, day_at) + 1]
                i = min(i, day_at)
            elif toks[i].raw.lower() != "may":
                toks[i] = _Tok(toks[i].raw, f"month-{month:02d}", "date", "month")
        i += 1


def _unit(toks: list[_Tok], i: int) -> str:
    """A number's unit: its symbol, else the word right after it, else the word before it."""
    unit, j = toks[i].sub, i + 1
    if not unit and j < len(toks) and toks[j].kind in ("word", "id"):
        unit, j = toks[j].norm, j + 1
    if j + 1 < len(toks) and toks[j].norm == "per":
        unit += "/" + toks[j + 1].norm
    if not unit and i > 0 and toks[i - 1].kind in ("word", "id"):
        unit = toks[i - 1].norm
    return unit or "count"


def _bound(before: list[str]) -> str:
    joined = " ".join(before)
    if _LOWER_BOUND & set(before) or re.search(r"(more than|at least)$", joined):
        return ">"
    if _UPPER_BOUND & set(before) or re.search(r"(less than|fewer than|at most|up to)$", joined):
        return "<"
    return ""


# --------------------------------------------------------------------------- comparison


def _num_agree(x: _Num, y: _Num) -> bool:
    if x.bound or y.bound:
        if x.bound and y.bound:
            return True
        lo, hi = (x, y) if x.bound else (y, x)
        return hi.value >= lo.value if lo.bound == ">" else hi.value <= lo.value
    tol = 0.1 if (x.approx or y.approx) else 1e-9
    return math.isclose(x.value, y.value, rel_tol=tol, abs_tol=1e-9)


def _day_agree(x: str, y: str) -> bool:
    return x == y or ((x.startswith("*") or y.startswith("*")) and x[-5:] == y[-5:])


def _value_diffs(fa: _Frame, fb: _Frame) -> list[tuple[str, str, str]]:
    """Numbers with the same unit and dates of the same kind that cannot both hold."""
    diffs: list[tuple[str, str, str]] = []
    for kind in ("num", "date"):
        va = [t for t in fa.content if t.kind == kind]
        vb = [t for t in fb.content if t.kind == kind]
        for sub in sorted({t.sub for t in va} & {t.sub for t in vb}):
            xs, ys = [t for t in va if t.sub == sub], [t for t in vb if t.sub == sub]
            if kind == "num":
                agree = any(_num_agree(x.num, y.num) for x in xs for y in ys if x.num and y.num)
            else:
                agree = any(_day_agree(x.norm, y.norm) for x in xs for y in ys)
            if not agree:
                label = "number" if kind == "num" else "time" if sub == "time" else "date"
                diffs.append((label, xs[0].raw, ys[0].raw))
                break
    return diffs


def _opposed(x: _Tok, y: _Tok) -> bool:
    if any(g == h and s != t for g, s in x.polar for h, t in y.polar):
        return True
    short, long_ = sorted((x.norm, y.norm), key=len)
    return len(short) >= 4 and any(long_ == p + short for p in _PREFIXES)


def _run_ok(frame: _Frame, left: list[_Tok], shared: set[str]) -> str:
    """Where a run of differing words sits: "end" (the value), "start", or "" (scattered)."""
    idx = [i for i, t in enumerate(frame.content) if any(t is x for x in left)]
    if idx != list(range(idx[0], idx[0] + len(idx))):
        return ""
    tail = frame.content[idx[-1] + 1 :]
    if all(
        t.norm in shared and (t.kind in ("scope", "date") or t.norm in _TIME_NOUNS) for t in tail
    ):
        if idx[0] > 0 and frame.content[idx[0] - 1].raw.lower() in _MULTI_VERBS:
            return ""
        return "end"
    return "start" if idx[0] == 0 else ""


def _slot(fa: _Frame, fb: _Frame, la: list[_Tok], lb: list[_Tok]) -> tuple[str, str, str] | None:
    """Two different values of the same attribute: one short run on each side, same frame."""
    if fa.additive or fb.additive or any(t.kind in ("id", "scope") for t in la + lb):
        return None
    for left in (la, lb):
        limit = 3 if all(t.raw[0].isupper() for t in left) else 2
        if len(left) > limit:
            return None
    shared = {t.norm for t in fa.content} & {t.norm for t in fb.content}
    where_a, where_b = _run_ok(fa, la, shared), _run_ok(fb, lb, shared)
    if where_a == where_b == "end" or (
        where_a == where_b == "start" and fa.equational and fb.equational
    ):
        return ("value", " ".join(t.raw for t in la), " ".join(t.raw for t in lb))
    return None


def _quote(toks: list[_Tok]) -> str:
    return " ".join(t.raw for t in toks)


@dataclass(frozen=True, slots=True)
class HeuristicJudge:
    """Deterministic contradiction judge without a model.

    Args:
        min_overlap: Share of the shorter statement's topic words the other
            must contain for the two to count as related.

    Example:
        >>> HeuristicJudge().judge(Statement("Ticket INC-7 is open."),
        ...                        Statement("Ticket INC-7 is closed.")).reason
        "antonym: 'open' vs 'closed' on shared 'Ticket INC-7'"
    """

    min_overlap: float = 0.5
    name: str = "heuristic"

    def judge(self, a: Statement, b: Statement) -> Judgment:
        """Judge two statements; see the module docstring for the signals used."""
        return self._structured(a, b) or self._text(a.text, b.text)

    def _verdict(self, verdict: Verdict, confidence: float, reason: str) -> Judgment:
        return Judgment(verdict, round(confidence, 3), reason, self.name)

    def _structured(self, a: Statement, b: Statement) -> Judgment | None:
        if None in (a.subject, b.subject, a.predicate, b.predicate):
            return None
        if _key(a.subject) != _key(b.subject):
            return self._verdict(
                "unrelated", 0.9, f"structured: different subjects {a.subject!r} vs {b.subject!r}"
            )
        if _key(a.predicate) != _key(b.predicate) or a.value is None or b.value is None:
            return None
        where = f"subject {a.subject!r} and predicate {a.predicate!r}"
        if _same_value(a.value, b.value):
            return self._verdict(
                "compatible", 0.95, f"structured: same {where} and value {a.value!r}"
            )
        return self._verdict(
            "contradiction",
            0.95,
            f"structured: same {where} with different values {a.value!r} vs {b.value!r}",
        )

    def _text(self, text_a: str, text_b: str) -> Judgment:
        topic_a, topic_b = _new_topic(text_a), _topic(text_b)
        shared_topic = topic_a.intersection(topic_b)
        smaller = min(len(topic_a), len(topic_b))
        overlap = len(shared_topic) / smaller if smaller else 0.0
        fa = _parse(text_a)
        if overlap < self.min_overlap:
            common = [t.raw for t in fa.content if t.norm in shared_topic]
            what = f"only {' '.join(common)!r} in common" if common else "no shared topic words"
            return self._verdict(
                "unrelated", 0.6 + 0.3 * (1 - overlap), f"unrelated: {what} (overlap {overlap:.2f})"
            )
        fb = _parse(text_b)
        shared = _quote([t for t in fa.content if t.norm in shared_topic])
        norms_a, norms_b = {t.norm for t in fa.content}, {t.norm for t in fb.content}
        only_a = [t for t in fa.content if t.norm not in norms_b and t.kind not in _VALUE_KINDS]
        only_b = [t for t in fb.content if t.norm not in norms_a and t.kind not in _VALUE_KINDS]
        pair = next(((x, y) for x in only_a for y in only_b if _opposed(x, y)), None)
        if pair:  # words on the same side of the same antonym group are explained too
            only_a = [t for t in only_a if t is not pair[0] and not (t.polar & pair[0].polar)]
            only_b = [t for t in only_b if t is not pair[1] and not (t.polar & pair[1].polar)]
        negated = len(fa.negations) % 2 != len(fb.negations) % 2
        diffs = _value_diffs(fa, fb)
        slot = _slot(fa, fb, only_a, only_b) if only_a and only_b else None
        if slot:
            diffs.append(slot)
            only_a, only_b = [], []
        if pair and negated:
            cue = _negation_cues(fa, fb)
            said, agreeing = (cue[0], pair[1]) if len(fa.negations) % 2 else (cue[1], pair[0])
            if not diffs and not (only_a and only_b):
                return self._verdict(
                    "compatible",
                    0.7,
                    f"compatible: negation and antonym "
                    f"cancel, '{said}' agrees with '{agreeing.raw}' on "
                    f"shared {shared!r}",
                )
        elif pair:
            diffs.insert(0, ("antonym", pair[0].raw, pair[1].raw))
        elif negated:
            diffs.insert(0, ("negation", *_negation_cues(fa, fb)))
        leftover = only_a + only_b
        if (
            len(diffs) == 1
            and not (only_a and only_b)
            and len(leftover) <= 1
            and not any(t.kind == "scope" for t in leftover)
        ):
            kind, x, y = diffs[0]
            confidence = {
                "antonym": 0.8,
                "negation": 0.8,
                "number": 0.75,
                "date": 0.75,
                "time": 0.75,
                "value": 0.7,
            }[kind] - 0.1 * len(leftover)
            on = "for" if kind == "value" else "on"
            return self._verdict(
                "contradiction", confidence, f"{kind}: '{x}' vs '{y}' {on} shared {shared!r}"
            )
        return self._verdict(
            "compatible", 0.5 + 0.3 * overlap, _compatible_reason(diffs, only_a, only_b, shared)
        )


_AUX = _words("is are was were has have had will can could does do did be been")


def _negation_cues(fa: _Frame, fb: _Frame) -> tuple[str, str]:
    """The negated phrase and its affirmative twin, e.g. ('is not approved', 'is approved')."""
    neg, aff = (fa, fb) if len(fa.negations) % 2 else (fb, fa)
    i = neg.negations[0]
    start = i - 1 if i > 0 and neg.raws[i - 1].norm in _AUX else i
    end = i + 1
    while end < len(neg.raws) and neg.raws[end].kind in ("stop", "neg"):
        end += 1  # "no longer", "has not been"
    head = neg.raws[end] if end < len(neg.raws) else None
    negated = " ".join(t.raw for t in neg.raws[start : end + 1])
    affirmed = "(not negated)"
    for j, tok in enumerate(aff.raws):
        if head is not None and tok.norm == head.norm:
            aux = [t.raw for t in aff.raws[max(0, j - 1) : j] if t.norm in _AUX]
            affirmed = " ".join([*aux, tok.raw])
            break
    return (negated, affirmed) if neg is fa else (affirmed, negated)


def _compatible_reason(
    diffs: list[tuple[str, str, str]], only_a: list[_Tok], only_b: list[_Tok], shared: str
) -> str:
    scopes = [t.raw for t in only_a + only_b if t.kind == "scope"]
    listed = "; ".join(f"{k} '{x}' vs '{y}'" for k, x, y in diffs)
    if scopes or (len(diffs) > 1 and any(k in ("date", "time") for k, _, _ in diffs)):
        return (
            f"compatible: different time frames ({listed or ' vs '.join(scopes)}) "
            f"on shared {shared!r}"
        )
    if len(diffs) > 1:
        return f"compatible: differs in several places ({listed}), so not the same claim"
    if diffs:
        return (
            f"compatible: {listed} but about different things "
            f"({_quote(only_a) or '-'!r} vs {_quote(only_b) or '-'!r})"
        )
    return f"compatible: related (shared {shared!r}) with no conflicting signal"


def _key(text: str | None) -> str:
    return (text or "").strip().casefold()


def _same_value(x: Any, y: Any) -> bool:
    try:
        if not isinstance(x, bool) and not isinstance(y, bool):
            return math.isclose(float(x), float(y), rel_tol=1e-9)
    except (TypeError, ValueError):
        pass
    if isinstance(x, str) and isinstance(y, str):
        return _key(x) == _key(y)
    return bool(x == y)
