"""Wire shapes of the HTTP API as pydantic models: the OpenAPI spec comes from here.

Output models mirror the frozen values of :mod:`engramdb.model` field for
field (the server fills them from ``Memory.to_dict()`` and friends); request
models are strict (no unknown fields, no silent type coercion, no NaN) so that
what the spec says is what the server accepts. Semantic validation (namespace
syntax, limits, grants) stays in the engine: a door never re-implements it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from annotated_types import Ge, Le
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    Strict,
    WithJsonSchema,
)

from engramdb.jsonshape import clip_json
from engramdb.model import ACTIONS, LAYERS, to_utc

__all__ = [
    "ACTION",
    "GLOB",
    "KEY",
    "LAYER",
    "MAX_INT",
    "NAME",
    "NAMESPACE",
    "SHORT",
    "TEXT",
    "UNIT",
    "AgentCreated",
    "AgentList",
    "BasisOut",
    "CheckpointOut",
    "CheckpointReportOut",
    "ConflictList",
    "ConflictOut",
    "ConsistencyProofOut",
    "ContextOut",
    "Count",
    "DecisionList",
    "DecisionOut",
    "ErrorBody",
    "ErrorResponse",
    "EventOut",
    "EventPage",
    "EventProofOut",
    "ExplanationOut",
    "GlobIn",
    "GrantList",
    "GrantOut",
    "HealthOut",
    "HitOut",
    "InfoOut",
    "Integer",
    "KeyCreated",
    "KnowledgeOut",
    "LayerIn",
    "LayerOrNull",
    "LayersOrNull",
    "MeOut",
    "MemoryList",
    "MemoryOut",
    "MemoryVersions",
    "MerkleProofOut",
    "NamespaceList",
    "NamespaceOrNull",
    "NamespaceSettingsOut",
    "ObjectOrNull",
    "PredicateList",
    "PredicateOut",
    "PrincipalOut",
    "ReadAuditOut",
    "ReadList",
    "ReadOut",
    "RecallOut",
    "ReceiptItemOut",
    "ReceiptOut",
    "Request",
    "SettingsStored",
    "SignatureOut",
    "Time",
    "VerifyOut",
    "documented",
]

# The largest integer every JSON client reads exactly (JavaScript's safe range).
MAX_INT = 2**53 - 1

# Documentation-only constraints: they go into the spec so that clients (and
# fuzzers) know what is valid, but the engine is what enforces them, with its
# own error codes (`invalid_namespace`, `invalid_layer`, ...) and messages.
_SEGMENT = r"[a-z0-9][a-z0-9_.:@-]{0,127}"
_GLOB_SEGMENT = rf"(\*\*|\*|{_SEGMENT})"
NAMESPACE = {"pattern": rf"^{_SEGMENT}(/{_SEGMENT}){{0,15}}$"}
GLOB = {"pattern": rf"^{_GLOB_SEGMENT}(/{_GLOB_SEGMENT}){{0,15}}$"}
NAME = {"pattern": r"^[a-z0-9][a-z0-9_.-]{0,63}$"}
LAYER = {"enum": list(LAYERS)}
ACTION = {"enum": list(ACTIONS)}
UNIT = {"minimum": 0, "maximum": 1}
SHORT = {"minLength": 1, "maxLength": 500}
TEXT = {"minLength": 1, "pattern": r"\S"}
KEY = {"minLength": 1, "maxLength": 200}


# Fields the engine validates itself, with its specific error class: the spec
# states the type, the server passes any JSON value through, so a wrong type
# gets the engine's answer (`invalid_namespace`, `invalid_layer`,
# `invalid_metadata`), exactly as embedded.
def _or_null(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


_LAYER_STR = {"type": "string", **LAYER}
NamespaceOrNull = Annotated[Any, WithJsonSchema(_or_null({"type": "string", **NAMESPACE}))]
GlobIn = Annotated[Any, WithJsonSchema({"type": "string", **GLOB})]
LayerIn = Annotated[Any, WithJsonSchema(_LAYER_STR)]
LayerOrNull = Annotated[Any, WithJsonSchema(_or_null(_LAYER_STR))]
# A list of layers is type-checked here: the engine would iterate any iterable.
LayersOrNull = list[Annotated[str, WithJsonSchema(_LAYER_STR)]] | None
ObjectOrNull = Annotated[Any, WithJsonSchema(_or_null({"type": "object"}))]
# Stored JSON on its way out: a value stored before the shape limits existed
# may nest deeper than the encoder goes; its deep part is clipped, so no stored
# value can make a read answer 500.
JsonOut = Annotated[Any, PlainSerializer(clip_json, return_type=Any)]
ObjectOut = Annotated[dict[str, Any], PlainSerializer(clip_json, return_type=Any)]


def _integral(value: Any) -> Any:
    # JSON Schema calls 3.0 an integer; JSON has no int/float distinction to keep.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Integer = Annotated[int, BeforeValidator(_integral)]
Count = Annotated[int, Ge(0), Le(MAX_INT), BeforeValidator(_integral)]


def documented(schema: dict[str, Any], **kwargs: Any) -> Any:
    """A pydantic ``Field`` whose JSON schema states ``schema`` without enforcing it."""
    return Field(json_schema_extra=schema, **kwargs)


def _time(value: Any) -> Any:
    # JSON carries times as strings; a number is refused rather than read as a
    # Unix timestamp, and strings are parsed exactly as the embedded API does.
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return to_utc(value, what="time")
        except OverflowError as exc:  # e.g. 0001-01-01T00:00+05:00 is before year 1 in UTC
            raise ValueError("time is out of range once converted to UTC") from exc
    raise ValueError("must be an ISO-8601 time string such as 2026-01-31T12:00:00Z")


Time = Annotated[datetime, Strict(False), BeforeValidator(_time),
                 Field(description="ISO-8601 time; without a zone it is taken as UTC.")]


class Request(BaseModel):
    """Base of request bodies: strict, closed, finite numbers only."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- errors ------------------------------------------------------------------------


