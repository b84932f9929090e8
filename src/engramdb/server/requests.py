"""The HTTP request bodies of the memory calls, derived from :mod:`engramdb.api`.

Each call of :data:`engramdb.api.CALLS` that names a body model gets one here,
built by :mod:`engramdb.api_schema` from the call's declaration: its fields are
the declared keywords (minus path parameters, under their wire names), with
the declared defaults. A keyword added to ``api.py`` is a field here with no
edit; its wire type comes from :data:`TYPES`. What this module adds by hand
are the overrides: the limits and descriptions the OpenAPI spec carries, and
the few wider types that let the engine answer a bad value with its own error
(``invalid_namespace``, ``invalid_layer``, ``invalid_metadata``). An override
for a keyword the call does not declare, or with another default, fails at
import (:class:`~engramdb.api_schema.SchemaDrift`).

A route is then one line: ``invoke(session, "remember", body)``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias

from pydantic import AfterValidator, BaseModel, Field, WithJsonSchema

from engramdb import api
from engramdb.api_schema import WireField, call_with, request_model, wire_fields
from engramdb.model import STATUSES, MemoryDraft
from engramdb.server.schemas import (
    GLOB,
    KEY,
    MAX_INT,
    SHORT,
    TEXT,
    UNIT,
    Count,
    GlobIn,
    Integer,
    LayerIn,
    LayerOrNull,
    LayersOrNull,
    NamespaceOrNull,
    ObjectOrNull,
    Request,
    Time,
    documented,
)

__all__ = [
    "FIELDS",
    "MODELS",
    "TYPES",
    "Basis",
    "BatchRequest",
    "ContextRequest",
    "DecideRequest",
    "EpisodeRequest",
    "ExtractRequest",
    "ForgetRequest",
    "PinRequest",
    "ProcedureOutcomeRequest",
    "ProcedureRequest",
    "RecallFilters",
    "RecallRequest",
    "RecommendRequest",
    "RememberRequest",
    "ResolveRequest",
    "RetractRequest",
    "SummarizeRequest",
    "ToolOutcomeBatchRequest",
    "ToolOutcomeRequest",
    "UnpinRequest",
    "UpdateRequest",
    "admin_model",
    "build",
    "invoke",
    "sent",
    "without_null_filters",
]

# The wire type of each declared annotation (a keyword left out by default also admits null).
TYPES: dict[Any, Any] = {
    str: str, str | None: str | None, int: Integer, int | None: Integer | None,
    float: float, float | None: float | None, bool: bool, Any: Any,
    api.When: Time | None, api.AsOf: Count | Time | None, int | datetime | str: Count | Time,
    Mapping[str, Any]: dict[str, Any], Mapping[str, Any] | None: dict[str, Any] | None,
    Mapping[str, int] | None: dict[str, Integer] | None,
    Sequence[str]: list[str], Sequence[str] | None: list[str] | None,
    Sequence[float] | None: list[float] | None,
    Sequence[Mapping[str, Any]]: list[dict[str, Any]],
    Sequence[MemoryDraft | Mapping[str, Any]]: list[dict[str, Any]],
}

_ITEM = {"type": "object", "properties": {"id": {"type": "string"},
                                           "version": {"type": "integer", "minimum": 1,
                                                       "maximum": MAX_INT}},
         "required": ["id", "version"]}


def _bounded(value: Any) -> Any:
    # The engine normalises the basis; integers past what JSON clients (and the
    # database's 64-bit columns) hold are refused here, before they reach SQL.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, int) and not isinstance(item, bool) and abs(item) > MAX_INT:
            raise ValueError(f"basis holds the integer {item}, larger than {MAX_INT}")
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return value


# The engine normalises the basis itself (and says precisely what is wrong with one).
Basis = Annotated[Any, AfterValidator(_bounded), WithJsonSchema({"anyOf": [
    {"type": "object", "properties": {"items": {"type": "array", "items": _ITEM}},
     "required": ["items"], "description": "A receipt, as recall and context return it."},
    _ITEM,
    {"type": "array", "items": {"anyOf": [
        _ITEM, {"type": "object", "properties": {"items": {"type": "array", "items": _ITEM}},
                "required": ["items"]}]}},
]})]

# -- overrides shared by several calls -------------------------------------------------------

_IDEMPOTENCY = Annotated[str | None, documented(
    KEY, description="A retried request with the same key returns the first result.")]
_AS_OF = Field(description="Transaction time: a transaction number or an ISO-8601 time.")
_REASON = documented({"maxLength": 2000})
_LABEL = documented(SHORT)

RecallFilters = request_model("RecallFilters", wire_fields(
    "RecallFilters", api.RecallFilters, types=TYPES, overrides={
        # Type-checked here: the engine reads a falsy non-dict as "no filter".
        "metadata": Field(description="Key -> value equalities."),
        "statuses": Field(description=f"Default `[\"active\"]`; any of {', '.join(STATUSES)}."),
    }), base=Request, doc="Filters applied inside the index queries.")
_FILTERS = Annotated[RecallFilters | None, Field()]  # type: ignore[valid-type]

_REMEMBER: dict[str, Any] = {
    "text": Annotated[str, documented(TEXT, description="What is remembered; non-empty.")],
    "namespace": Annotated[NamespaceOrNull, Field(
        description="Slash path such as `acme/research`; default: "
        "the caller's private namespace `agents/<name>`.")],
    "layer": Annotated[LayerIn, Field(
        description="`working`, `episodic`, `semantic` or `procedural`.")],
    "subject": Annotated[str | None, documented(
        SHORT, description="Assertion subject, e.g. `company:x`.")],
    "predicate": Annotated[str | None, documented(
        SHORT, description="Assertion predicate, e.g. `outlook` (needs `subject`).")],
    "value": Field(description="Assertion value, any JSON (needs `predicate`)."),
    "metadata": Annotated[ObjectOrNull, Field(description="JSON object of extra fields.")],
    "importance": Annotated[float, documented(UNIT, description="0..1.")],
    "confidence": Annotated[float, documented(UNIT, description="0..1.")],
    "source": _LABEL,
    "session": _LABEL,
    "valid_from": Field(description="When the fact starts to hold (default: now)."),
    "valid_to": Field(description="When it stops holding (default: open)."),
    "embedding": Field(description="Precomputed embedding of the database's dimension."),
    "idempotency_key": _IDEMPOTENCY,
}

# Per call: the overrides of its body model (every other declared keyword is derived).
OVERRIDES: dict[str, dict[str, Any]] = {
    "remember": _REMEMBER,
    "update": {
        "text": Annotated[str | None, documented(TEXT)],
        "metadata": ObjectOrNull,
        "importance": Annotated[float | None, documented(UNIT)],
        "confidence": Annotated[float | None, documented(UNIT)],
        "layer": LayerOrNull,
        "source": documented(SHORT, description="`null` removes it."),
        "embedding": Field(description="The new text's precomputed embedding (needs `text`)."),
        "expected_version": Annotated[Count | None, Field(
            description="Compare-and-swap: apply only if this is the current version "
            "(else 409 `version_conflict` with `details.current_version`).")],
        "idempotency_key": _IDEMPOTENCY,
    },
    "retract": {
        "reason": documented({"maxLength": 2000}, description="Why (kept in the log)."),
        "expected_version": Count | None,
        "idempotency_key": _IDEMPOTENCY,
    },
    "forget": {
        "id": documented(SHORT, description="One memory's id."),
        "subject": documented(SHORT, description="Every memory about this subject."),
        "author": documented(SHORT, description="Every memory this principal wrote."),
        "namespace": documented(GLOB, description="A namespace glob."),
        "reason": documented({"minLength": 1, "maxLength": 2000},
                             description="Why (kept in the log with who and when)."),
    },
    "recall": {
        "query": documented(TEXT, description="What to look for; non-empty."),
        "namespace": Annotated[GlobIn, Field(
            description="Namespace glob (`acme/**`); results come only from namespaces "
            "the caller may read.")],
        "k": Annotated[Integer, Field(ge=1, le=MAX_INT, description="Most hits to return "
                                      "(the database caps it, 1000 by default).")],
        "layers": LayersOrNull,
        "as_of": _AS_OF,
        "valid_at": Field(description="Valid time: facts that held then."),
        "filters": _FILTERS,
        "query_embedding": Field(
            description="The query already embedded with the database's embedder; the "
            "server then skips embedding `query` (which still drives full-text search)."),
    },
    "context": {
        "task": documented(TEXT, description="What the context is for; the recall query."),
        "budget_tokens": Annotated[Integer, Field(
            ge=1, le=1_000_000, description="Most cl100k tokens the text may use.")],
        "namespace": Annotated[GlobIn, Field(description="Namespace glob to draw from.")],
        "layers": LayersOrNull,
        "as_of": _AS_OF,
        "filters": _FILTERS,
        "quotas": Field(description="Per-layer token caps, e.g. `{\"episodic\": 500}`."),
        "session": documented(SHORT, description="Include this session's blocks and "
                              "episodes."),
        "tokenizer": Field(description="An offline tiktoken encoding."),
        "query_embedding": Field(
            description="The task already embedded with the database's embedder."),
    },
    "decide": {
        "description": documented(TEXT, description="What was decided."),
        "basis": Annotated[Basis, Field(
            description="What the decision rests on: a receipt (`recall`/`context`), "
            "`{id, version}` items, or a list of these.")],
        "outcome": Annotated[ObjectOrNull, Field(
            description="A JSON object describing the outcome.")],
        "metadata": ObjectOrNull,
        "namespace": Annotated[NamespaceOrNull, Field(
            description="Where the decision is filed (default `agents/<you>`); needs write.")],
    },
    "resolve": {
        "winner": Field(description="The memory id that stands; null acknowledges the "
                        "conflict and changes no memory."),
        "reason": _REASON,
    },
    "pin": {
        "name": documented(KEY, description="The block: `persona`, `goal`, `plan` ..."),
        "text": documented(TEXT, description="Its whole new text."),
        "session": documented(SHORT, description="Pin for this session only."),
        "namespace": Annotated[NamespaceOrNull, Field(description="Default `agents/<caller>`.")],
        "limit_tokens": Annotated[Integer | None, Field(
            ge=1, le=1_000_000, description="Refuse texts over this many tokens.")],
        "expected_version": Annotated[Count | None, Field(
            description="Compare-and-swap: `0` creates only, `n` updates only version n.")],
    },
    "unpin": {"name": documented(KEY), "session": _LABEL, "namespace": NamespaceOrNull,
              "expected_version": Count | None},
    "episode": {
        "session": documented(SHORT, description="The session it belongs to."),
        "role": documented({"minLength": 1, "maxLength": 100},
                           description="`user`, `assistant`, `tool`, `observation` ..."),
        "content": documented(TEXT, description="What was said or seen."),
        "at": Field(description="When it happened (default now)."),
        "metadata": ObjectOrNull,
        "namespace": NamespaceOrNull,
    },
    "summarize": {"session": _LABEL, "namespace": NamespaceOrNull,
                  "method": documented({"enum": ["auto", "extractive", "llm"]})},
    "extract": {"session": _LABEL, "namespace": NamespaceOrNull},
    "tool_outcome": {
        "tool": documented(KEY),
        "latency_ms": Field(ge=0, le=1e9),
        "error": _REASON,
        "metadata": ObjectOrNull,
        "namespace": NamespaceOrNull,
    },
    "procedure": {"name": documented(KEY), "text": documented(TEXT),
                  "namespace": NamespaceOrNull, "expected_version": Count | None},
    "procedure_outcome": {"name": documented(KEY), "version": Count,
                          "namespace": NamespaceOrNull},
    "recommend": {"task": documented(TEXT),
                  "k": Annotated[Integer, Field(ge=1, le=100)], "namespace": GlobIn},
}

_DOCS = {
    "remember": "A memory to store. Only ``text`` is required; provenance is set by the "
                "server.",
    "update": "A new version of a memory. Give at least one field to change.\n\n``null`` for "
              "``valid_to`` or ``expires_at`` removes it; a field left out is\nkept as it is.",
}

# Bodies that hold other bodies, by the call whose body they hold.
_NESTED = {"remember_many": ("drafts", "remember", "Memories to store in one transaction: "
                             "all or none."),
           "tool_outcomes": ("outcomes", "tool_outcome",
                             "Outcomes to record in one transaction (all or none), each as "
                             "for `POST /v1/tool-outcomes`; more than the server's `max_batch` "
                             "(`GET /v1/info`, `limits`) is 413.")}


def _path_params(route: str) -> list[str]:
    return re.findall(r"\{(\w+)\}", route)


def build(declaration: type = api.MemoryAPI, calls: Sequence[api.Call] = api.CALLS,
          overrides_by_call: Mapping[str, Mapping[str, Any]] | None = None
          ) -> tuple[dict[str, list[WireField]], dict[str, type[BaseModel]]]:
    """The wire fields per call and the body models by name, from ``declaration``.

    Raises:
        SchemaDrift: an override disagrees with the declaration.
    """
    by_call = OVERRIDES if overrides_by_call is None else overrides_by_call
    fields: dict[str, list[WireField]] = {}
    models: dict[str, type[BaseModel]] = {}
    bodies = [c for c in calls if c.body]
    # Bodies nested in others are built first.
    for call in sorted(bodies, key=lambda c: c.name in _NESTED):
        overrides = dict(by_call.get(call.name, {}))
        if call.name in _NESTED:
            keyword, inner, text = _NESTED[call.name]
            inner_model = models[str(next(c.body for c in bodies if c.name == inner))]
            overrides[keyword] = Annotated[list[inner_model], Field(  # type: ignore[valid-type]
                description=text)]
        fields[call.name] = wire_fields(
            call.name, getattr(declaration, call.name), types=TYPES, overrides=overrides,
            wire=dict(call.wire), exclude=_path_params(call.route))
        models[str(call.body)] = request_model(str(call.body), fields[call.name],
                                               base=Request, doc=_DOCS.get(call.name))
    return fields, models


FIELDS, MODELS = build()


def admin_model(call: str, overrides: Mapping[str, Any], doc: str | None = None
                ) -> type[BaseModel]:
    """The body model of an admin call (``api.ADMIN_CALLS``), derived from ``api.AdminAPI``.

    Built next to its route, which owns the overrides (limits, descriptions);
    ``invoke(admin, call, body)`` then passes it on.

    Raises:
        SchemaDrift: an override disagrees with the declaration.
    """
    (row,) = [c for c in api.ADMIN_CALLS if c.name == call]
    if call in FIELDS:
        raise ValueError(f"{call} is a memory call and an admin call")
    FIELDS[call] = wire_fields(call, getattr(api.AdminAPI, call), types=TYPES,
                               overrides=overrides, wire=dict(row.wire),
                               exclude=_path_params(row.route))
    model = request_model(str(row.body), FIELDS[call], base=Request, doc=doc)
    MODELS[str(row.body)] = model
    return model


def sent(body: BaseModel | None) -> dict[str, Any]:
    """The fields the caller sent (a field left out takes the declared default)."""
    return body.model_dump(exclude_unset=True) if body is not None else {}


def invoke(session: Any, call: str, body: BaseModel | Mapping[str, Any] | None,
           **path: Any) -> Any:
    """``session.<call>`` with the fields the caller sent (and the path parameters)."""
    given = body if isinstance(body, Mapping) else sent(body)
    return call_with(session, call, FIELDS[call], given, **path)


def without_null_filters(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` (of recall or context) with the filters sent as ``null`` left out.

    In JSON, null means "not given": the engine's default for that filter applies.
    """
    if fields.get("filters"):
        fields["filters"] = {k: v for k, v in fields["filters"].items() if v is not None}
    return fields


