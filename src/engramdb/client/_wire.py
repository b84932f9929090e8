"""JSON from the server back into the value types of :mod:`engramdb.model`.

The server sends ``Memory.to_dict()`` and friends; these functions are their
inverses, so a remote caller gets the very same frozen values an embedded
caller does. Errors are rebuilt with :func:`engramdb.errors.error_from_wire`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engramdb import errors as E
from engramdb.audit.checkpoint import Checkpoint, SignatureCheck
from engramdb.audit.evidence import CheckpointReport, EventProof
from engramdb.audit.merkle import ConsistencyProof
from engramdb.model import (
    BasisExplanation,
    Conflict,
    Context,
    Decision,
    DecisionExplanation,
    Event,
    Grant,
    Hit,
    Memory,
    Principal,
    ReadRecord,
    RecallResult,
    Receipt,
    ReceiptItem,
    VerifyReport,
    to_utc,
)
from engramdb.policy.conflicts import NamespaceSettings, PredicateSchema

__all__ = [
    "PrincipalInfo",
    "basis_to_wire",
    "checkpoint_from_wire",
    "checkpoint_report_from_wire",
    "conflict_from_wire",
    "context_from_wire",
    "decision_from_wire",
    "encode",
    "error_from_response",
    "event_from_wire",
    "explanation_from_wire",
    "grant_from_wire",
    "hit_from_wire",
    "memory_from_wire",
    "predicate_from_wire",
    "principal_from_wire",
    "proof_from_wire",
    "read_from_wire",
    "recall_from_wire",
    "settings_from_wire",
    "verify_from_wire",
]


@dataclass(frozen=True, slots=True)
class PrincipalInfo:
    """Who a remote client acts as (the fields of the engine's ``session.principal``)."""

    name: str
    roles: tuple[str, ...] = ()
    trust: float = 0.5
    is_admin: bool = False


def _time(value: Any) -> datetime | None:
    return to_utc(value) if value is not None else None


def _items(values: Any) -> tuple[ReceiptItem, ...]:
    return tuple(ReceiptItem(str(v["id"]), int(v["version"])) for v in values or ())


def conflict_from_wire(d: Mapping[str, Any]) -> Conflict:
    return Conflict(
        id=d["id"], kind=d["kind"], namespace=d["namespace"], memories=_items(d["memories"]),
        detector=d["detector"], reason=d["reason"], policy=d["policy"], outcome=d["outcome"],
        status=d["status"], subject=d.get("subject"), predicate=d.get("predicate"),
        winner=d.get("winner"), resolution=d.get("resolution"),
        resolved_by=d.get("resolved_by"), tx=int(d.get("tx", 0)),
        resolved_tx=d.get("resolved_tx"),
    )


def memory_from_wire(d: Mapping[str, Any]) -> Memory:
    return Memory(
        id=d["id"], version=int(d["version"]), namespace=d["namespace"], layer=d["layer"],
        text=d["text"], subject=d.get("subject"), predicate=d.get("predicate"),
        value=d.get("value"), metadata=dict(d.get("metadata") or {}),
        importance=float(d["importance"]), confidence=float(d["confidence"]),
        author=d["author"], source=d.get("source"), session=d.get("session"),
        valid_from=to_utc(d["valid_from"]),  # type: ignore[arg-type]
        valid_to=_time(d.get("valid_to")), tx_from=int(d["tx_from"]),
        tx_to=d.get("tx_to"), recorded_at=to_utc(d["recorded_at"]),  # type: ignore[arg-type]
        status=d["status"], expires_at=_time(d.get("expires_at")),
        conflicts=tuple(conflict_from_wire(c) for c in d.get("conflicts") or ()),
    )


def recall_from_wire(d: Mapping[str, Any]) -> RecallResult:
    return RecallResult(hits=tuple(hit_from_wire(h) for h in d["hits"]),
                        receipt=Receipt.from_dict(d["receipt"]))


def hit_from_wire(h: Mapping[str, Any]) -> Hit:
    return Hit(memory=memory_from_wire(h["memory"]), score=float(h["score"]),
               why={k: float(v) for k, v in h.get("why", {}).items()},
               contested=bool(h.get("contested", False)), rivals=tuple(h.get("rivals") or ()))


def context_from_wire(d: Mapping[str, Any]) -> Context:
    return Context(text=d["text"], items=tuple(hit_from_wire(h) for h in d["items"]),
                   tokens=int(d["tokens"]), budget=int(d["budget"]),
                   truncated=bool(d["truncated"]), receipt=Receipt.from_dict(d["receipt"]))


def decision_from_wire(d: Mapping[str, Any]) -> Decision:
    return Decision(
        id=d["id"], principal=d["principal"], description=d["description"],
        basis=_items(d["basis"]), outcome=dict(d.get("outcome") or {}),
        metadata=dict(d.get("metadata") or {}), tx=int(d["tx"]),
        recorded_at=to_utc(d["recorded_at"]),  # type: ignore[arg-type]
        namespace=d.get("namespace"), stale_tx=d.get("stale_tx"),
    )


def explanation_from_wire(d: Mapping[str, Any]) -> DecisionExplanation:
    def basis(b: Mapping[str, Any]) -> BasisExplanation:
        return BasisExplanation(
            item=ReceiptItem(str(b["item"]["id"]), int(b["item"]["version"])),
            visible=bool(b["visible"]),
            then=memory_from_wire(b["then"]) if b.get("then") else None,
            now=memory_from_wire(b["now"]) if b.get("now") else None,
            later=tuple(memory_from_wire(m) for m in b.get("later") or ()),
            superseded=bool(b.get("superseded")), retracted=bool(b.get("retracted")),
            erased=bool(b.get("erased")),
            conflicts=tuple(conflict_from_wire(c) for c in b.get("conflicts") or ()),
            contested=bool(b.get("contested")), stale=bool(b.get("stale")),
        )

    return DecisionExplanation(decision=decision_from_wire(d["decision"]),
                               basis=tuple(basis(b) for b in d["basis"]),
                               stale=bool(d["stale"]))


def read_from_wire(d: Mapping[str, Any]) -> ReadRecord:
    return ReadRecord(principal=d["principal"], time=to_utc(d["time"]),  # type: ignore[arg-type]
                      version=int(d["version"]))


def basis_to_wire(value: Any) -> Any:
    """A decision basis as JSON: receipts as receipt objects, the rest as ``{id, version}``.

    Anything unrecognised is sent as it is, for the engine to refuse with its message.
    """
    if isinstance(value, Receipt):
        return value.to_dict()
    if isinstance(value, (RecallResult, Context)):
        return value.receipt.to_dict()
    if isinstance(value, Hit):
        return {"id": value.memory.id, "version": value.memory.version}
    if isinstance(value, (Memory, ReceiptItem)):
        return {"id": value.id, "version": value.version}
    if (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str)
            and isinstance(value[1], int) and not isinstance(value[1], bool)):
        return {"id": value[0], "version": value[1]}
    if isinstance(value, (list, tuple)):
        flat: list[Any] = []
        for item in value:
            wired = basis_to_wire(item)
            flat.extend(wired if isinstance(wired, list) else [wired])
        return flat
    return encode(value)