class ErrorBody(Response):
    code: str = Field(description="Stable machine-readable code, e.g. `version_conflict`.")
    message: str = Field(description="What went wrong and what to do about it.")
    details: dict[str, Any] = Field(description="Extra facts, e.g. `current_version`; "
                                               "`fix` names what would fix it, as data.")
    hint: str | None = Field(default=None, description="The fix in HTTP terms, e.g. the admin "
                                                       "route that grants what was missing.")


class ErrorResponse(Response):
    """Every error the server sends has this shape."""

    error: ErrorBody


# -- memories ----------------------------------------------------------------------


class ConflictOut(Response):
    id: str
    kind: str
    namespace: str
    memories: list[ReceiptItemOut]
    detector: str
    reason: str
    policy: str
    outcome: str
    status: str
    subject: str | None = None
    predicate: str | None = None
    winner: str | None = None
    resolution: str | None = None
    resolved_by: str | None = None
    tx: int = 0
    resolved_tx: int | None = None


class MemoryOut(Response):
    """One version of one memory as seen from the read point."""

    id: str
    version: int
    namespace: str
    layer: str
    text: str
    subject: str | None
    predicate: str | None
    value: JsonOut
    metadata: ObjectOut
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
    conflicts: list[ConflictOut] = Field(
        default_factory=list, description="Conflicts the write that produced this version "
        "detected.")


class MemoryList(Response):
    memories: list[MemoryOut]


class MemoryVersions(Response):
    versions: list[MemoryOut] = Field(description="Every version, oldest first.")


# -- recall --------------------------------------------------------------------------


class ReceiptItemOut(Response):
    id: str
    version: int


class ReceiptOut(Response):
    """Exactly what a read returned; pass it back to re-read or to record a decision."""

    items: list[ReceiptItemOut]
    as_of: int
    valid_at: datetime | None = None
    principal: str | None = None
    query_digest: str | None = None