# The body models by name, for routes. mypy sees each as a BaseModel; FastAPI sees the model.
if TYPE_CHECKING:
    BatchRequest: TypeAlias = BaseModel
    ContextRequest: TypeAlias = BaseModel
    DecideRequest: TypeAlias = BaseModel
    EpisodeRequest: TypeAlias = BaseModel
    ExtractRequest: TypeAlias = BaseModel
    ForgetRequest: TypeAlias = BaseModel
    PinRequest: TypeAlias = BaseModel
    ProcedureOutcomeRequest: TypeAlias = BaseModel
    ProcedureRequest: TypeAlias = BaseModel
    RecallRequest: TypeAlias = BaseModel
    RecommendRequest: TypeAlias = BaseModel
    RememberRequest: TypeAlias = BaseModel
    ResolveRequest: TypeAlias = BaseModel
    RetractRequest: TypeAlias = BaseModel
    SummarizeRequest: TypeAlias = BaseModel
    ToolOutcomeBatchRequest: TypeAlias = BaseModel
    ToolOutcomeRequest: TypeAlias = BaseModel
    UnpinRequest: TypeAlias = BaseModel
    UpdateRequest: TypeAlias = BaseModel
else:
    BatchRequest = MODELS["BatchRequest"]
    ContextRequest = MODELS["ContextRequest"]
    DecideRequest = MODELS["DecideRequest"]
    EpisodeRequest = MODELS["EpisodeRequest"]
    ExtractRequest = MODELS["ExtractRequest"]
    ForgetRequest = MODELS["ForgetRequest"]
    PinRequest = MODELS["PinRequest"]
    ProcedureOutcomeRequest = MODELS["ProcedureOutcomeRequest"]
    ProcedureRequest = MODELS["ProcedureRequest"]
    RecallRequest = MODELS["RecallRequest"]
    RecommendRequest = MODELS["RecommendRequest"]
    RememberRequest = MODELS["RememberRequest"]
    ResolveRequest = MODELS["ResolveRequest"]
    RetractRequest = MODELS["RetractRequest"]
    SummarizeRequest = MODELS["SummarizeRequest"]
    ToolOutcomeBatchRequest = MODELS["ToolOutcomeBatchRequest"]
    ToolOutcomeRequest = MODELS["ToolOutcomeRequest"]
    UnpinRequest = MODELS["UnpinRequest"]
    UpdateRequest = MODELS["UpdateRequest"]