def event_from_wire(d: Mapping[str, Any]) -> Event:
    return Event(
        seq=int(d["seq"]), tx=int(d["tx"]), kind=d["kind"], namespace=d.get("namespace"),
        actor=d["actor"], recorded_at=to_utc(d["recorded_at"]),  # type: ignore[arg-type]
        subject_ref=d.get("subject_ref"), payload=d.get("payload"),
        commitment=d["commitment"], prev_hash=d["prev_hash"], hash=d["hash"],
    )


def grant_from_wire(d: Mapping[str, Any]) -> Grant:
    return Grant(id=d["id"], grantee=d["grantee"], pattern=d["pattern"],
                 actions=tuple(d["actions"]), granted_by=d["granted_by"],
                 tx_from=int(d["tx_from"]), tx_to=d.get("tx_to"))


def principal_from_wire(d: Mapping[str, Any]) -> Principal:
    return Principal(name=d["name"], kind=d["kind"], roles=tuple(d["roles"]),
                     trust=float(d["trust"]), status=d["status"],
                     created_tx=int(d["created_tx"]))


def verify_from_wire(d: Mapping[str, Any]) -> VerifyReport:
    return VerifyReport(**{k: d[k] for k in VerifyReport.__slots__ if k in d})


def predicate_from_wire(d: Mapping[str, Any]) -> PredicateSchema:
    return PredicateSchema(
        pattern=d["pattern"], predicate=d["predicate"], cardinality=d["cardinality"],
        value_type=d["value_type"], merge=d.get("merge"), policy=d["policy"],
        declared=bool(d["declared"]), id=d.get("id"), tx_from=d.get("tx_from"))


