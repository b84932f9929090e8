"""Contradiction judgment between two statements: the conflict detector's pluggable judge.

A judge answers one question about two memories: do they *contradict* each
other, are they *compatible* (about the same thing and both can hold), or are
they *unrelated*? The answer is a :class:`Judgment` value with a confidence and
a reason a person can read in an audit.

Two judges ship here (this module re-exports them and the values they share,
from :mod:`.judgment`, :mod:`.heuristic_judge` and :mod:`.llm_judge`):

* :class:`HeuristicJudge`: no model, deterministic, explainable. It first
  decides whether the statements are about the same thing (shared topic
  words), then looks for exactly one point where they disagree: a negation, an
  antonym, a number with the same unit, a date or time, or the value of the
  same attribute ("X's CEO is Alice" / "X's CEO is Bob"). Two or more
  differences mean different things or different times, which is not a
  contradiction. Reasons start with the deciding signal, e.g.
  ``negation: 'is approved' vs 'is not approved' on shared 'loan application'``.
* :class:`LLMJudge`: asks any OpenAI-compatible ``/chat/completions`` endpoint
  (Ollama, vLLM, OpenAI, ...) for a JSON verdict, optionally falling back to
  another judge when the endpoint fails.

Structured assertions (``subject``, ``predicate``, ``value``) are judged
exactly when both sides carry them: same subject and predicate with different
values is a contradiction. Whether a predicate admits several values is the
caller's business (the predicate schema); call the judge for cardinality-one
predicates or for free text.
"""

from __future__ import annotations

from engramdb.policy.heuristic_judge import HeuristicJudge
from engramdb.policy.judgment import VERDICTS, Judge, Judgment, Statement, Verdict
from engramdb.policy.llm_judge import LLMJudge

__all__ = ["VERDICTS", "HeuristicJudge", "Judge", "Judgment", "LLMJudge", "Statement", "Verdict"]
