"""Decisions, context packing and read queries for one caller.

* **Context.** ``context`` recalls for a task and packs the best hits under a
  token budget (:mod:`engramdb.retrieval.pack`), with a receipt of exactly
  what was packed.
* **Decisions.** ``decide`` stores a decision with the exact memory versions it
  rests on (a ``decisions`` row plus one ``decision_basis`` row per version,
  through the one commit path). Every later write that closes a basis version
  marks the decision stale in its own transaction
  (:func:`engramdb.engine._commit.mark_stale`). ``explain`` shows each basis
  memory as it was at the decision and what happened to it since.
* **Who read what**: ``who_read`` over the read audit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engramdb.codec import check_chars, check_json, from_micros, new_id
from engramdb.engine._commit import log_stale
from engramdb.engine.access import Caller
from engramdb.engine.read_audit import reads_of
from engramdb.engine.recall import Recall
from engramdb.engine.redact import DecisionView, redact_decision
from engramdb.engine.resources import Resources
from engramdb.engine.rows import (
    check_metadata,
    conflict_from_row,
    decision_from_row,
    memory_from_row,
)
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
from engramdb.policy.acl import AccessControl
from engramdb.storage.base import Effect, Insert

__all__ = ["MAX_BASIS", "Decisions", "basis_items"]

MAX_BASIS = 10_000


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


def _flags(hit: Hit) -> tuple[str, ...]:
    flags = []
    if hit.memory.status != "active":
        flags.append(hit.memory.status)
    if hit.contested:
        flags.append("contested")
    return tuple(flags)


class Decisions:
    """Context, decisions and read queries; every method acts for ``caller``."""

    def __init__(self, res: Resources, recall: Recall) -> None:
        self._res = res
        self._recall = recall

    # -- context -------------------------------------------------------------------

    # -- decisions -----------------------------------------------------------------

    def decide(
        self,
        caller: Caller,
        description: str,
        *,
        basis: Any,
        outcome: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        namespace: str | None = None,
    ) -> Decision:
        """Record a decision and the exact memory versions it rests on.

        Public docs: :meth:`engramdb.Session.decide`.
        """
        cfg = self._res.config
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
                             else f"agents/{caller.name}")
        items = basis_items(basis)
        caller.require("write", ns)
        acl = caller.acl()
        with self._res.storage.write(caller.name) as w:
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
            row = {"id": new_id(), "principal": caller.name, "namespace": ns,
                   "description": description,
                   "basis": [{"id": i.id, "version": i.version} for i in items],
                   "outcome": out, "metadata": meta, "tx": w.tx,
                   "recorded_at": w.recorded_at, "stale_tx": None}
            effects: list[Effect] = [Insert("decisions", row)]
            effects += [Insert("decision_basis", {"decision_id": row["id"], "memory_id": i.id,
                                                  "version": i.version}) for i in items]
            self._res.commit(w, "decision.recorded", caller.name, ns, row["id"], effects)
            if already:
                # Decided on versions that had already been replaced: stale from the start.
                log_stale(w, row, already, caller.name)
                row = {**row, "stale_tx": w.tx}
        return decision_from_row(row)

    def _decision_row(self, caller: Caller, decision_id: str) -> dict[str, Any]:
        if not isinstance(decision_id, str) or not decision_id:
            raise InvalidInput("decision id must be a non-empty string", field="id")
        check_chars(decision_id, "decision id")
        rows = self._res.storage.fetch("decisions", {"id": decision_id})
        if not rows or not self._may_see_decision(caller, rows[0], caller.acl()):
            raise NotFound(f"no decision {decision_id!r}; check the id (or your read grant)",
                           id=decision_id)
        return rows[0]

    @staticmethod
    def _may_see_decision(caller: Caller, row: Mapping[str, Any],
                          acl: AccessControl) -> bool:
        if row["principal"] == caller.name:
            return True
        ns = row["namespace"]
        return acl.is_admin if ns is None else bool(acl.check("read", ns))

    def decision(self, caller: Caller, decision_id: str) -> Decision:
        """One decision you may see (you made it, or you may read its namespace).

        Public docs: :meth:`engramdb.Session.decision`.
        """
        return self._redacted(decision_from_row(self._decision_row(caller, decision_id)),
                              caller.acl())

    def _redacted(self, d: Decision, acl: AccessControl) -> Decision:
        """``d`` without the basis items the reader may not read (see ``redact``)."""
        if acl.is_admin:
            return d
        return redact_decision(d, DecisionView(self._res.storage,
                                               lambda ns: bool(acl.check("read", ns))))

    def explain(self, caller: Caller, decision_id: str) -> DecisionExplanation:
        """What a decision rested on, as it was then, and what has happened since.

        Public docs: :meth:`engramdb.Session.explain`.
        """
        acl = caller.acl()
        # Basis memories the reader may not read are left out (counted in
        # ``basis_hidden``) and do not make it stale for this reader.
        d = self._redacted(decision_from_row(self._decision_row(caller, decision_id)), acl)
        storage = self._res.storage
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
                conflicts_by_ns[ns] = [conflict_from_row(c) for c in
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
        shown = [m for b in basis for m in (b.then, b.now, *b.later) if m is not None]
        self._res.read_audit.record_read(caller.name, "explain", shown)
        return DecisionExplanation(decision=d, basis=tuple(basis),
                                   stale=any_stale or d.stale_tx is not None)

    def stale_decisions(self, caller: Caller, namespace: str = "**") -> list[Decision]:
        """Decisions you may see whose basis has changed since, oldest staleness first."""
        check_glob(namespace)
        acl = caller.acl()
        seen = [
            self._redacted(decision_from_row(r), acl)
            for r in self._res.storage.fetch("decisions", {}, order_by="tx")
            if r.get("stale_tx") is not None
            and namespace_matches(namespace, r["namespace"] or "")
            and self._may_see_decision(caller, r, acl)
        ]
        out = [d for d in seen if d.stale_tx is not None]
        return sorted(out, key=lambda d: (d.stale_tx or 0, d.tx, d.id))

    # -- read audit ------------------------------------------------------------------

    def who_read(self, caller: Caller, memory_id: str) -> list[ReadRecord]:
        """Who read a memory and when: one record per recorded read of any version.

        Public docs: :meth:`engramdb.Session.who_read`.
        """
        if not isinstance(memory_id, str) or not memory_id:
            raise InvalidInput("memory id must be a non-empty string", field="id")
        check_chars(memory_id, "memory id")
        storage = self._res.storage
        rows = storage.fetch("memories", {"id": memory_id}, limit=1)
        acl = caller.acl()
        if not rows or not acl.check("read", rows[0]["namespace"]):
            raise NotFound(f"no memory {memory_id!r}; check the id (or your read grant)",
                           id=memory_id)
        if not acl.check("admin", rows[0]["namespace"]):
            raise PermissionDenied(
                f"who_read needs admin on {rows[0]['namespace']!r}; ask an admin for the grant",
                action="admin", namespace=rows[0]["namespace"])
        self._res.read_audit.flush()
        out = [ReadRecord(principal=read["principal"],
                          time=from_micros(read["recorded_at"]),  # type: ignore[arg-type]
                          version=version)
               for read, version in reads_of(storage, storage, memory_id)]
        return sorted(out, key=lambda r: (r.time, r.principal, r.version))
