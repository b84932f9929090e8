"""What a contradiction judge says: the statements it compares and its judgment.

The values shared by every judge (:mod:`engramdb.policy.heuristic_judge`,
:mod:`engramdb.policy.llm_judge`) and by the engine that calls them; see
:mod:`engramdb.policy.judge` for what a judge decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from engramdb.errors import InvalidInput
from engramdb.model import Memory

__all__ = ["VERDICTS", "Judge", "Judgment", "Statement", "Verdict"]

Verdict = Literal["contradiction", "compatible", "unrelated"]
VERDICTS: tuple[str, ...] = ("contradiction", "compatible", "unrelated")


@dataclass(frozen=True, slots=True)
class Statement:
    """One side of a judgment: free text, optionally with a structured assertion.

    Attributes:
        text: What the agent wrote.
        subject: Assertion subject, e.g. ``"company:X"``.
        predicate: Assertion predicate, e.g. ``"outlook"``.
        value: Assertion value, any JSON-like value.
    """

    text: str
    subject: str | None = None
    predicate: str | None = None
    value: Any = None

    @classmethod
    def of(cls, memory: Memory) -> Statement:
        """The statement a stored memory makes."""
        return cls(memory.text, memory.subject, memory.predicate, memory.value)


@dataclass(frozen=True, slots=True)
class Judgment:
    """A judge's answer about two statements.

    Attributes:
        verdict: ``"contradiction"``, ``"compatible"`` or ``"unrelated"``.
        confidence: How sure the judge is, in ``[0, 1]``.
        reason: Human-readable explanation naming the signal that decided.
        detector: Name of the judge that produced the verdict.
    """

    verdict: Verdict
    confidence: float
    reason: str
    detector: str

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise InvalidInput(
                f"verdict must be one of {', '.join(VERDICTS)}, not {self.verdict!r}"
            )
        if not 0.0 <= self.confidence <= 1.0:
            raise InvalidInput(f"confidence must be in [0, 1], not {self.confidence!r}")


@runtime_checkable
class Judge(Protocol):
    """Anything that can judge two statements; ``name`` goes into ``Judgment.detector``."""

    name: str

    def judge(self, a: Statement, b: Statement) -> Judgment:
        """Judge whether ``a`` and ``b`` contradict, are compatible or are unrelated."""
        ...