class HitOut(Response):
    memory: MemoryOut
    score: float
    why: dict[str, float] = Field(description="The parts of the fused score.")
    contested: bool = False
    rivals: list[str] = Field(default_factory=list)


class RecallOut(Response):
    hits: list[HitOut]
    receipt: ReceiptOut


class ContextOut(Response):
    """A working context packed under a token budget, with the receipt of what it holds."""

    text: str = Field(description="One numbered item per line with its provenance.")
    items: list[HitOut] = Field(description="The hits packed into `text`, in order.")
    tokens: int
    budget: int
    truncated: bool = Field(description="Some item was shortened to fit.")
    receipt: ReceiptOut
    parts: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Every line: `layer`, `kind`, `label`, `text`, `tokens`, `score`, "
        "`shortened`, `memory_id`, `version`.")
    left_out: list[dict[str, Any]] = Field(
        default_factory=list,
        description="What did not fit: `layer`, `kind`, `label`, `tokens`, `reason`.")


class DecisionOut(Response):
    id: str
    principal: str
    description: str
    basis: list[ReceiptItemOut]
    outcome: ObjectOut
    metadata: ObjectOut
    tx: int
    recorded_at: datetime
    namespace: str | None = None
    stale_tx: int | None = Field(None, description="The transaction that first changed a "
                                 "basis version you may read; null while those are current.")
    basis_hidden: int = Field(0, description="Basis memories you may not read: counted, "
                              "never listed.")


class DecisionList(Response):
    decisions: list[DecisionOut]


class BasisOut(Response):
    item: ReceiptItemOut
    visible: bool = Field(description="False when the caller may not read the memory; "
                          "every other field is then empty.")
    then: MemoryOut | None = None
    now: MemoryOut | None = None
    later: list[MemoryOut] = Field(default_factory=list)
    superseded: bool = False
    retracted: bool = False
    erased: bool = False
    conflicts: list[ConflictOut] = Field(default_factory=list)
    contested: bool = False
    stale: bool = False


class ExplanationOut(Response):
    decision: DecisionOut
    basis: list[BasisOut]
    stale: bool


class ConflictList(Response):
    conflicts: list[ConflictOut]


class NamespaceList(Response):
    namespaces: list[str]


class ReadOut(Response):
    principal: str
    time: datetime
    version: int


class ReadList(Response):
    reads: list[ReadOut] = Field(description="Recorded reads, oldest first.")


class KnowledgeOut(Response):
    """With a query: ``recall`` is what the agent would have got; without: ``memories``."""

    recall: RecallOut | None = None
    memories: list[MemoryOut] | None = None


# -- change feed ------------------------------------------------------------------------


class EventOut(Response):
    """One log entry; ``payload`` is null once erasure removed it."""

    seq: int
    tx: int
    kind: str
    namespace: str | None
    actor: str
    recorded_at: datetime
    subject_ref: str | None
    payload: ObjectOut | None
    commitment: str
    prev_hash: str
    hash: str


class EventPage(Response):
    events: list[EventOut]
    next: int = Field(description="Cursor for the next page: pass it as `since`.")
    more: bool = Field(description="Whether the page was full, so more may follow.")


# -- principals and admin -------------------------------------------------------------


class MeOut(Response):
    name: str
    roles: list[str]
    trust: float
    is_admin: bool


class PrincipalOut(Response):
    name: str
    kind: str
    roles: list[str]
    trust: float
    status: str
    created_tx: int


class AgentList(Response):
    agents: list[PrincipalOut]


class AgentCreated(Response):
    agent: PrincipalOut
    api_key: str = Field(description="The new principal's first API key, shown only once.")


class KeyCreated(Response):
    api_key: str = Field(description="The new API key, shown only once.")


class GrantOut(Response):
    id: str
    grantee: str
    pattern: str
    actions: list[str]
    granted_by: str
    tx_from: int
    tx_to: int | None = None


class GrantList(Response):
    grants: list[GrantOut]


