"""Turning caller input into validated rows, and stored rows into values.

Validation happens here, before any lock is taken, so bad input is refused
with a typed error and nothing is written. Provenance fields (author, times,
transaction numbers) are filled in by the engine at write time, never taken
from the caller.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, TypeVar

import numpy as np

from engramdb.codec import check_chars, check_json, checked_json, from_micros, to_micros
from engramdb.errors import (
    EmbeddingDimensionMismatch,
    InvalidInput,
    InvalidMetadata,
    TextTooLong,
)
from engramdb.model import (
    Conflict,
    Decision,
    Grant,
    Memory,
    MemoryDraft,
    ReceiptItem,
    check_layer,
    check_namespace,
    to_utc,
)

__all__ = ["EngineConfig", "PrincipalInfo", "check_bool", "check_count", "check_embeddings",
           "check_id", "check_idempotency_key", "check_name", "check_reason",
           "conflict_from_row", "decision_from_row", "grant_from_row", "memory_from_row", "names",
           "restamped", "validate_draft", "validate_fields"]

# Integers go into 64-bit SQL columns; a larger one is refused as input, not
# left to overflow in the driver.
MAX_INT64 = 2**63 - 1
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}\Z")


@dataclass(frozen=True, slots=True)
class PrincipalInfo:
    """Who a session acts as: name, roles and trust as of login, admin or not."""

    name: str
    roles: tuple[str, ...] = ()
    trust: float = 0.5
    is_admin: bool = False


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Limits and tuning for one database handle."""

    max_text_chars: int = 32_000
    max_metadata_bytes: int = 64_000
    max_batch: int = 10_000
    recall_candidates: int = 75
    # Recall also draws, for the sessions of its best few candidates, each session's memories
    # nearest the query: what was said around a hit joins the candidates (0 seeds: off).
    recall_session_seeds: int = 5
    recall_session_depth: int = 32
    # A query naming a speaker of the candidates is embedded as that speaker would ask it
    # ("What does Ana like?" -> "What does I like?"), see retrieval/first_person.py.
    recall_first_person: bool = True
    max_k: int = 1_000
    # One transaction's work under the write lock: every other writer waits for it.
    max_tx_ops: int = 1_000
    max_tx_text_chars: int = 4_000_000


def _unit(value: Any, what: str) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{what} must be a number between 0 and 1", field=what) from exc
    if not (0.0 <= f <= 1.0) or math.isnan(f):
        raise InvalidInput(f"{what} must be between 0 and 1", field=what)
    return f


def _short(value: Any, what: str, limit: int = 500) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise InvalidInput(f"{what} must be a non-empty string of at most {limit} characters",
                           field=what)
    return check_chars(value, what)


def check_idempotency_key(key: Any) -> str | None:
    """An idempotency key: ``None``, or a storable string of 1 to 200 characters."""
    if key is None:
        return None
    if not isinstance(key, str) or not key or len(key) > 200:
        raise InvalidInput("idempotency_key must be a non-empty string of at most 200 characters",
                           field="idempotency_key")
    return check_chars(key, "idempotency_key")


def check_text(text: Any, config: EngineConfig) -> str:
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("text must be a non-empty string; say what the memory is", field="text")
    if len(text) > config.max_text_chars:
        raise TextTooLong(
            f"text has {len(text)} characters, over the limit of {config.max_text_chars}; "
            "split it into several memories or raise max_text_chars",
            length=len(text),
            limit=config.max_text_chars,
        )
    return check_chars(text, "text")


