"""Frozen value types of the memory layers: tool and procedure statistics, context parts.

Working blocks, episodes, summaries and procedures are :class:`~engramdb.model.Memory`
values (layers ``working``, ``episodic``, ``procedural``); what they add is
here. Every value has ``to_dict`` and ``from_dict`` so the remote clients
rebuild exactly what the engine returned.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engramdb.model import to_utc

__all__ = [
    "ContextPart",
    "LeftOut",
    "ProcedureInfo",
    "Recommendation",
    "ToolStats",
    "VersionStats",
]


def _opt_float(v: Any) -> float | None:
    return None if v is None else float(v)


@dataclass(frozen=True, slots=True)
class ToolStats:
    """What the outcomes of one tool say about its reliability.

    Attributes:
        tool: the tool's name.
        calls, successes: counted outcomes.
        success_rate: ``successes / calls``.
        recent_rate: success rate with each outcome weighted ``0.5 ** (age / 10)``,
            ``age`` being its position counted from the newest (0): the last ten
            calls weigh as much as all earlier ones together.
        last_10_failures: failures among the ten newest outcomes.
        latency_p50_ms, latency_p95_ms: nearest-rank percentiles of the reported
            latencies (``None`` when none was reported).
        errors: the most common errors, ``(error, count)``, most frequent first.
        agents: who reported the counted outcomes.
        last_at: when the newest outcome was recorded.
    """

    tool: str
    calls: int
    successes: int
    success_rate: float
    recent_rate: float
    last_10_failures: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    errors: tuple[tuple[str, int], ...]
    agents: tuple[str, ...]
    last_at: datetime | None

    def note(self) -> str:
        """One line an agent can read: ``web_search: 4 of the last 10 calls failed (429)``."""
        recent = min(self.calls, 10)
        text = (f"{self.tool}: {self.last_10_failures} of the last {recent} calls failed"
                f" ({self.success_rate:.0%} of {self.calls} succeeded overall)")
        if self.errors:
            text += "; most common error: " + self.errors[0][0]
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "tool": self.tool, "calls": self.calls, "successes": self.successes,
            "success_rate": self.success_rate, "recent_rate": self.recent_rate,
            "last_10_failures": self.last_10_failures,
            "latency_p50_ms": self.latency_p50_ms, "latency_p95_ms": self.latency_p95_ms,
            "errors": [[e, n] for e, n in self.errors], "agents": list(self.agents),
            "last_at": self.last_at.isoformat() if self.last_at else None,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ToolStats:
        return cls(
            tool=str(d["tool"]), calls=int(d["calls"]), successes=int(d["successes"]),
            success_rate=float(d["success_rate"]), recent_rate=float(d["recent_rate"]),
            last_10_failures=int(d["last_10_failures"]),
            latency_p50_ms=_opt_float(d.get("latency_p50_ms")),
            latency_p95_ms=_opt_float(d.get("latency_p95_ms")),
            errors=tuple((str(e), int(n)) for e, n in d.get("errors") or ()),
            agents=tuple(str(a) for a in d.get("agents") or ()),
            last_at=to_utc(d.get("last_at"), what="last_at"),
        )


@dataclass(frozen=True, slots=True)
class VersionStats:
    """Reported outcomes of one version of a procedure."""

    version: int
    uses: int
    successes: int

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.uses if self.uses else None

    @property
    def expected_rate(self) -> float:
        """The Laplace estimate ``(successes + 1) / (uses + 2)``: 0.5 with no evidence."""
        return (self.successes + 1) / (self.uses + 2)

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "uses": self.uses, "successes": self.successes,
                "success_rate": self.success_rate}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VersionStats:
        return cls(int(d["version"]), int(d["uses"]), int(d["successes"]))


@dataclass(frozen=True, slots=True)
class ProcedureInfo:
    """A named procedure (playbook, prompt snippet): its current text and every version's record.

    Attributes:
        name, namespace: what identifies it.
        id: the memory id; each ``procedure`` call adds a version of it.
        version: the current version, whose text is ``text``.
        versions: outcome statistics per version, oldest first (versions with
            no reported use included).
    """

    name: str
    namespace: str
    id: str
    version: int
    text: str
    author: str
    versions: tuple[VersionStats, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "namespace": self.namespace, "id": self.id,
                "version": self.version, "text": self.text, "author": self.author,
                "versions": [v.to_dict() for v in self.versions]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProcedureInfo:
        return cls(str(d["name"]), str(d["namespace"]), str(d["id"]), int(d["version"]),
                   str(d["text"]), str(d["author"]),
                   tuple(VersionStats.from_dict(v) for v in d["versions"]))


@dataclass(frozen=True, slots=True)
class Recommendation:
    """A procedure version or tool likely to succeed for a task, and why.

    Attributes:
        kind: ``procedure`` or ``tool``.
        name: the procedure's or tool's name.
        version: the procedure version recommended (``None`` for a tool).
        score: ``relevance * expected_rate``; recommendations come best first.
        relevance: how well it matches the task, 0..1.
        expected_rate: the Laplace estimate of its success rate.
        evidence: the counts and rates the score rests on.
    """

    kind: str
    name: str
    version: int | None
    score: float
    relevance: float
    expected_rate: float
    evidence: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "version": self.version,
                "score": self.score, "relevance": self.relevance,
                "expected_rate": self.expected_rate, "evidence": dict(self.evidence)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Recommendation:
        return cls(str(d["kind"]), str(d["name"]),
                   None if d.get("version") is None else int(d["version"]),
                   float(d["score"]), float(d["relevance"]), float(d["expected_rate"]),
                   dict(d.get("evidence") or {}))


@dataclass(frozen=True, slots=True)
class ContextPart:
    """One line of an assembled context.

    Attributes:
        layer: ``working``, ``procedural``, ``semantic`` or ``episodic``.
        kind: ``block``, ``procedure``, ``tool``, ``fact`` or ``episode``.
        label: the block, procedure or tool name, or the memory id.
        text: the line as it appears in the context.
        tokens: its tokens on its own (the joined text may differ by a seam).
        score: its relevance score (pinned blocks: 1.0).
        shortened: the body was cut extractively to fit.
        memory_id, version: the memory it shows (``None`` for a tool note).
    """

    layer: str
    kind: str
    label: str
    text: str
    tokens: int
    score: float
    shortened: bool = False
    memory_id: str | None = None
    version: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "kind": self.kind, "label": self.label,
                "text": self.text, "tokens": self.tokens, "score": self.score,
                "shortened": self.shortened, "memory_id": self.memory_id,
                "version": self.version}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ContextPart:
        return cls(str(d["layer"]), str(d["kind"]), str(d["label"]), str(d["text"]),
                   int(d["tokens"]), float(d["score"]), bool(d.get("shortened")),
                   d.get("memory_id"),
                   None if d.get("version") is None else int(d["version"]))


@dataclass(frozen=True, slots=True)
class LeftOut:
    """A candidate that did not make it into a context, and why.

    ``reason`` is ``budget`` (no room left), ``quota`` (its layer's quota was
    spent) or ``limit`` (beyond the candidates considered).
    """

    layer: str
    kind: str
    label: str
    tokens: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "kind": self.kind, "label": self.label,
                "tokens": self.tokens, "reason": self.reason}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LeftOut:
        return cls(str(d["layer"]), str(d["kind"]), str(d["label"]), int(d["tokens"]),
                   str(d["reason"]))
