"""Packing recalled memories into a working context under a token budget.

Pure: the engine recalls, this module decides what fits. Entries arrive best
first; each becomes one line that starts with its provenance (item number,
namespace, author, time, flags) so an agent reading the context can weigh and
cite each item. Packing is greedy in score order and stops at the first entry
that does not fit whole; that entry is cut to the remaining budget (ending in
``…``) when the remainder is large enough to say something, and dropped
otherwise. The packed text never uses more tokens than the budget, counted
with the same cl100k encoding as :mod:`engramdb.retrieval.tokens`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from engramdb.errors import InvalidInput
from engramdb.retrieval.tokens import count_tokens, truncate_to_tokens

__all__ = ["ELLIPSIS", "Entry", "Packed", "entry", "pack"]

ELLIPSIS = "…"
SEPARATOR = "\n"
MAX_BUDGET = 1_000_000


@dataclass(frozen=True, slots=True)
class Entry:
    """One candidate line: a provenance ``prefix`` and the memory ``body``."""

    prefix: str
    body: str


@dataclass(frozen=True, slots=True)
class Packed:
    """The outcome of :func:`pack`.

    Attributes:
        text: the packed lines joined by newlines.
        count: how many leading entries made it into ``text`` (the last one
            possibly cut).
        truncated: the last included entry was cut to fit.
        tokens: cl100k tokens of ``text``.
    """

    text: str
    count: int
    truncated: bool
    tokens: int


def _one_line(text: str) -> str:
    # A memory's own newlines would blur where one item ends and the next begins.
    return " ".join(text.split())


def entry(number: int, body: str, *, namespace: str, author: str, recorded_at: datetime,
          flags: Sequence[str] = ()) -> Entry:
    """Format one memory as a context line with its provenance.

    Args:
        number: 1-based position, matching the receipt's item order.
        body: the memory text (whitespace runs are folded to single spaces).
        namespace: where the memory lives.
        author: who wrote this version.
        recorded_at: when the database learned it (shown to the minute, UTC).
        flags: short markers such as ``contested``.

    Returns:
        The :class:`Entry`, e.g. prefix ``[1] acme/research | research |
        2026-03-01 12:00Z: `` and the folded body.
    """
    when = recorded_at.strftime("%Y-%m-%d %H:%MZ")
    marks = "".join(f" [{f}]" for f in flags)
    return Entry(f"[{number}] {namespace} | {author} | {when}{marks}: ", _one_line(body))


def pack(entries: Sequence[Entry], budget_tokens: int, *, min_tail_tokens: int = 12) -> Packed:
    """Pack ``entries`` (best first) into at most ``budget_tokens`` tokens.

    Args:
        entries: candidate lines, best first.
        budget_tokens: the hard limit on the packed text's tokens.
        min_tail_tokens: an entry that does not fit whole is cut only if at
            least this many tokens of its body would remain; otherwise packing
            stops without it.

    Returns:
        The :class:`Packed` text and how many entries it holds.

    Raises:
        InvalidInput: ``budget_tokens`` is not an integer in ``[1, 1_000_000]``.
    """
    if (isinstance(budget_tokens, bool) or not isinstance(budget_tokens, int)
            or not 1 <= budget_tokens <= MAX_BUDGET):
        raise InvalidInput(
            f"budget_tokens must be an integer from 1 to {MAX_BUDGET}, not {budget_tokens!r}",
            field="budget_tokens",
        )
    lines: list[str] = []
    used = 0
    truncated = False
    sep = count_tokens(SEPARATOR)
    for e in entries:
        join = sep if lines else 0
        line = e.prefix + e.body
        cost = count_tokens(line) + join
        if used + cost <= budget_tokens:
            lines.append(line)
            used += cost
            continue
        room = budget_tokens - used - join - count_tokens(e.prefix) - count_tokens(ELLIPSIS)
        if room >= min_tail_tokens:
            cut = truncate_to_tokens(e.body, room).rstrip()
            if cut:
                lines.append(e.prefix + cut + ELLIPSIS)
                truncated = True
        break
    text = SEPARATOR.join(lines)
    tokens = count_tokens(text)
    # Token counts of concatenated lines can differ from the sum of the parts
    # at the seams; trim from the end until the whole text is within budget.
    while tokens > budget_tokens and lines:
        last = lines.pop()
        truncated = False
        keep = count_tokens(last) - (tokens - budget_tokens) - count_tokens(ELLIPSIS) - 1
        if keep > 0:
            cut = truncate_to_tokens(last.removesuffix(ELLIPSIS), keep).rstrip()
            if cut:
                lines.append(cut + ELLIPSIS)
                truncated = True
        text = SEPARATOR.join(lines)
        tokens = count_tokens(text)
    return Packed(text=text, count=len(lines), truncated=truncated, tokens=tokens)
