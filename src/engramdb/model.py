"""Frozen value types shared by every layer: memories, events, receipts, ...

Nothing here talks to storage. Values are immutable; a change is a new value
(``dataclasses.replace``). Times are timezone-aware UTC ``datetime`` objects;
transaction time is also exposed as ``tx``, a monotonically increasing integer
assigned by the log, which is what ``as_of`` compares against.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

from engramdb.errors import InvalidInput, InvalidLayer, InvalidNamespace

__all__ = [
    "ACTIONS",
    "LAYERS",
    "STATUSES",
    "UNSET",
    "BasisExplanation",
    "Conflict",
    "Context",
    "Decision",
    "DecisionExplanation",
    "Event",
    "Grant",
    "Hit",
    "Memory",
    "MemoryDraft",
    "Principal",
    "ReadRecord",
    "RecallFilter",
    "RecallResult",
    "Receipt",
    "ReceiptItem",
    "VerifyReport",
    "check_layer",
    "check_namespace",
    "namespace_matches",
    "to_utc",
    "utcnow",
]


class _Unset:
    """The default of an argument that was not given (``None`` means "remove it").

    One object shared by the engine and both remote clients, so their
    signatures are equal, defaults included.
    """

    _one: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._one is None:
            cls._one = super().__new__(cls)
        return cls._one

    def __repr__(self) -> str:
        return "UNSET"

    def __reduce__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()

Layer = Literal["working", "episodic", "semantic", "procedural"]
LAYERS: tuple[str, ...] = ("working", "episodic", "semantic", "procedural")
STATUSES: tuple[str, ...] = (
    "active",
    "superseded",
    "retracted",
    "rejected",
    "archived",
    "quarantined",
    "erased",
)
ACTIONS: tuple[str, ...] = ("read", "write", "admin", "erase")

_SEGMENT = re.compile(r"^[a-z0-9][a-z0-9_.:@-]{0,127}\Z")
_GLOB_SEGMENT = re.compile(r"^(\*\*|\*|[a-z0-9][a-z0-9_.:@-]{0,127})\Z")
MAX_NAMESPACE_DEPTH = 16


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_utc(value: datetime | str | None, *, what: str = "time") -> datetime | None:
    """Normalise a datetime or ISO-8601 string to an aware UTC datetime.

    Naive datetimes are taken as UTC, which is what agents almost always mean.

    Raises:
        InvalidInput: the value is neither a datetime nor an ISO-8601 string,
            or falls outside years 1 to 9999 once converted to UTC.
    """
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise InvalidInput(
                f"{what} {value!r} is not an ISO-8601 time; use e.g. 2026-01-31T12:00:00Z",
                field=what,
            ) from exc
    if not isinstance(value, datetime):
        raise InvalidInput(f"{what} must be a datetime or ISO-8601 string", field=what)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00+05:00 is before year 1 in UTC
        raise InvalidInput(
            f"{what} {value.isoformat()} falls outside years 1 to 9999 once converted to "
            "UTC; give a time within that range",
            field=what,
        ) from exc


def check_namespace(namespace: str) -> str:
    """Validate a concrete namespace (``acme/research/market``) and return it.

    Raises:
        InvalidNamespace: empty, a glob, bad characters, or too deep.
    """
    if type(namespace) is str and namespace in _VALID_NAMESPACES:
        return namespace  # checked before (a batch names a few namespaces many times)
    if not isinstance(namespace, str) or not namespace:
        raise InvalidNamespace(
            "namespace must be a non-empty slash path such as 'acme/research'",
            namespace=namespace if isinstance(namespace, str) else None,
        )
    parts = namespace.split("/")
    if len(parts) > MAX_NAMESPACE_DEPTH or not all(_SEGMENT.match(p) for p in parts):
        # The value is not echoed back (a caller's input never is; see docs/http.md).
        raise InvalidNamespace(
            "namespace is malformed: use lowercase segments of "
            "[a-z0-9_.:@-] separated by '/', no leading, trailing or double slash, "
            f"at most {MAX_NAMESPACE_DEPTH} segments",
            field="namespace",
        )
    if type(namespace) is str and len(_VALID_NAMESPACES) < 10_000:
        _VALID_NAMESPACES.add(namespace)
    return namespace


_VALID_NAMESPACES: set[str] = set()  # namespaces check_namespace accepted (bounded)


def check_glob(pattern: str) -> str:
    """Validate a namespace glob: segments, ``*`` (one segment) or ``**`` (any depth).

    Raises:
        InvalidNamespace: malformed glob.
    """
    if not isinstance(pattern, str) or not pattern:
        raise InvalidNamespace("namespace glob must be a non-empty string such as 'acme/**'")
    parts = pattern.split("/")
    if len(parts) > MAX_NAMESPACE_DEPTH or not all(_GLOB_SEGMENT.match(p) for p in parts):
        raise InvalidNamespace(
            "namespace glob is malformed: segments of [a-z0-9_.:@-], "
            "'*' for one segment or '**' for any depth, separated by '/'",
            field="namespace",
        )
    return pattern


@functools.lru_cache(maxsize=1 << 16)
def namespace_matches(pattern: str, namespace: str) -> bool:
    """Whether ``namespace`` falls under ``pattern``.

    ``acme/**`` matches ``acme`` itself and everything below it; ``acme/*``
    matches exactly one segment below ``acme``; a plain path matches itself.
    Remembered: every read asks it of each namespace for each grant.
    """
    return _match(pattern.split("/"), namespace.split("/"))


def _match(pat: list[str], parts: list[str]) -> bool:
    if not pat:
        return not parts
    head = pat[0]
    if head == "**":
        rest = pat[1:]
        return any(_match(rest, parts[i:]) for i in range(len(parts) + 1))
    if not parts:
        return False
    if head == "*" or head == parts[0]:
        return _match(pat[1:], parts[1:])
    return False


def check_layer(layer: str) -> str:
    if layer not in LAYERS:
        raise InvalidLayer(f"unknown layer; use one of: {', '.join(LAYERS)}", field="layer")
    return layer


@dataclass(frozen=True, slots=True)
class MemoryDraft:
    """What a caller asks to remember; the engine turns it into a :class:`Memory`.

    Provenance (author, recorded time) is deliberately absent: the engine sets it.
    """

    text: str
    namespace: str
    layer: str = "semantic"
    subject: str | None = None
    predicate: str | None = None
    value: Any = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    importance: float = 0.5
    confidence: float = 1.0
    source: str | None = None
    session: str | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    expires_at: datetime | None = None
    embedding: tuple[float, ...] | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Memory:
    """One version of one memory, as seen from a read point.

    ``status`` is what the version was at the read point: a version that was
    later replaced reads as ``superseded`` only from read points after that.
    ``conflicts`` lists conflicts the write that produced this value detected.

    Provenance: ``author``, ``recorded_at`` and ``tx_from`` are set by the
    engine (the authenticated principal, the commit's time and transaction)
    and cannot be supplied. ``source`` and ``session`` are what the writer
    *said* (a URL, a tool, a conversation id): a claim, kept for the writer's
    own bookkeeping, never evidence of who wrote it. :meth:`provenance` puts
    the two side by side under those names.
    """

    id: str
    version: int
    namespace: str
    layer: str
    text: str
    subject: str | None
    predicate: str | None
    value: Any
    metadata: Mapping[str, Any]
    importance: float
    confidence: float
    author: str
    source: str | None
    session: str | None
    valid_from: datetime
    valid_to: datetime | None
    tx_from: int
    tx_to: int | None
    recorded_at: datetime
    status: str
    expires_at: datetime | None = None
    conflicts: tuple[Conflict, ...] = ()

    @property
    def is_current(self) -> bool:
        return self.tx_to is None

    @property
    def claimed_source(self) -> str | None:
        """``source`` by its honest name: the writer's claim, not checked by the engine."""
        return self.source

    @property
    def claimed_session(self) -> str | None:
        """``session`` by its honest name: the writer's claim, not checked by the engine."""
        return self.session

    def provenance(self) -> dict[str, Any]:
        """Engine-set provenance beside the writer's claims, labelled as such."""
        return {"author": self.author, "recorded_at": self.recorded_at, "tx": self.tx_from,
                "claimed_source": self.source, "claimed_session": self.session}

    def replace(self, **changes: Any) -> Memory:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form used by the doors and by export."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, datetime):
                v = v.isoformat()
            elif f.name == "metadata":
                v = dict(v)
            elif f.name == "conflicts":
                v = [c.to_dict() for c in v]
            out[f.name] = v
        return out


@dataclass(frozen=True, slots=True, order=True)
class ReceiptItem:
    """The exact memory version a read returned."""

    id: str
    version: int


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a read returned, precisely enough to re-read it later.

    Pass it to ``decide(..., basis=receipt)`` to record what a decision rests on.
    """

    items: tuple[ReceiptItem, ...]
    as_of: int
    valid_at: datetime | None = None
    principal: str | None = None
    query_digest: str | None = None

    def __iter__(self) -> Iterator[ReceiptItem]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": [{"id": i.id, "version": i.version} for i in self.items],
            "as_of": self.as_of,
            "valid_at": self.valid_at.isoformat() if self.valid_at else None,
            "principal": self.principal,
            "query_digest": self.query_digest,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Receipt:
        try:
            items = tuple(ReceiptItem(str(i["id"]), int(i["version"])) for i in data["items"])
            return cls(
                items=items,
                as_of=int(data["as_of"]),
                valid_at=to_utc(data.get("valid_at"), what="valid_at"),
                principal=data.get("principal"),
                query_digest=data.get("query_digest"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(
                "receipt must look like {'items': [{'id': ..., 'version': ...}], 'as_of': N}"
            ) from exc


@dataclass(frozen=True, slots=True)
class Hit:
    """One recalled memory with its fused score and the parts of that score."""

    memory: Memory
    score: float
    why: Mapping[str, float]
    contested: bool = False
    rivals: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "memory": self.memory.to_dict(),
            "score": self.score,
            "why": dict(self.why),
            "contested": self.contested,
            "rivals": list(self.rivals),
        }


@dataclass(frozen=True, slots=True)
class RecallResult:
    hits: tuple[Hit, ...]
    receipt: Receipt

    def __iter__(self) -> Iterator[Hit]:
        return iter(self.hits)

    def __len__(self) -> int:
        return len(self.hits)

    @property
    def memories(self) -> list[Memory]:
        return [h.memory for h in self.hits]


@dataclass(frozen=True, slots=True)
class RecallFilter:
    """Filters applied inside the index queries (never after them).

    ``namespaces`` is the resolved list of concrete namespaces the read may
    touch (request glob intersected with the principal's grants). ``None``
    means no restriction (admin reading everything).
    """

    namespaces: tuple[str, ...] | None = None
    layers: tuple[str, ...] | None = None
    authors: tuple[str, ...] | None = None
    statuses: tuple[str, ...] = ("active",)
    as_of: int | None = None
    valid_at: datetime | None = None
    recorded_after: datetime | None = None
    recorded_before: datetime | None = None
    valid_after: datetime | None = None
    valid_before: datetime | None = None
    metadata: tuple[tuple[str, Any], ...] = ()
    subject: str | None = None
    predicate: str | None = None
    session: str | None = None
    include_superseded: bool = False


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of the append-only log.

    ``payload`` is ``None`` once erasure has removed it; the chain still
    verifies because ``hash`` covers ``commitment``, never the plaintext.
    """

    seq: int
    tx: int
    kind: str
    namespace: str | None
    actor: str
    recorded_at: datetime
    subject_ref: str | None
    payload: Mapping[str, Any] | None
    commitment: str
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "tx": self.tx,
            "kind": self.kind,
            "namespace": self.namespace,
            "actor": self.actor,
            "recorded_at": self.recorded_at.isoformat(),
            "subject_ref": self.subject_ref,
            "payload": dict(self.payload) if self.payload is not None else None,
            "commitment": self.commitment,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True, slots=True)
class Conflict:
    """A detected collision between memories: data, not an exception."""

    id: str
    kind: str  # "version" | "contradiction"
    namespace: str
    memories: tuple[ReceiptItem, ...]
    detector: str
    reason: str
    policy: str
    outcome: str
    status: str  # "open" | "resolved"
    subject: str | None = None
    predicate: str | None = None
    winner: str | None = None
    resolution: str | None = None
    resolved_by: str | None = None
    tx: int = 0
    resolved_tx: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["memories"] = [{"id": m.id, "version": m.version} for m in self.memories]
        return out


@dataclass(frozen=True, slots=True)
class Decision:
    """A recorded decision and the exact memory versions it rested on.

    ``stale_tx`` is the transaction that first closed (superseded, retracted,
    rejected) or erased one of the ``basis`` versions; ``None`` while the
    basis is still current. A reader who may not read every basis memory sees
    only the ones it may read; ``basis_hidden`` counts the others, and
    ``stale_tx`` is then derived from the visible ones alone.
    """

    id: str
    principal: str
    description: str
    basis: tuple[ReceiptItem, ...]
    outcome: Mapping[str, Any]
    metadata: Mapping[str, Any]
    tx: int
    recorded_at: datetime
    namespace: str | None = None
    stale_tx: int | None = None
    basis_hidden: int = 0

    @property
    def stale(self) -> bool:
        return self.stale_tx is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "principal": self.principal,
            "description": self.description,
            "basis": [{"id": i.id, "version": i.version} for i in self.basis],
            "outcome": dict(self.outcome),
            "metadata": dict(self.metadata),
            "tx": self.tx,
            "recorded_at": self.recorded_at.isoformat(),
            "namespace": self.namespace,
            "stale_tx": self.stale_tx,
            "basis_hidden": self.basis_hidden,
        }


@dataclass(frozen=True, slots=True)
class BasisExplanation:
    """One basis item of a decision: as it was then, and what happened since.

    Attributes:
        item: the memory version the decision rested on.
        visible: whether the caller may read the memory; when false every
            other field is empty (forbidden looks like unknown).
        then: that version as read at the decision's transaction.
        now: the memory's current version (``None`` if its rows are gone).
        later: versions written after ``item``, oldest first, each with its author.
        superseded: a newer version has closed ``item``.
        retracted: the memory's current version is retracted.
        erased: the content was erased.
        conflicts: conflict records that name this memory.
        contested: at least one of ``conflicts`` is still open.
        stale: ``item`` is no longer the current, intact version.
    """

    item: ReceiptItem
    visible: bool
    then: Memory | None = None
    now: Memory | None = None
    later: tuple[Memory, ...] = ()
    superseded: bool = False
    retracted: bool = False
    erased: bool = False
    conflicts: tuple[Conflict, ...] = ()
    contested: bool = False
    stale: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "item": {"id": self.item.id, "version": self.item.version},
            "visible": self.visible,
            "then": self.then.to_dict() if self.then else None,
            "now": self.now.to_dict() if self.now else None,
            "later": [m.to_dict() for m in self.later],
            "superseded": self.superseded,
            "retracted": self.retracted,
            "erased": self.erased,
            "conflicts": [c.to_dict() for c in self.conflicts],
            "contested": self.contested,
            "stale": self.stale,
        }


@dataclass(frozen=True, slots=True)
class DecisionExplanation:
    """What ``explain(decision_id)`` returns: the decision and each basis item."""

    decision: Decision
    basis: tuple[BasisExplanation, ...]
    stale: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision.to_dict(),
            "basis": [b.to_dict() for b in self.basis],
            "stale": self.stale,
        }


@dataclass(frozen=True, slots=True)
class Context:
    """A working context packed under a token budget, with what it rests on.

    Attributes:
        text: the packed context, one numbered item per line with provenance.
        items: the recalled hits that made it into ``text``, in order.
        tokens: cl100k tokens ``text`` uses (never more than ``budget``).
        budget: the token budget asked for.
        truncated: the last item was cut to fit.
        receipt: exactly the versions in ``items``; pass it to ``decide``.
        parts: every line of ``text`` with its layer, score and token count
            (:class:`~engramdb.model_layers.ContextPart`), in text order.
        left_out: candidates that did not fit, and why
            (:class:`~engramdb.model_layers.LeftOut`).
    """

    text: str
    items: tuple[Hit, ...]
    tokens: int
    budget: int
    truncated: bool
    receipt: Receipt
    parts: tuple[Any, ...] = ()
    left_out: tuple[Any, ...] = ()

    def __str__(self) -> str:
        return self.text

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "items": [h.to_dict() for h in self.items],
            "tokens": self.tokens,
            "budget": self.budget,
            "truncated": self.truncated,
            "receipt": self.receipt.to_dict(),
            "parts": [p.to_dict() for p in self.parts],
            "left_out": [x.to_dict() for x in self.left_out],
        }


class ReadRecord(NamedTuple):
    """One recorded read of one memory version: ``(principal, time, version)``."""

    principal: str
    time: datetime
    version: int


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    kind: str  # "agent" | "service" | "person" | "admin"
    roles: tuple[str, ...]
    trust: float
    status: str  # "active" | "frozen" | "retired"
    created_tx: int


@dataclass(frozen=True, slots=True)
class Grant:
    id: str
    grantee: str  # principal name, or "role:<name>"
    pattern: str
    actions: tuple[str, ...]
    granted_by: str
    tx_from: int
    tx_to: int | None = None


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """Outcome of ``db.verify()``: ``ok`` or the first bad event and why."""

    ok: bool
    events_checked: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str | None = None
    rows_checked: int = 0

    def __bool__(self) -> bool:
        return self.ok

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
