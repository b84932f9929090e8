"""Time cues in a recall query: the dates it names, and whether it asks "when".

Pure functions over the query text, used by :mod:`engramdb.retrieval.hybrid`:

- :func:`named_span` reads the calendar dates a query names ("in July 2022",
  "on 1 May, 2022", "May 7, 2023", "in 2023") and returns the span they cover,
  from the start of the earliest to the end of the latest. Only dates with a
  year count: "May" alone is as often a verb as a month.
- :func:`asks_when` tells a question about time ("When did...", "How long...",
  "What year...") from others, and :func:`states_time` whether a memory's text
  says when something happened ("last Friday", "yesterday", "in 2021").

A memory whose valid time falls inside the named span, or shortly after it (a
conversation reports an event a few days after it happened), is more likely
the one the question is about; a memory that states a time is more likely to
answer a "when" question. Both are generic cues of English text, not of a data set.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from functools import lru_cache

__all__ = ["asks_when", "named_span", "span_affinity", "states_time"]

_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
_MONTHS.update({name.lower(): i for i, name in enumerate(calendar.month_abbr) if name})
_MONTH = "|".join(sorted(_MONTHS, key=len, reverse=True))
# "1 May, 2022", "1st of May 2022", "May 1, 2022", "May 2022", "2022".
_DATE = re.compile(
    rf"\b(?:(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({_MONTH})\.?"
    rf"|({_MONTH})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?\b"
    rf"|({_MONTH})\b)?[\s,]*((?:19|20)\d\d)\b",
    re.IGNORECASE,
)
_WHEN = re.compile(r"\b(?:when|how long|what (?:year|month|day|date|time|week))\b",
                   re.IGNORECASE)
_TIME_WORDS = frozenset("""
    yesterday today tonight tomorrow ago recently last next earlier since until
    weekend week month year season morning evening night
    monday tuesday wednesday thursday friday saturday sunday summer winter spring autumn
    january february march april june july august september october november december
    """.split())
_YEAR = re.compile(r"\b(?:19|20)\d\d\b")
_WORD = re.compile(r"\w+", re.UNICODE)
_DAY_MICROS = 86_400 * 1_000_000


@lru_cache(maxsize=4096)
def named_span(query: str) -> tuple[int, int] | None:
    """The span (start, end) in microseconds since the epoch, UTC, of the dates
    ``query`` names; ``None`` when it names none."""
    spans: list[tuple[datetime, datetime]] = []
    for m in _DATE.finditer(query):
        day_first, month_a, month_b, day_after, month_only, year_text = m.groups()
        year = int(year_text)
        month_name = month_a or month_b or month_only
        day = day_first or day_after
        if month_name is None:
            spans.append((datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)))
            continue
        month = _MONTHS[month_name.lower()]
        if day and 1 <= int(day) <= calendar.monthrange(year, month)[1]:
            start = datetime(year, month, int(day), tzinfo=UTC)
            spans.append((start, start + timedelta(days=1)))
        else:
            spans.append((datetime(year, month, 1, tzinfo=UTC),
                          datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)))
    if not spans:
        return None
    return (int(min(s for s, _ in spans).timestamp() * 1_000_000),
            int(max(e for _, e in spans).timestamp() * 1_000_000))


def span_affinity(span: tuple[int, int], valid_from: int | None, *, after_days: float,
                  before_days: float) -> float:
    """1 inside ``span``, falling linearly to 0 at ``after_days`` after its end
    and ``before_days`` before its start; 0 for a memory without a valid time."""
    if valid_from is None:
        return 0.0
    start, end = span
    if valid_from > end:
        distance = (valid_from - end) / (_DAY_MICROS * after_days) if after_days > 0 else 1.0
    elif valid_from < start:
        distance = (start - valid_from) / (_DAY_MICROS * before_days) if before_days > 0 else 1.0
    else:
        return 1.0
    return max(0.0, 1.0 - distance)


def asks_when(query: str) -> bool:
    """Whether ``query`` asks about time ("When did...", "How long...", "What year...")."""
    return _WHEN.search(query) is not None


def states_time(text: str, words: Collection[str] | None = None) -> bool:
    """Whether ``text`` says when something happened (a time word, a weekday, a year).

    ``words``: the lower-cased words of ``text`` when the caller has them already.
    """
    found = set(_WORD.findall(text.lower())) if words is None else words
    return not _TIME_WORDS.isdisjoint(found) or _YEAR.search(text) is not None