class VerifyOut(Response):
    ok: bool
    events_checked: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str | None = None
    rows_checked: int = 0


# -- trust policy (admin) -------------------------------------------------------------------


class PredicateOut(Response):
    """How a predicate behaves in the namespaces matching ``pattern``."""

    pattern: str
    predicate: str
    cardinality: str = Field(description="`one` or `many`.")
    value_type: str
    merge: str | None = Field(description="Merge kind when `policy` is `merge`.")
    policy: str = Field(description="Conflict policy: `supersede`, `authority`, `flag`, "
                        "`reject` or `merge`.")
    declared: bool = Field(description="False for the defaults that apply when nothing is "
                           "declared.")
    id: str | None = None
    tx_from: int | None = None


class PredicateList(Response):
    predicates: list[PredicateOut]


class NamespaceSettingsOut(Response):
    """The trust settings in force for one namespace (the most specific pattern wins)."""

    trust_floor: float | None
    detect_free_text: bool
    default_policy: str
    authority: list[str]
    free_text_candidates: int
    judge_min_confidence: float


class SettingsStored(Response):
    pattern: str
    settings: dict[str, Any] = Field(description="What is now stored for `pattern` itself.")


class ReadAuditOut(Response):
    namespace: str
    mode: str = Field(description="`all`, `sampled` or `off`.")
    rate: float = Field(description="Fraction of reads recorded.")


# -- checkpoints and proofs (admin) -----------------------------------------------------------


class CheckpointOut(Response):
    """A signed checkpoint, in the JSON file format of ``engram audit checkpoint``."""

    format: str
    database_id: str
    tree_size: int
    head_seq: int
    head_hash: str
    merkle_root: str
    created_at: str
    key_id: str
    public_key: str = Field(description="PEM of the signing public key.")
    signature: str = Field(description="Base64 Ed25519 signature.")


class SignatureOut(Response):
    ok: bool
    trusted: bool = Field(description="The key came from the verifier, not from the "
                          "checkpoint itself.")
    key_id: str
    reason: str | None = None


class ConsistencyProofOut(Response):
    old_size: int
    new_size: int
    old_root: str
    new_root: str
    path: list[str]


class CheckpointReportOut(Response):
    ok: bool
    problem: str | None
    signature: SignatureOut | None
    checkpoint_size: int
    current_size: int
    consistency: ConsistencyProofOut | None = None
    log: VerifyOut | None = None


class MerkleProofOut(Response):
    leaf_index: int
    tree_size: int
    leaf_hash: str
    path: list[str]
    root: str


class EventProofOut(Response):
    """One event's envelope and the RFC 9162 inclusion proof of its chain hash."""

    format: str
    event: dict[str, Any] = Field(description="The envelope fields the chain hash covers, "
                                  "plus `prev_hash` and `hash` (never the payload).")
    proof: MerkleProofOut


# -- system ------------------------------------------------------------------------------


class HealthOut(Response):
    status: Literal["ok"]
    version: str


class HeadOut(Response):
    seq: int = Field(description="The newest event's seq (0 for an empty log).")
    tx: int = Field(description="Its transaction number: the largest useful `as_of`.")


class InfoOut(Response):
    version: str
    backend: str = Field(description="`sqlite` or `postgresql`.")
    embedder: str
    dimension: int | None
    limits: dict[str, int | float | None] = Field(
        description="The server's limits: max_body_bytes, max_batch, max_page_size, "
        "rate_limit_per_s, rate_limit_burst.")
    head: HeadOut = Field(description="The log's newest event when asked: the read point "
                          "`as_of` reads (and the inspector's as-of slider) end at.")
    last_checkpoint: CheckpointOut | None = Field(
        default=None, description="The last checkpoint signed on this database (by "
        "`engram audit checkpoint`, `POST /v1/audit/checkpoints` or `Database.checkpoint`), "
        "or null. For display: an auditor checks the copy kept outside the database.")


ConflictOut.model_rebuild()
