"""Erasure: ``forget`` removes content from every place it lived, and says so in the log.

One write transaction, under the chain lock:

1. Select every version of the memories the selector names (in namespaces
   the caller may read; others are invisible; a ``subject`` also selects the
   memories that mention it, see :mod:`.erasure_scope`), then every memory
   derived from them (``derivations``), transitively; and the side rows
   (tool outcomes, decisions) whose text the selector reaches.
2. Refuse, changing nothing, if the caller lacks ``erase`` on a namespace
   touched (``PermissionDenied``) or a legal hold covers one (``LegalHoldActive``).
3. Find every event that carried that content: those naming the memories or
   side rows, those of the transactions that wrote them, and those that
   recorded a conflict with an erased memory. Each such event loses its
   payload and salt; its effects on rows that are *not* erased (a rival's
   version, a conflict or tool outcome with its text redacted) are restated
   in ``erased_events`` so that ``verify`` and ``import`` replay them in place.
4. Delete the versions (full-text entries go by trigger or generated column,
   vectors and their ANN copies with them), mark decisions resting on them
   stale, redact the side rows' text, and log one ``memory.erased`` event
   naming who, the selector (a ``subject`` as a keyed hash), the reason and
   the counts: never the content.

Then :meth:`Storage.purge` makes the bytes unrecoverable from the files.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from engramdb.audit.tool_stats import ERROR_CHARS, HOURLY_COLUMNS, KEY_COLUMNS
from engramdb.codec import check_chars, new_id
from engramdb.engine.access import Caller
from engramdb.engine.erasure_scope import (
    REDACTED,
    SIDE_TEXT,
    STATS_TABLES,
    OutcomePlan,
    hidden_selector,
    memory_matches,
    outcome_plan,
    redacted_changes,
    restated,
    side_matches,
    touches,
)
from engramdb.engine.read_audit import reads_of
from engramdb.engine.resources import Resources
from engramdb.errors import InvalidInput, LegalHoldActive, NotFound, PermissionDenied
from engramdb.lifecycle_values import ErasureReceipt
from engramdb.model import namespace_matches
from engramdb.policy.lifecycle import check_selector, hold_for
from engramdb.storage.base import Effect, Insert, Update, WriteTx

__all__ = ["PURGE_PENDING", "REDACTED", "Erasure", "check_reason_required", "purge_busy"]

# ``meta`` key: "1" while an erasure's file purge is still to be finished (by ``maintain``).
PURGE_PENDING = "purge_pending"


def purge_busy(files: Mapping[str, Any]) -> bool:
    """Whether a reader kept ``storage.purge()`` from finishing: an old snapshot held
    SQLite's WAL (``wal_busy``) or PostgreSQL's deleted rows (``readers_busy``)."""
    return bool(files.get("wal_busy") or files.get("readers_busy"))

def check_reason_required(reason: Any) -> str:
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 2000:
        raise InvalidInput("reason is required: a non-empty string of at most 2000 "
                           "characters saying why (it is kept in the log)", field="reason")
    return check_chars(reason, "reason")

def _conflict_ids(effect: Mapping[str, Any], ids: set[str]) -> set[str]:
    """Conflicts this effect records that involve an erased memory."""
    if effect.get("table") != "conflicts" or effect.get("op") != "insert":
        return set()
    row = effect.get("row") or {}
    involved = {m.get("id") for m in row.get("memories") or [] if isinstance(m, Mapping)}
    return {str(row["id"])} if involved & ids else set()


class Erasure:
    """The erasure service: ``forget`` and ``retire_agent(policy='erase')``."""

    def __init__(self, res: Resources) -> None:
        self._res = res

    def forget(self, session: Caller, selector: Mapping[str, Any], reason: Any, *,
               purge: bool = True) -> ErasureReceipt:
        chosen = check_selector(selector)
        why = check_reason_required(reason)
        actor = session.name
        key = self._key()
        with self._res.storage.write(actor) as w:
            rows = self._select(session, w, chosen)
            ids = {r["id"] for r in rows}
            derived = self._derived(w, ids)
            if derived:
                rows += [r for d in sorted(derived) for r in w.fetch("memories", {"id": d})]
                ids |= derived
            side = self._side(session, chosen)
            self._check(session, w, rows + [r for rs in side.values() for r in rs])
            receipt = self._erase(w, actor, chosen, hidden_selector(chosen, key), why, rows,
                                  ids, len(derived), side)
        if receipt.versions or any(side.values()):
            if not purge:
                self._res.storage.set_meta(PURGE_PENDING, "1")
                return receipt
            files = self._res.storage.purge()
            # A reader held an old snapshot: the next ``maintain`` finishes the purge.
            self._res.storage.set_meta(PURGE_PENDING, "1" if purge_busy(files) else "0")
            receipt = ErasureReceipt(**{**{f: getattr(receipt, f) for f in (
                "erasure_id", "seq", "actor", "selector", "reason", "tx", "memories",
                "versions", "counts")}, "files": files})
        return receipt

    def _key(self) -> bytes:
        """The database's erasure key (made once; kept in ``meta``, outside the log
        and exports): the key of the logged selector's hash."""
        storage = self._res.storage
        key = storage.meta("erasure_key")
        if key is None:
            storage.set_meta("erasure_key", secrets.token_hex(32))
            key = storage.meta("erasure_key")
        return bytes.fromhex(str(key))

    # -- selection and checks --------------------------------------------------------

    def _select(self, session: Caller, w: WriteTx, chosen: Mapping[str, str]
                ) -> list[dict[str, Any]]:
        where = {k: v for k, v in chosen.items() if k in ("id", "subject", "author")}
        glob = chosen.get("namespace")
        if where:
            rows = w.fetch("memories", where)
            if "subject" in where:  # and every memory that mentions it
                rows += self._res.storage.mentioning("memories", ("text", "value", "metadata"),
                                                     where["subject"])
        else:
            assert glob is not None
            rows = [r for ns in self._res.storage.namespaces() if namespace_matches(glob, ns)
                    for r in w.fetch("memories", {"namespace": ns})]
        rows = [r for r in rows if memory_matches(r, chosen)]
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

    def _side(self, session: Caller, chosen: Mapping[str, str]
              ) -> dict[str, list[dict[str, Any]]]:
        """Tool outcomes and decisions whose text the selector reaches (readable ones)."""
        if "id" in chosen:
            return {}
        storage = self._res.storage
        acl = session.acl()
        out: dict[str, list[dict[str, Any]]] = {}
        for table in ("tool_outcomes", "decisions"):
            if "subject" in chosen:
                rows = storage.mentioning(table, SIDE_TEXT[table], chosen["subject"])
            elif "author" in chosen:
                rows = storage.fetch(table, {"principal": chosen["author"]})
            else:
                rows = storage.fetch(table, {})
            out[table] = [r for r in rows if side_matches(table, r, chosen)
                          and redacted_changes(table, r)
                          and acl.check("read", r["namespace"]).allow]
        return out

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

    def _label_peers(self, w: WriteTx, side: Mapping[str, Sequence[Mapping[str, Any]]],
                     plan: OutcomePlan) -> dict[str, list[Mapping[str, Any]]]:
        """``side`` plus the other outcomes counted under a ``tool_stats`` row being
        renamed (same group, error starting with the erased label): renaming a row
        renames every outcome it counts, so the log still adds up."""
        out: dict[str, list[Mapping[str, Any]]] = {t: list(rs) for t, rs in side.items()}
        have = {str(r["id"]) for r in out.get("tool_outcomes", ())}
        for (ns, principal, tool, _, label), token in sorted(plan.relabel.items()):
            for r in w.fetch("tool_outcomes", {"namespace": ns, "principal": principal,
                                               "tool": tool}):
                rid = str(r["id"])
                if (rid not in have and not r.get("ok")
                        and str(r.get("error") or "")[:ERROR_CHARS] == label):
                    out.setdefault("tool_outcomes", []).append(r)
                    plan.errors[rid] = token
                    have.add(rid)
        return out

    def _carriers(self, w: WriteTx, rows: Sequence[Mapping[str, Any]], ids: set[str],
                  side: Mapping[str, Sequence[Mapping[str, Any]]], plan: OutcomePlan
                  ) -> tuple[dict[int, list[dict[str, Any]]], dict[str, set[str]]]:
        """Events that carried erased content -> their effects restated without it;
        and the side rows (by table) whose text is redacted."""
        storage = self._res.storage
        txs = {int(r["tx_from"]) for r in rows} | {int(r["tx_to"]) for r in rows
                                                   if r.get("tx_to") is not None}
        redact: dict[str, set[str]] = {t: {str(r["id"]) for r in rs} for t, rs in side.items()}
        redact["conflicts"] = set()
        txs |= {int(r["tx"]) for rs in side.values() for r in rs}
        for table in STATS_TABLES:
            filled = storage.meta(f"{table}_filled")
            if plan.relabel and filled and int(filled):
                txs.add(int(filled))  # the aggregate of outcomes older than it, counted once
        for ns in sorted({r["namespace"] for r in rows}):
            for c in w.fetch("conflicts", {"namespace": ns}):
                if {m.get("id") for m in c.get("memories") or []} & ids:
                    redact["conflicts"].add(c["id"])
                    txs.add(int(c["tx"]))
                    if c.get("resolved_tx") is not None:
                        txs.add(int(c["resolved_tx"]))
        refs = ids | {i for found in redact.values() for i in found}
        events = storage.find_events(sorted(refs), sorted(txs))
        for ev in events:
            for eff in (json.loads(ev.payload).get("effects", []) if ev.payload else []):
                redact["conflicts"] |= _conflict_ids(eff, ids)
        carriers: dict[int, list[dict[str, Any]]] = {}
        for ev in events:
            if ev.payload is None:
                continue  # erased before
            effects = json.loads(ev.payload).get("effects", [])
            if ev.subject_ref in refs or any(touches(e, ids, redact, plan) for e in effects):
                kept = [restated(e, ids, redact, plan) for e in effects]
                carriers[ev.seq] = [e for e in kept if e is not None]
        return carriers, redact

    def _erase(self, w: WriteTx, actor: str, chosen: Mapping[str, str],
               logged: Mapping[str, str], reason: str, rows: Sequence[Mapping[str, Any]],
               ids: set[str], n_derived: int, side: Mapping[str, Sequence[Mapping[str, Any]]]
               ) -> ErasureReceipt:
        plan = outcome_plan(side.get("tool_outcomes", ()), chosen)
        side = self._label_peers(w, side, plan)
        carriers, redact = self._carriers(w, rows, ids, side, plan)
        erasure_id = new_id()
        versions = tuple((str(r["id"]), int(r["version"])) for r in rows)
        effects: list[Effect] = []
        redacted: dict[str, dict[str, dict[str, Any]]] = {}
        for table in ("conflicts", "tool_outcomes", "decisions"):
            for rid in sorted(redact.get(table, ())):
                cur = w.fetch(table, {"id": rid})
                changes = redacted_changes(table, cur[0]) if cur else {}
                if table == "tool_outcomes" and rid in plan.errors:
                    changes["error"] = plan.errors[rid]
                    if changes["error"] == cur[0].get("error"):
                        del changes["error"]
                if changes:
                    redacted.setdefault(table, {})[rid] = changes
        stale = 0
        stale_ids: set[str] = set()
        for mid, version in versions:
            for b in w.fetch("decision_basis", {"memory_id": mid, "version": version}):
                d = w.fetch("decisions", {"id": b["decision_id"]})
                if d and d[0].get("stale_tx") is None and b["decision_id"] not in stale_ids:
                    stale_ids.add(b["decision_id"])
                    stale += 1
        for table, changes_by_id in redacted.items():
            for rid, changes in changes_by_id.items():
                if table == "decisions" and rid in stale_ids:
                    changes = {**changes, "stale_tx": w.tx}
                effects.append(Update(table, {"id": rid}, changes))
        effects += [Update("decisions", {"id": did}, {"stale_tx": w.tx})
                    for did in sorted(stale_ids - set(redacted.get("decisions", {})))]
        read_versions = {mid: [v for _, v in reads_of(w, self._res.storage, mid)]
                         for mid in {m for m, _ in versions}}
        reads = sum(read_versions[mid].count(v) for mid, v in versions)
        gone = w.erase(versions, sorted(carriers))
        # The renamed aggregate rows: like the rows ``erase`` removes, a rewrite of
        # state the log no longer carries as it was (the restated events replay
        # straight into the new labels), so it is applied here and not logged again.
        w.apply([Update("tool_stats", dict(zip(KEY_COLUMNS, key, strict=True)), {"label": token})
                 for key, token in sorted(plan.relabel.items())])
        w.apply([Update("tool_stats_hourly", {c: r[c] for c in HOURLY_COLUMNS}, {"label": token})
                 for key, token in sorted(plan.relabel.items())
                 for r in w.fetch("tool_stats_hourly", dict(zip(KEY_COLUMNS, key, strict=True)))])
        counts = {"versions": len(versions), "fulltext_entries": len(versions),
                  "vectors": gone["vectors"], "event_payloads": len(carriers),
                  "derived_memories": n_derived,
                  "conflicts_redacted": len(redact.get("conflicts", ())),
                  "decisions_stale": stale, "read_records": reads,
                  "tool_outcomes_redacted": len(redacted.get("tool_outcomes", {})),
                  "decisions_redacted": len(redacted.get("decisions", {}))}
        receipt_body = {"memories": sorted(ids), "versions": [list(v) for v in versions],
                        "counts": counts}
        effects.insert(0, Insert("erasures", {
            "id": erasure_id, "actor": actor, "selector": dict(logged), "reason": reason,
            "receipt": receipt_body, "tx": w.tx}))
        effects += [Insert("erased_versions", {"memory_id": mid, "version": v,
                                               "erasure_id": erasure_id, "tx": w.tx})
                    for mid, v in versions]
        effects += [Insert("erased_events", {"seq": seq, "erasure_id": erasure_id,
                                             "tx": w.tx, "effects": kept})
                    for seq, kept in sorted(carriers.items())]
        event = self._res.commit(w, "memory.erased", actor, None, erasure_id, effects,
                                 {"selector": dict(logged), "reason": reason, "counts": counts})
        return ErasureReceipt(erasure_id, event.seq, actor, dict(chosen), reason, w.tx,
                              tuple(sorted(ids)), versions, counts)