def settings_from_wire(d: Mapping[str, Any]) -> NamespaceSettings:
    return NamespaceSettings(
        trust_floor=d.get("trust_floor"), detect_free_text=bool(d["detect_free_text"]),
        default_policy=d["default_policy"], authority=tuple(d.get("authority") or ()),
        free_text_candidates=int(d["free_text_candidates"]),
        judge_min_confidence=float(d["judge_min_confidence"]))


def checkpoint_from_wire(d: Mapping[str, Any]) -> Checkpoint:
    """A signed checkpoint (its form is checked again here, as when read from a file)."""
    return Checkpoint.from_dict(dict(d))


def checkpoint_report_from_wire(d: Mapping[str, Any]) -> CheckpointReport:
    sig = d.get("signature")
    consistency = d.get("consistency")
    log = d.get("log")
    return CheckpointReport(
        ok=bool(d["ok"]), problem=d.get("problem"),
        signature=None if sig is None else SignatureCheck(
            ok=bool(sig["ok"]), trusted=bool(sig["trusted"]), key_id=sig["key_id"],
            reason=sig.get("reason")),
        checkpoint_size=int(d["checkpoint_size"]), current_size=int(d["current_size"]),
        consistency=None if consistency is None else ConsistencyProof.from_dict(consistency),
        log=None if log is None else verify_from_wire(log))


def proof_from_wire(d: Mapping[str, Any]) -> EventProof:
    return EventProof.from_dict(dict(d))


def encode(value: Any) -> Any:
    """Python arguments to JSON: datetimes as ISO-8601, tuples as lists, recursively."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars (embeddings)
        return value.tolist()
    return value


_BY_STATUS: dict[int, type[E.EngramError]] = {
    400: E.InvalidInput, 401: E.Unauthenticated, 403: E.PermissionDenied, 404: E.NotFound,
    409: E.ConflictError, 413: E.PayloadTooLarge, 429: E.RateLimited, 502: E.UpstreamError,
    503: E.StorageError,
}


def error_from_response(status: int, body: Any, url: str) -> E.EngramError:
    """The exception the server meant, by its ``code``; by HTTP status if it sent none."""
    error = body.get("error") if isinstance(body, Mapping) else None
    known = {cls.code for cls in _all(E.EngramError)}
    if isinstance(error, Mapping) and error.get("code") in known:
        return E.error_from_wire(dict(error))
    cls = _BY_STATUS.get(status, E.StorageError if status >= 500 else E.EngramError)
    if isinstance(error, Mapping) and isinstance(error.get("message"), str):
        details = error.get("details") if isinstance(error.get("details"), Mapping) else {}
        return cls(error["message"], **{**dict(details or {}), "code": error.get("code")})
    return cls(f"the server at {url} answered HTTP {status} without an EngramDB error body; "
               "is this an EngramDB server (or a proxy in front of it)?", status=status)


def _all(cls: type[E.EngramError]) -> list[type[E.EngramError]]:
    out = [cls]
    for sub in cls.__subclasses__():
        out.extend(_all(sub))
    return out