def check_metadata(metadata: Any, config: EngineConfig) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidMetadata("metadata must be a JSON object (a dict with string keys)",
                              field="metadata")
    if not metadata:
        return {}  # nothing to check (and the most common metadata by far)
    value, text = checked_json(dict(metadata), what="metadata")
    if len(text.encode()) > config.max_metadata_bytes:
        raise InvalidMetadata(
            f"metadata is larger than {config.max_metadata_bytes} bytes; store large "
            "payloads elsewhere and keep a reference",
            field="metadata",
        )
    return dict(value)


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_embedding(embedding: Any, dimension: int | None) -> np.ndarray | None:
    if embedding is None:
        return None
    # An array is told by its exact type first: the Mapping test is an ABC's (slow).
    if type(embedding) is not np.ndarray and isinstance(embedding, (str, bytes, Mapping)):
        raise InvalidInput("embedding must be a list of numbers", field="embedding")
    if isinstance(embedding, np.ndarray) and embedding.dtype == np.float32:
        # Already the stored form (the embedder's output, a batch's rows): nothing
        # can overflow in a cast, so the float64 detour below is skipped.
        vec = embedding if embedding.ndim == 1 else embedding.reshape(-1)
    else:
        try:
            # Checked in float64 first: a value beyond float32's range would become
            # inf (silently, with a RuntimeWarning) in the cast.
            wide = np.asarray(embedding, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidInput("embedding must be a list of numbers",
                               field="embedding") from exc
        if wide.size and float(np.max(np.abs(wide), initial=0.0)) > _FLOAT32_MAX:
            raise InvalidInput("embedding holds a value beyond float32's range (about "
                               "3.4e38); normalise it (unit length) before sending it",
                               field="embedding")
        vec = wide.astype(np.float32)
    if dimension is None or dimension == 0:
        raise EmbeddingDimensionMismatch(
            "this database has no embedder, so it stores no embeddings; omit `embedding`"
        )
    if vec.size != dimension:
        raise EmbeddingDimensionMismatch(
            f"embedding has {vec.size} dimensions but this database uses {dimension}; "
            "embed with the database's embedder or omit `embedding`",
            expected=dimension,
            got=int(vec.size),
        )
    # One dot product answers both checks: NaN or infinity anywhere makes it
    # non-finite (and an overflow of the squares sends it to the slow check).
    sq = float(vec.dot(vec))  # the method: no dispatch through np.dot's protocol
    finite = math.isfinite(sq)
    if not finite and not np.all(np.isfinite(vec)):
        raise InvalidInput("embedding contains NaN or infinity", field="embedding")
    norm = float(np.linalg.norm(vec)) if not finite or sq == 0.0 else sq ** 0.5
    if norm == 0.0:
        raise InvalidInput("embedding must not be all zeros", field="embedding")
    return vec / norm


def check_validity(valid_from: Any, valid_to: Any) -> tuple[datetime | None, datetime | None]:
    vf = to_utc(valid_from, what="valid_from")
    vt = to_utc(valid_to, what="valid_to")
    if vf is not None and vt is not None and vt <= vf:
        raise InvalidInput("valid_to must be later than valid_from", field="valid_to")
    return vf, vt


_T = TypeVar("_T")


def _slot_builder(cls: type[_T]) -> Callable[..., _T]:
    """``cls(*values)`` for a frozen, slotted dataclass given every field in order,
    without its generated ``__init__``, which pays an ``object.__setattr__`` call per
    field (22 for a Memory; a batch builds thousands): each slot is set through its
    own descriptor. Only for classes whose ``__init__`` stores its arguments as given
    (no ``__post_init__``, no converting field)."""
    setters = tuple(getattr(cls, f.name).__set__ for f in fields(cls))  # type: ignore[arg-type]
    # Written out, one setter call a line (as dataclasses writes __init__): a third
    # less time than a loop over the setters (1.2 vs 1.7 us for a Memory).
    args = ", ".join(f"v{i}" for i in range(len(setters)))
    body = "".join(f"    s{i}(obj, v{i})\n" for i in range(len(setters)))
    scope: dict[str, Any] = {"new": object.__new__, "cls": cls,
                             **{f"s{i}": put for i, put in enumerate(setters)}}
    exec(f"def build({args}):\n    obj = new(cls)\n{body}    return obj\n", scope)  # noqa: S102
    build: Callable[..., _T] = scope["build"]
    return build


_new_memory = _slot_builder(Memory)
_new_draft = _slot_builder(MemoryDraft)
_DRAFT_FIELDS = frozenset(MemoryDraft.__slots__)
# What MemoryDraft(...) fills in for a field not given (metadata: an empty dict).
_DRAFT_DEFAULTS: dict[str, Any] = {f.name: {} if f.name == "metadata" else f.default
                   for f in fields(MemoryDraft) if f.name != "text" and f.name != "namespace"}


def validate_draft(draft: MemoryDraft, config: EngineConfig, dimension: int | None) -> MemoryDraft:
    """Check every field of a draft; return it normalised.

    Raises:
        InvalidInput: (or a subclass) naming the field and what to do.
    """
    return validate_fields({f: getattr(draft, f) for f in MemoryDraft.__slots__}, config,
                           dimension)


def check_embeddings(given: Sequence[Any], dimension: int | None) -> list[np.ndarray] | None:
    """:func:`check_embedding` of many embeddings at once, when each is already a float32
    array of ``dimension`` values with a finite, non-zero length (a batch's precomputed
    rows): one matrix operation, read-only unit rows. ``None`` otherwise: check each
    (which finds and names what is wrong)."""
    if not given or not dimension:
        return None
    for e in given:
        if type(e) is not np.ndarray or e.dtype != np.float32 or e.size != dimension:
            return None
    mat = np.stack(given).reshape(len(given), dimension)
    sq = np.einsum("ij,ij->i", mat, mat)
    if not (np.all(np.isfinite(sq)) and np.all(sq > 0.0)):
        return None
    # The same float32 division check_embedding does, by a norm taken in float64.
    mat /= np.sqrt(sq.astype(np.float64)).astype(np.float32)[:, None]
    mat.flags.writeable = False
    return list(mat)


def validate_fields(given: Mapping[str, Any], config: EngineConfig, dimension: int | None,
                    checked: np.ndarray | None = None) -> MemoryDraft:
    """:func:`validate_draft` of the draft ``MemoryDraft(**given)``, built once, checked.

    ``checked``: the given embedding, already checked (:func:`check_embeddings`).

    Raises:
        InvalidInput: a field a memory does not have, or (a subclass) a bad value,
            naming the field and what to do.
    """
    if not _DRAFT_FIELDS.issuperset(given):
        unknown = sorted(str(k) for k in given if k not in _DRAFT_FIELDS)
        raise InvalidInput(f"unexpected memory field {', '.join(unknown)}; a memory has "
                           f"{', '.join(MemoryDraft.__slots__)}", field=unknown[0])
    d = {**_DRAFT_DEFAULTS, **given}
    text = check_text(d.get("text"), config)
    namespace = check_namespace(d.get("namespace"))  # type: ignore[arg-type]
    layer = check_layer(d["layer"])
    metadata = check_metadata(d["metadata"], config)
    subject = _short(d["subject"], "subject")
    predicate = _short(d["predicate"], "predicate")
    if predicate is not None and subject is None:
        raise InvalidInput("an assertion needs a subject as well as a predicate", field="subject")
    value = check_json(d["value"], what="value") if d["value"] is not None else None
    if value is not None and predicate is None:
        raise InvalidInput("value belongs to an assertion: give subject and predicate too",
                           field="value")
    vf, vt = check_validity(d["valid_from"], d["valid_to"])
    embedding = checked if checked is not None else check_embedding(d["embedding"], dimension)
    if embedding is not None and checked is None:
        # Kept as the float32 array it is stored as (no per-float conversion);
        # read-only, as the frozen draft holding it. Never part of a hash.
        embedding.flags.writeable = False
    key = check_idempotency_key(d["idempotency_key"])
    return _new_draft(  # MemoryDraft's fields, in order
        text, namespace, layer, subject, predicate, value, metadata,
        _unit(d["importance"], "importance"), _unit(d["confidence"], "confidence"),
        _short(d["source"], "source"), _short(d["session"], "session"), vf, vt,
        to_utc(d["expires_at"], what="expires_at"), embedding, key)


def effective_status(row: Mapping[str, Any], as_of: int | None) -> str:
    tx_to = row.get("tx_to")
    if tx_to is not None and (as_of is None or tx_to <= as_of):
        return "superseded"
    return str(row["status"])


def memory_from_row(row: Mapping[str, Any], *, as_of: int | None = None) -> Memory:
    tx_to = row.get("tx_to")
    if tx_to is not None and as_of is not None and tx_to > as_of:
        # Read as of ``as_of``, the version's end had not happened yet: showing
        # it would make an as_of read change when a later write arrives.
        tx_to = None
    get = row.get
    # Positional, in _MEMORY_ORDER (checked below): a batch returns thousands of these.
    return _new_memory(
        row["id"], int(row["version"]), row["namespace"], row["layer"], row["text"],
        get("subject"), get("predicate"), get("value"), get("metadata") or {},
        float(row["importance"]), float(row["confidence"]), row["author"], get("source"),
        get("session"), from_micros(row["valid_from"]),
        from_micros(get("valid_to")),
        int(row["tx_from"]), None if tx_to is None else int(tx_to),
        from_micros(row["recorded_at"]), effective_status(row, as_of),
        from_micros(get("expires_at")), (),
    )


def restamped(m: Memory, tx_from: int, recorded_at: datetime | None,
              valid_from: datetime | None) -> Memory:
    """``m.replace(tx_from=..., recorded_at=..., valid_from=...)``, built as
    :func:`memory_from_row` builds one (every write returns one of these; the generic
    replace pays a keyword ``__init__`` with a ``__setattr__`` per field)."""
    return _new_memory(
        m.id, m.version, m.namespace, m.layer, m.text, m.subject, m.predicate, m.value,
        m.metadata, m.importance, m.confidence, m.author, m.source, m.session, valid_from,
        m.valid_to, tx_from, m.tx_to, recorded_at, m.status, m.expires_at, m.conflicts)


_MEMORY_ORDER = ("id", "version", "namespace", "layer", "text", "subject", "predicate", "value",
                 "metadata", "importance", "confidence", "author", "source", "session",
                 "valid_from", "valid_to", "tx_from", "tx_to", "recorded_at", "status",
                 "expires_at", "conflicts")
if tuple(f.name for f in fields(Memory)) != _MEMORY_ORDER:  # pragma: no cover
    raise ImportError("Memory's fields moved: update memory_from_row's positional call")
if tuple(f.name for f in fields(MemoryDraft)) != (  # pragma: no cover
        "text", "namespace", "layer", "subject", "predicate", "value", "metadata", "importance",
        "confidence", "source", "session", "valid_from", "valid_to", "expires_at", "embedding",
        "idempotency_key"):
    raise ImportError("MemoryDraft's fields moved: update validate_fields' positional call")


def draft_to_row(draft: MemoryDraft, *, memory_id: str, author: str, tx: int,
                 recorded_at: int, status: str = "active") -> dict[str, Any]:
    return {
        "id": memory_id,
        "version": 1,
        "namespace": draft.namespace,
        "layer": draft.layer,
        "text": draft.text,
        "subject": draft.subject,
        "predicate": draft.predicate,
        "value": draft.value,
        "metadata": dict(draft.metadata),
        "importance": draft.importance,
        "confidence": draft.confidence,
        "author": author,
        "source": draft.source,
        "session": draft.session,
        "valid_from": to_micros(draft.valid_from) if draft.valid_from else recorded_at,
        "valid_to": to_micros(draft.valid_to),
        "tx_from": tx,
        "tx_to": None,
        "recorded_at": recorded_at,
        "status": status,
        "expires_at": to_micros(draft.expires_at),
    }


def check_id(memory_id: Any, what: str = "memory id") -> str:
    """A memory (or other object) id: a non-empty, storable string."""
    if not isinstance(memory_id, str) or not memory_id:
        raise InvalidInput(f"{what} must be a non-empty string", field="id")
    return check_chars(memory_id, what)


def check_count(value: Any, what: str) -> int:
    """A non-negative integer that fits a 64-bit column (a seq, tx or version)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT64:
        raise InvalidInput(f"{what} must be an integer from 0 to {MAX_INT64}", field=what)
    return value


def check_bool(value: Any, what: str) -> bool:
    """True or false, nothing else (not 1, not "yes")."""
    if not isinstance(value, bool):
        raise InvalidInput(f"{what} must be true or false", field=what)
    return value


def check_reason(reason: Any) -> None:
    if reason is not None and (not isinstance(reason, str) or len(reason) > 2000):
        raise InvalidInput("reason must be a string of at most 2000 characters", field="reason")
    if reason is not None:
        check_chars(reason, "reason")


def check_name(name: Any, what: str = "principal name") -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInput(
            f"{what} {name!r} is malformed: use 1-64 lowercase letters, digits, '_', '.', '-', "
            "starting with a letter or digit",
            field=what,
        )
    return name


def names(value: Any, what: str, choices: Sequence[str] = ()) -> list[Any]:
    """A list argument of names: one string, or a list, tuple or set of them.

    Anything else (a dict, a generator, a number) is refused rather than iterated.
    """
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, tuple, set, frozenset)):
        hint = f" of {', '.join(choices)}" if choices else ""
        raise InvalidInput(f"{what} must be a list{hint}, not {type(value).__name__}",
                           field=what)
    return list(value)


def conflict_from_row(r: Mapping[str, Any]) -> Conflict:
    """A stored conflict row as the public :class:`~engramdb.model.Conflict` value."""
    return Conflict(
        id=r["id"], kind=r["kind"], namespace=r["namespace"],
        memories=tuple(ReceiptItem(str(m["id"]), int(m["version"])) for m in r["memories"]),
        detector=r["detector"], reason=r["reason"], policy=r["policy"], outcome=r["outcome"],
        status=r["status"], subject=r.get("subject"), predicate=r.get("predicate"),
        winner=r.get("winner"), resolution=r.get("resolution"),
        resolved_by=r.get("resolved_by"), tx=int(r["tx"]),
        resolved_tx=None if r.get("resolved_tx") is None else int(r["resolved_tx"]),
    )


def grant_from_row(r: Mapping[str, Any]) -> Grant:
    """A stored grant row as the public :class:`~engramdb.model.Grant` value."""
    return Grant(id=r["id"], grantee=r["grantee"], pattern=r["pattern"],
                 actions=tuple(r["actions"]), granted_by=r["granted_by"],
                 tx_from=r["tx_from"], tx_to=r["tx_to"])


def decision_from_row(row: Mapping[str, Any]) -> Decision:
    """A stored decision row as the public :class:`~engramdb.model.Decision` value."""
    return Decision(
        id=row["id"], principal=row["principal"], description=row["description"],
        basis=tuple(ReceiptItem(str(i["id"]), int(i["version"])) for i in row["basis"]),
        outcome=row["outcome"] or {}, metadata=row["metadata"] or {}, tx=int(row["tx"]),
        recorded_at=from_micros(row["recorded_at"]),  # type: ignore[arg-type]
        namespace=row["namespace"],
        stale_tx=None if row.get("stale_tx") is None else int(row["stale_tx"]),
    )
