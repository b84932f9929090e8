"""Erasure: ``forget`` removes content from every place it lived, and says so in the log.

One write transaction, under the chain lock:

1. Select every version of the memories the selector names (in namespaces
   the caller may read; others are invisible), then every memory derived
   from them (``derivations``), transitively.
2. Refuse, changing nothing, if the caller lacks ``erase`` on a namespace
   touched (``PermissionDenied``) or a legal hold covers one (``LegalHoldActive``).
3. Find every event that carried their content: those naming them, those of
   the transactions that wrote their versions, and those that recorded a
   conflict with them. Each such event loses its payload and salt; its
   effects on rows that are *not* erased (a rival's version, a conflict
   with its reason redacted) are restated in ``erased_events`` so that
   ``verify`` and ``import`` replay them in place.
4. Delete the versions (full-text entries go by trigger or generated column,
   vectors and their ANN copies with them), mark decisions resting on them
   stale, redact conflict reasons, and log one ``memory.erased`` event naming
   who, the selector, the reason and the counts: never the content.

Then :meth:`Storage.purge` makes the bytes unrecoverable from the files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from engramdb.codec import check_chars, new_id
from engramdb.engine.access import Caller
from engramdb.engine.read_audit import reads_of
from engramdb.engine.resources import Resources
from engramdb.errors import InvalidInput, LegalHoldActive, NotFound, PermissionDenied
from engramdb.lifecycle_values import ErasureReceipt
from engramdb.model import namespace_matches
from engramdb.policy.lifecycle import check_selector, hold_for
from engramdb.storage.base import Effect, Insert, Update, WriteTx

__all__ = ["REDACTED", "Erasure", "check_reason_required"]

REDACTED = "[erased]"


def check_reason_required(reason: Any) -> str:
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 2000:
        raise InvalidInput("reason is required: a non-empty string of at most 2000 "
                           "characters saying why (it is kept in the log)", field="reason")
    return check_chars(reason, "reason")


def _touches(effect: Mapping[str, Any], ids: set[str], conflicts: set[str]) -> bool:
    table = effect.get("table")
    ref = effect.get("row") if effect.get("op") == "insert" else effect.get("key")
    ref = ref or {}
    if table == "memories":
        return ref.get("id") in ids
    if table == "conflicts":
        return ref.get("id") in conflicts
    return False


def _conflict_ids(effect: Mapping[str, Any], ids: set[str]) -> set[str]:
    """Conflicts this effect records that involve an erased memory."""
    if effect.get("table") != "conflicts" or effect.get("op") != "insert":
        return set()
    row = effect.get("row") or {}
    involved = {m.get("id") for m in row.get("memories") or [] if isinstance(m, Mapping)}
    return {str(row["id"])} if involved & ids else set()


def _restated(effect: dict[str, Any], ids: set[str], conflicts: set[str]) -> dict[str, Any] | None:
    """An effect kept for replay: dropped if it writes erased content, redacted if it
    records a conflict with an erased memory."""
    table = effect.get("table")
    if table == "memories":
        ref = effect.get("row") if effect.get("op") == "insert" else effect.get("key")
        return None if (ref or {}).get("id") in ids else effect
    if table == "conflicts" and _touches(effect, ids, conflicts):
        out = json.loads(json.dumps(effect))
        body = out["row"] if out["op"] == "insert" else out["changes"]
        for col in ("reason", "resolution"):
            if body.get(col) is not None:
                body[col] = REDACTED
        return dict(out)
    return effect


class Erasure:
    """The erasure service: ``forget`` and ``retire_agent(policy='erase')``."""

    def __init__(self, res: Resources) -> None:
        self._res = res

    def forget(self, session: Caller, selector: Mapping[str, Any], reason: Any, *,
               purge: bool = True) -> ErasureReceipt:
        chosen = check_selector(selector)
        why = check_reason_required(reason)
        actor = session.name
        with self._res.storage.write(actor) as w:
            rows = self._select(session, w, chosen)
            ids = {r["id"] for r in rows}
            derived = self._derived(w, ids)
            if derived:
                rows += [r for d in sorted(derived) for r in w.fetch("memories", {"id": d})]
                ids |= derived
            self._check(session, w, rows)
            receipt = self._erase(w, actor, chosen, why, rows, ids, len(derived))
        if purge and receipt.versions:
            files = self._res.storage.purge()
            receipt = ErasureReceipt(**{**{f: getattr(receipt, f) for f in (
                "erasure_id", "seq", "actor", "selector", "reason", "tx", "memories",
                "versions", "counts")}, "files": files})
        return receipt

    # -- selection and checks --------------------------------------------------------

    def _select(self, session: Caller, w: WriteTx, chosen: Mapping[str, str]
                ) -> list[dict[str, Any]]:
        where = {k: v for k, v in chosen.items() if k in ("id", "subject", "author")}
        glob = chosen.get("namespace")
        if where:
            rows = w.fetch("memories", where)
        else:
            assert glob is not None
            rows = [r for ns in self._res.storage.namespaces() if namespace_matches(glob, ns)
                    for r in w.fetch("memories", {"namespace": ns})]
        if glob is not None:
            rows = [r for r in rows if namespace_matches(glob, r["namespace"])]
        acl = session.acl()
        # Deny by default: a memory in a namespace you cannot read does not exist for you.
        rows = [r for r in rows if acl.check("read", r["namespace"]).allow]
        # Every version of each selected memory, even versions a selector field
        # (a subject changed by an update) no longer matches.
        out: dict[tuple[str, int], dict[str, Any]] = {}
        for mid in sorted({r["id"] for r in rows}):
            for r in w.fetch("memories", {"id": mid}):
                out[(r["id"], int(r["version"]))] = r
        if "id" in chosen and not out:
            raise NotFound(f"memory {chosen['id']!r} not found (or not visible to you)",
                           id=chosen["id"])
        return [out[k] for k in sorted(out)]

    def _derived(self, w: WriteTx, ids: set[str]) -> set[str]:
        found: set[str] = set()
        frontier = set(ids)
        while frontier:
            nxt: set[str] = set()
            for src in sorted(frontier):
                for d in w.fetch("derivations", {"source_id": src}):
                    if d["derived_id"] not in ids and d["derived_id"] not in found:
                        nxt.add(d["derived_id"])
            found |= nxt
            frontier = nxt
        return found

    def _check(self, session: Caller, w: WriteTx, rows: Sequence[Mapping[str, Any]]) -> None:
        spaces = sorted({r["namespace"] for r in rows})
        acl = session.acl()
        for ns in spaces:
            if not acl.check("erase", ns).allow:
                raise PermissionDenied(
                    f"{session.name!r} may not erase in that namespace; nothing was erased",
                    action="erase", namespace=ns,
                    fix={"action": "grant", "grantee": session.name, "pattern": ns,
                         "actions": ["erase"]})
        holds = w.fetch("legal_holds", {"active": 1})
        for ns in spaces:
            hold = hold_for(holds, ns)
            if hold is not None:
                raise LegalHoldActive(
                    f"a legal hold on {hold['pattern']!r} ({hold['reason']}) covers the "
                    "selected memories; nothing was erased", pattern=hold["pattern"],
                    namespace=ns, fix={"action": "lift_legal_hold", "pattern": hold["pattern"]})

    # -- the erasure -----------------------------------------------------------------

    def _carriers(self, w: WriteTx, rows: Sequence[Mapping[str, Any]], ids: set[str]
                  ) -> tuple[dict[int, list[dict[str, Any]]], set[str]]:
        """Events that carried erased content -> their effects restated without it."""
        storage = self._res.storage
        txs = {int(r["tx_from"]) for r in rows} | {int(r["tx_to"]) for r in rows
                                                   if r.get("tx_to") is not None}
        conflicts: set[str] = set()
        for ns in sorted({r["namespace"] for r in rows}):
            for c in w.fetch("conflicts", {"namespace": ns}):
                if {m.get("id") for m in c.get("memories") or []} & ids:
                    conflicts.add(c["id"])
                    txs.add(int(c["tx"]))
                    if c.get("resolved_tx") is not None:
                        txs.add(int(c["resolved_tx"]))
        events = storage.find_events(sorted(ids | conflicts), sorted(txs))
        for ev in events:
            for eff in (json.loads(ev.payload).get("effects", []) if ev.payload else []):
                conflicts |= _conflict_ids(eff, ids)
        carriers: dict[int, list[dict[str, Any]]] = {}
        for ev in events:
            if ev.payload is None:
                continue  # erased before
            effects = json.loads(ev.payload).get("effects", [])
            if ev.subject_ref in ids or ev.subject_ref in conflicts or any(
                    _touches(e, ids, conflicts) for e in effects):
                kept = [_restated(e, ids, conflicts) for e in effects]
                carriers[ev.seq] = [e for e in kept if e is not None]
        return carriers, conflicts

    def _erase(self, w: WriteTx, actor: str, chosen: Mapping[str, str], reason: str,
               rows: Sequence[Mapping[str, Any]], ids: set[str], n_derived: int
               ) -> ErasureReceipt:
        carriers, conflicts = self._carriers(w, rows, ids)
        erasure_id = new_id()
        versions = tuple((str(r["id"]), int(r["version"])) for r in rows)
        effects: list[Effect] = []
        for cid in sorted(conflicts):
            cur = w.fetch("conflicts", {"id": cid})
            if cur:
                changes = {c: REDACTED for c in ("reason", "resolution")
                           if cur[0].get(c) is not None and cur[0].get(c) != REDACTED}
                if changes:
                    effects.append(Update("conflicts", {"id": cid}, changes))
        stale = 0
        for mid, version in versions:
            for b in w.fetch("decision_basis", {"memory_id": mid, "version": version}):
                d = w.fetch("decisions", {"id": b["decision_id"]})
                if d and d[0].get("stale_tx") is None and not any(
                        isinstance(e, Update) and e.key == {"id": b["decision_id"]}
                        for e in effects):
                    effects.append(Update("decisions", {"id": b["decision_id"]},
                                          {"stale_tx": w.tx}))
                    stale += 1
        read_versions = {mid: [v for _, v in reads_of(w, self._res.storage, mid)]
                         for mid in {m for m, _ in versions}}
        reads = sum(read_versions[mid].count(v) for mid, v in versions)
        gone = w.erase(versions, sorted(carriers))
        counts = {"versions": len(versions), "fulltext_entries": len(versions),
                  "vectors": gone["vectors"], "event_payloads": len(carriers),
                  "derived_memories": n_derived, "conflicts_redacted": len(conflicts),
                  "decisions_stale": stale, "read_records": reads}
        receipt_body = {"memories": sorted(ids), "versions": [list(v) for v in versions],
                        "counts": counts}
        effects.insert(0, Insert("erasures", {
            "id": erasure_id, "actor": actor, "selector": dict(chosen), "reason": reason,
            "receipt": receipt_body, "tx": w.tx}))
        effects += [Insert("erased_versions", {"memory_id": mid, "version": v,
                                               "erasure_id": erasure_id, "tx": w.tx})
                    for mid, v in versions]
        effects += [Insert("erased_events", {"seq": seq, "erasure_id": erasure_id,
                                             "tx": w.tx, "effects": kept})
                    for seq, kept in sorted(carriers.items())]
        event = self._res.commit(w, "memory.erased", actor, None, erasure_id, effects,
                                 {"selector": dict(chosen), "reason": reason, "counts": counts})
        return ErasureReceipt(erasure_id, event.seq, actor, dict(chosen), reason, w.tx,
                              tuple(sorted(ids)), versions, counts)
