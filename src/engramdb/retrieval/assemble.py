"""Assembling a working context from the four layers under a token budget.

Pure: the engine gathers candidates (pinned blocks, procedures, tool notes,
facts, episodes), this module decides what goes in and how it is laid out.

* Pinned blocks come first and are never cut: each goes in whole if it fits
  what is left of the budget (and of the ``working`` quota), else it is left
  out with that reason.
* Every other candidate is taken best score first. One that fits whole goes
  in; one that does not is shortened extractively (its sentences most
  relevant to the task, in their own order, or failing that its head) to the
  room left, when at least ``MIN_TAIL`` tokens of it would remain; otherwise
  it is left out. A per-layer quota bounds the tokens of that layer.
* The text is laid out by section (working, procedural, semantic, episodic);
  inside a section in score order, episodes in the order they happened.
  The joined text is counted again and trimmed from the lowest-scored
  unpinned line until it is within the budget: the budget is never exceeded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from engramdb.model_layers import ContextPart, LeftOut
from engramdb.retrieval.tokens import ENCODING_NAME, count_lines, count_tokens, truncate_to_tokens

__all__ = ["MIN_TAIL", "Assembly", "Candidate", "assemble", "shorten"]

ELLIPSIS = "…"
SEPARATOR = "\n"
MIN_TAIL = 12
SECTIONS = ("working", "procedural", "semantic", "episodic")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True, slots=True)
class Candidate:
    """Something that could go into the context.

    ``prefix`` is the line's head (provenance, flags) and is never cut;
    ``body`` may be shortened. A candidate with a ``memory_id`` gets its
    number (``[n] ``, its place in the receipt) in front of the prefix.
    ``order`` sorts episodes in time.
    """

    layer: str
    kind: str
    label: str
    prefix: str
    body: str
    score: float
    pinned: bool = False
    memory_id: str | None = None
    version: int | None = None
    order: float = 0.0


@dataclass(frozen=True, slots=True)
class Assembly:
    text: str
    tokens: int
    parts: tuple[ContextPart, ...]
    chosen: tuple[Candidate, ...]  # the candidates behind ``parts``, same order
    left_out: tuple[LeftOut, ...]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def shorten(body: str, room: int, task: str, encoding: str = ENCODING_NAME) -> str:
    """The most task-relevant sentences of ``body`` that fit ``room`` tokens, in order.

    Extractive only: whole sentences of the body, kept in their order, ending
    in ``…``; when not even one sentence fits, the body's head cut at a token
    boundary. Returns ``""`` when nothing fits.
    """
    if room <= 0:
        return ""
    words = {w.lower() for w in _WORD.findall(task)}
    sentences = [s for s in _SENTENCE.split(body) if s]
    if len(sentences) > 1:
        ranked = sorted(range(len(sentences)), key=lambda i: (
            -len(words & {w.lower() for w in _WORD.findall(sentences[i])}), i))
        keep: set[int] = set()
        for i in ranked:
            trial = " ".join(sentences[j] for j in sorted(keep | {i})) + ELLIPSIS
            if count_tokens(trial, encoding) <= room:
                keep.add(i)
        if keep:
            return " ".join(sentences[j] for j in sorted(keep)) + ELLIPSIS
    budget = room - count_tokens(ELLIPSIS, encoding)
    if budget <= 0:
        return ""
    head = truncate_to_tokens(body, budget, encoding).rstrip()
    return head + ELLIPSIS if head else ""


def assemble(candidates: Sequence[Candidate], budget: int, *, task: str,
             quotas: Mapping[str, int] | None = None,
             encoding: str = ENCODING_NAME) -> Assembly:
    """Choose and lay out ``candidates`` within ``budget`` tokens (see the module doc)."""
    quota_left = dict(quotas or {})
    left = budget
    sep = count_tokens(SEPARATOR, encoding)
    chosen: list[tuple[Candidate, str, bool]] = []
    out: list[LeftOut] = []

    def room_for(layer: str) -> int:
        return min(left, quota_left.get(layer, left))

    def take(c: Candidate, line: str, cut: bool, cost: int) -> None:
        nonlocal left
        chosen.append((c, line, cut))
        left -= cost
        if c.layer in quota_left:
            quota_left[c.layer] -= cost

    def reason(c: Candidate, cost: int) -> str:
        return "quota" if c.layer in quota_left and quota_left[c.layer] < min(cost, left) \
            else "budget"

    def head(c: Candidate, number: str = "[999] ") -> str:
        # Costs are counted with a wide number; the real one is never wider.
        return (number if c.memory_id is not None else "") + c.prefix

    pinned = [c for c in candidates if c.pinned]
    rest = sorted((c for c in candidates if not c.pinned), key=lambda c: -c.score)
    for c in pinned:
        body = _one_line(c.body)
        cost = count_tokens(head(c) + body, encoding) + (sep if chosen else 0)
        if cost <= room_for(c.layer):
            take(c, body, False, cost)
        else:
            out.append(LeftOut(c.layer, c.kind, c.label, cost, reason(c, cost)))
    for c in rest:
        body = _one_line(c.body)
        join = sep if chosen else 0
        cost = count_tokens(head(c) + body, encoding) + join
        room = room_for(c.layer)
        if cost <= room:
            take(c, body, False, cost)
            continue
        tail = room - join - count_tokens(head(c), encoding)
        cut = shorten(body, tail, task, encoding) if tail >= MIN_TAIL else ""
        if cut:
            take(c, cut, True, count_tokens(head(c) + cut, encoding) + join)
        else:
            out.append(LeftOut(c.layer, c.kind, c.label, cost, reason(c, cost)))

    def layout_key(item: tuple[Candidate, str, bool]) -> tuple[int, float]:
        c = item[0]
        section = SECTIONS.index(c.layer) if c.layer in SECTIONS else len(SECTIONS)
        if c.pinned:
            return section, 0.0
        return section, (c.order if c.kind == "episode" else -c.score)

    chosen.sort(key=layout_key)

    def lines() -> list[str]:
        n = 0
        result = []
        for c, body, _ in chosen:
            if c.memory_id is not None:
                n += 1
            result.append(head(c, f"[{n}] ") + body)
        return result

    laid = lines()
    tokens = count_lines(laid, encoding)  # the joined text's count, exactly
    # Seams between lines can count differently from the lines alone.
    while tokens > budget and chosen:
        victims = [i for i, (c, _, _) in enumerate(chosen) if not c.pinned] or [len(chosen) - 1]
        i = min(victims, key=lambda j: chosen[j][0].score)
        c, body, _ = chosen.pop(i)
        out.append(LeftOut(c.layer, c.kind, c.label, count_tokens(head(c) + body, encoding),
                           "budget"))
        laid = lines()
        tokens = count_lines(laid, encoding)
    text = SEPARATOR.join(laid)
    parts = tuple(
        ContextPart(c.layer, c.kind, c.label, line, count_tokens(line, encoding), c.score,
                    cut, c.memory_id, c.version)
        for (c, _, cut), line in zip(chosen, laid, strict=True))
    return Assembly(text, tokens, parts, tuple(c for c, _, _ in chosen), tuple(out))
