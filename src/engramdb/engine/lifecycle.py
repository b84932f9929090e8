"""The lifecycle service: policies, legal holds, reinforcement, ``maintain`` and ``restore``.

Policies and holds are state rows written by logged admin events. ``maintain``
applies them in one write transaction, so several processes may run it at
once: the chain lock serialises them and each re-reads a candidate under
the lock before it changes it, so nothing is applied twice and a second run
finds nothing due. Its work is proportional to what is due: expiry reads the
``expires_at`` index; decay reads memories recorded, and usage rows
reinforced, within the window that fell due since the policy's last
``checked_to`` (both by index); capacity counts only namespaces written since
the previous run.

Reinforcement (recall hits, decision bases) is buffered in process and
written in batches by ``maintain`` or ``flush_usage``; a read never writes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from engramdb.codec import check_chars, from_micros, to_micros
from engramdb.engine._commit import next_version
from engramdb.engine.erasure import PURGE_PENDING, purge_busy
from engramdb.engine.resources import ADMIN, Resources
from engramdb.engine.rows import check_bool, memory_from_row
from engramdb.errors import InvalidInput, LegalHoldActive, NotFound
from engramdb.lifecycle_values import MaintenanceReport
from engramdb.model import Hit, RecallResult, check_glob, check_layer
from engramdb.policy.lifecycle import (
    ALL_LAYERS,
    LifecyclePolicy,
    hold_for,
    policy_for,
    relevance,
)
from engramdb.storage.base import Effect, Insert, Update, WriteTx

__all__ = ["Lifecycle"]

# Candidates read per kind (expiry, decay window) per run: a larger backlog takes
# several runs, each resuming where the last stopped.
MAX_PER_KIND = 10_000
# Memories archived per write transaction: bounds the lock time and the size of
# one event; every batch commits on its own.
BATCH_SIZE = 500
_ORDER = {"expired": 0, "decayed": 1, "capacity": 2}


def _page(read: Callable[[int, int, int], list[dict[str, Any]]], col: str, after: int,
          until: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Rows with ``after < col <= until`` up to ``limit``, completed with every row at
    the last time read; and the time up to which the window is now read."""
    rows = read(after, until, limit)
    if len(rows) < limit:
        return rows, until
    edge = int(rows[-1][col])
    rows = [r for r in rows if int(r[col]) < edge] + read(edge - 1, edge, 2**62)
    return rows, edge


def _now_micros() -> int:
    return time.time_ns() // 1000


class Lifecycle:
    """Lifecycle rules applied to one database."""

    def __init__(self, res: Resources) -> None:
        self._res = res
        # The injected clock (tests): micros since the epoch.
        self.clock: Callable[[], int] = _now_micros
        self._lock = threading.Lock()
        self._uses: dict[str, tuple[int, int]] = {}  # id -> (uses, last_used)
        self._policies: tuple[list[Any], list[LifecyclePolicy]] | None = None
        # The policies as of one fixed configuration (WriteTx.fixed_config).
        self._fixed_policies: tuple[int, list[LifecyclePolicy]] | None = None
        self.batch_size = BATCH_SIZE
        self.max_per_kind = MAX_PER_KIND
        # (capacity policies, tx) of this process's last capacity check.
        self._capacity_seen: tuple[tuple[Any, ...], int] | None = None

    # -- policies and holds (admin) ----------------------------------------------

    def policies(self, fixed_config: int | None = None) -> list[LifecyclePolicy]:
        """The lifecycle policies in force. ``fixed_config``: the caller reads the
        configuration as of this number (a prepared write's, ``WriteTx.fixed_config``):
        the policies read once under it are returned again without a read."""
        if fixed_config is not None:
            hit = self._fixed_policies
            if hit is not None and hit[0] == fixed_config:
                return hit[1]
        # One plain read of the (small) table: every write moves the log's head, so
        # a cache keyed on the head cost a head read plus a cursor scan per remember
        # (four round trips on PostgreSQL); the parsed policies are kept while the
        # rows are unchanged.
        rows = sorted(self._res.storage.fetch("lifecycle_policies", {}),
                      key=lambda r: (r["pattern"], r["layer"]))  # the key order scan gave
        cached = self._policies
        if cached is None or cached[0] != rows:
            cached = (rows, [LifecyclePolicy.from_row(r) for r in rows])
            self._policies = cached
        if fixed_config is not None:
            self._fixed_policies = (fixed_config, cached[1])
        return cached[1]

    def set_policy(self, actor: str, pattern: Any, layer: Any, fields: Mapping[str, Any]
                   ) -> LifecyclePolicy:
        policy = LifecyclePolicy.build(pattern, layer, fields)
        with self._res.storage.write(actor) as w:
            key = {"pattern": policy.pattern, "layer": policy.layer}
            cur = w.fetch("lifecycle_policies", key)
            effect: Effect
            if cur:
                # A changed policy re-evaluates decay from the start (checked_to reset).
                effect = Update("lifecycle_policies", key, {
                    "settings": policy.settings(), "tx": w.tx, "checked_to": None})
            else:
                effect = Insert("lifecycle_policies", {**key, "settings": policy.settings(),
                                                       "tx": w.tx, "checked_to": None})
            self._res.commit(w, "lifecycle.policy_set", actor, None, policy.pattern, [effect])
        self._policies = None
        return policy

    def policy(self, namespace: str, layer: str | None) -> LifecyclePolicy | None:
        from engramdb.model import check_namespace
        check_namespace(namespace)
        return policy_for(self.policies(), namespace,
                          ALL_LAYERS if layer is None else check_layer(layer))

    def legal_hold(self, actor: str, pattern: Any, on: Any, reason: Any) -> dict[str, Any]:
        check_glob(pattern)
        check_bool(on, "on")
        if not isinstance(reason, str) or not reason.strip() or len(reason) > 2000:
            raise InvalidInput("reason is required: a non-empty string of at most 2000 "
                               "characters", field="reason")
        check_chars(reason, "reason")
        with self._res.storage.write(actor) as w:
            row = {"pattern": pattern, "active": int(on), "reason": reason, "set_by": actor,
                   "tx": w.tx}
            cur = w.fetch("legal_holds", {"pattern": pattern})
            if not cur and not on:
                raise NotFound(f"no legal hold on {pattern!r} to lift", pattern=pattern)
            effect: Effect = (Update("legal_holds", {"pattern": pattern},
                                     {k: v for k, v in row.items() if k != "pattern"})
                              if cur else Insert("legal_holds", row))
            self._res.commit(w, "lifecycle.legal_hold", actor, None, pattern, [effect])
        return {**row, "active": on}

    def holds(self) -> list[dict[str, Any]]:
        return [{**h, "active": bool(h["active"])}
                for h in self._res.storage.fetch("legal_holds", {"active": 1})]

    def with_ttl(self, draft: Any, policies: list[LifecyclePolicy] | None = None,
                 fixed_config: int | None = None) -> Any:
        """``draft`` with ``expires_at`` from the TTL in force, unless it sets its own.

        ``policies``: :meth:`policies` read once for a whole batch (each read
        costs a look at the log's head); ``fixed_config``: as :meth:`policies` takes it.
        """
        if draft.expires_at is not None:
            return draft
        if policies is None:
            policies = self.policies(fixed_config)
        if not policies:
            return draft
        p = policy_for(policies, draft.namespace, draft.layer)
        if p is None or p.ttl is None:
            return draft
        return replace(draft, expires_at=from_micros(self.clock() + p.ttl))

    # -- reinforcement ---------------------------------------------------------------

    def decaying(self) -> bool:
        return any(p.half_life is not None for p in self.policies())

    def reinforce(self, memory_ids: Sequence[str]) -> None:
        """Count a use of each memory (buffered; written by :meth:`flush_usage`)."""
        if not memory_ids or not self.decaying():
            return
        now = self.clock()
        with self._lock:
            for mid in memory_ids:
                uses, _ = self._uses.get(mid, (0, 0))
                self._uses[mid] = (uses + 1, now)
            due = len(self._uses) >= 1000
        if due:
            self.flush_usage()

    def flush_usage(self, w: WriteTx | None = None) -> int:
        with self._lock:
            pending, self._uses = self._uses, {}
        if not pending:
            return 0
        if w is None:
            with self._res.storage.write(ADMIN) as tx:
                return self._write_usage(tx, pending)
        return self._write_usage(w, pending)

    def _write_usage(self, w: WriteTx, pending: Mapping[str, tuple[int, int]]) -> int:
        effects: list[Effect] = []
        for mid, (uses, last) in sorted(pending.items()):
            cur = w.fetch("memory_usage", {"id": mid})
            if cur:
                effects.append(Update("memory_usage", {"id": mid}, {
                    "uses": int(cur[0]["uses"]) + uses,
                    "last_used": max(int(cur[0]["last_used"]), last), "tx": w.tx}))
            else:
                effects.append(Insert("memory_usage", {"id": mid, "uses": uses,
                                                       "last_used": last, "tx": w.tx}))
        self._res.commit(w, "lifecycle.reinforced", ADMIN, None, None, effects)
        return len(effects)

    def rerank(self, result: RecallResult) -> RecallResult:
        """A recall result with its hits weighed by decayed relevance, now."""
        hits = self.rank(result.hits, self.clock())
        return result if hits is result.hits else RecallResult(hits, result.receipt)

    def rank(self, hits: tuple[Hit, ...], now: int) -> tuple[Hit, ...]:
        """Weigh each hit by its decayed relevance (``why['decay']``) and re-sort."""
        policies = self.policies()
        if not hits or not any(p.half_life is not None for p in policies):
            return hits
        usage = {r["id"]: int(r["last_used"]) for r in self._res.storage.fetch(
            "memory_usage", {"id": [h.memory.id for h in hits]})}
        out = []
        for h in hits:
            p = policy_for(policies, h.memory.namespace, h.memory.layer)
            if p is None or p.half_life is None:
                out.append(h)
                continue
            last = max(usage.get(h.memory.id, 0), to_micros(h.memory.recorded_at) or 0)
            r = relevance(last, now, p.half_life)
            out.append(Hit(h.memory, h.score * r, {**h.why, "decay": round(r, 6)},
                           h.contested, h.rivals))
        out.sort(key=lambda h: -h.score)
        return tuple(out)

    # -- maintain ----------------------------------------------------------------------

    def maintain(self, actor: str) -> MaintenanceReport:
        """Find what is due (by index, outside the write lock), then archive it in
        write transactions of at most :attr:`batch_size` memories each.

        Each batch re-reads its candidates and the legal holds under the chain
        lock, so a memory another run (or another process) already archived is
        skipped, and each batch commits on its own: an interrupted run leaves
        whole batches behind and the next run finishes the rest. The decay
        cursors (``checked_to``) move in the last batch only.
        """
        now = self.clock()
        reinforced = self.flush_usage()
        policies = self.policies()
        storage = self._res.storage
        holds = storage.fetch("legal_holds", {"active": 1})
        expired, held = self._due(storage.due_to_expire(now, self.max_per_kind), holds)
        decayed, held2, marks = self._decayed(policies, now, holds)
        capped, held3 = self._capacity(policies, holds, set(expired) | set(decayed))
        todo: dict[str, str] = {}
        for reason, group in (("expired", expired), ("decayed", decayed),
                              ("capacity", capped)):
            for mid in group:
                todo.setdefault(mid, reason)
        queue = sorted(todo.items(), key=lambda t: (_ORDER[t[1]], t[0]))
        archived: list[tuple[str, str]] = []
        held_now: set[str] = set(held) | set(held2) | set(held3)
        seq = None
        step = max(1, int(self.batch_size))
        for start in range(0, max(len(queue), 1), step):
            chunk = queue[start:start + step]
            last = start + step >= len(queue)
            if not chunk and not marks:
                break
            with storage.write(actor) as w:
                done, kept, event_seq = self._archive(w, actor, now, chunk,
                                                      marks if last else [])
            archived += done
            held_now |= kept
            seq = event_seq if event_seq is not None else seq
        by = {r: tuple(m for m, why in archived if why == r)
              for r in ("expired", "decayed", "capacity")}
        files: dict[str, Any] = {}
        if storage.meta(PURGE_PENDING) == "1":  # an erasure's purge left unfinished
            files = storage.purge()
            storage.set_meta(PURGE_PENDING, "1" if purge_busy(files) else "0")
        return MaintenanceReport(by["expired"], by["decayed"], by["capacity"],
                                 tuple(sorted(held_now)), reinforced, seq, now, files)

    def _archive(self, w: WriteTx, actor: str, now: int, chunk: Sequence[tuple[str, str]],
                 marks: Sequence[Effect]) -> tuple[list[tuple[str, str]], set[str], int | None]:
        """One batch: archive the memories of ``chunk`` that are still live and not held."""
        holds = w.fetch("legal_holds", {"active": 1})
        current = {r["id"]: r for r in w.fetch(
            "memories", {"id": [m for m, _ in chunk], "tx_to": None})} if chunk else {}
        closes: list[Effect] = []
        opens: list[Effect] = []
        archived: list[tuple[str, str, int]] = []
        carry: list[tuple[str, int, int]] = []
        held: set[str] = set()
        for mid, reason in chunk:
            cur = current.get(mid)
            if cur is None or cur["status"] not in ("active", "quarantined"):
                continue  # another run got there first
            if hold_for(holds, cur["namespace"]):
                held.add(mid)  # a hold set since the candidates were read
                continue
            new, (close, insert) = next_version(w, cur, {"status": "archived"})
            closes.append(close)
            opens.append(insert)
            archived.append((mid, reason, int(new["version"])))
            carry.append((mid, int(cur["version"]), int(new["version"])))
        # Every close before every insert: the closes are one statement (same values).
        effects = [*marks, *closes, *opens]
        if not effects:
            return [], held, None
        event = self._res.commit(
            w, "lifecycle.maintained", actor, None, None, effects,
            {"now": now, "archived": [[m, r] for m, r, _ in archived]}, carry=carry)
        return [(m, r) for m, r, _ in archived], held, event.seq

    def _due(self, rows: Sequence[Mapping[str, Any]], holds: Sequence[Mapping[str, Any]]
             ) -> tuple[list[str], list[str]]:
        due: list[str] = []
        held: list[str] = []
        for r in rows:
            (held if hold_for(holds, r["namespace"]) else due).append(r["id"])
        return due, held

    def _decayed(self, policies: Sequence[LifecyclePolicy], now: int,
                 holds: Sequence[Mapping[str, Any]]
                 ) -> tuple[list[str], list[str], list[Effect]]:
        storage = self._res.storage
        due: list[str] = []
        held: list[str] = []
        marks: list[Effect] = []
        for p in policies:
            horizon = p.horizon()
            if horizon is None:
                continue
            key = {"pattern": p.pattern, "layer": p.layer}
            row = storage.fetch("lifecycle_policies", key)
            after = int(row[0]["checked_to"] or 0) if row else 0
            until = now - horizon
            if until <= after:
                continue
            # A window larger than one read: the cursor stops at the last time read
            # (with every row of that same time: one transaction's rows share it), so
            # the next run carries on from there (resumable, nothing skipped).
            reach = until
            recorded, reach = _page(storage.recorded_between, "recorded_at", after, reach,
                                    self.max_per_kind)
            used_rows, reach = _page(storage.used_between, "last_used", after, reach,
                                     self.max_per_kind)
            recorded = [r for r in recorded if int(r["recorded_at"]) <= reach]
            cands = {r["id"]: r for r in recorded}
            users = [u["id"] for u in used_rows if u["id"] not in cands]
            for i in range(0, len(users), 1000):
                for cur in storage.fetch("memories", {"id": users[i:i + 1000], "tx_to": None}):
                    cands[cur["id"]] = cur
            used: dict[str, int] = {}
            ids = sorted(cands)
            for i in range(0, len(ids), 1000):
                used.update({r["id"]: int(r["last_used"]) for r in storage.fetch(
                    "memory_usage", {"id": ids[i:i + 1000]})})
            for mid, r in cands.items():
                eff = policy_for(policies, r["namespace"], r["layer"])
                if eff is None or eff.horizon() != horizon or r["status"] != "active":
                    continue
                last = max(int(r["recorded_at"]), used.get(mid, 0))
                # Due exactly when relevance reaches the floor: compared in integer
                # time, not floats, so "due" and the scanned window agree.
                if last + horizon > now:
                    continue
                (held if hold_for(holds, r["namespace"]) else due).append(mid)
            marks.append(Update("lifecycle_policies", key, {"checked_to": reach}))
        return due, held, marks

    def _capacity(self, policies: Sequence[LifecyclePolicy],
                  holds: Sequence[Mapping[str, Any]], leaving: set[str]
                  ) -> tuple[list[str], list[str]]:
        """Namespaces over a capacity policy: only those written since this process's
        previous run under the same policies and holds (every one on a first run)."""
        capped = [p for p in policies if p.capacity is not None]
        if not capped:
            return [], []
        storage = self._res.storage
        due: list[str] = []
        held: list[str] = []
        now = self.clock()
        # A changed policy or legal hold can put an untouched namespace over: check all.
        shape = (tuple(sorted((p.pattern, p.layer, p.capacity or 0) for p in capped)),
                 tuple(sorted(str(h["pattern"]) for h in holds)))
        head = storage.head().tx
        seen = self._capacity_seen
        spaces = (storage.namespaces_since(seen[1]) if seen is not None and seen[0] == shape
                  else storage.namespaces())
        for ns in spaces:
            rows = None
            for layer in sorted({p.layer for p in capped}):
                eff = policy_for(policies, ns, layer if layer != ALL_LAYERS else "semantic")
                if eff is None or eff.capacity is None:
                    continue
                if rows is None:
                    rows = [r for r in storage.fetch("memories", {
                        "namespace": ns, "tx_to": None, "status": "active"})
                            if r["id"] not in leaving]
                live = [r for r in rows if layer == ALL_LAYERS or r["layer"] == layer]
                extra = len(live) - eff.capacity
                if extra <= 0:
                    continue
                if hold_for(holds, ns):
                    held += [r["id"] for r in live[:extra]]
                    continue
                live.sort(key=lambda r: (relevance(int(r["recorded_at"]), now, eff.half_life)
                                         * float(r["importance"]), r["recorded_at"]))
                due += [r["id"] for r in live[:extra]]
        self._capacity_seen = (shape, head)
        return due, held

    # -- restore -----------------------------------------------------------------------

    def restore(self, actor: str, memory_id: str) -> Any:
        with self._res.storage.write(actor) as w:
            cur = w.fetch("memories", {"id": memory_id, "tx_to": None})
            if not cur:
                raise NotFound(f"memory {memory_id!r} not found", id=memory_id)
            if cur[0]["status"] != "archived":
                raise InvalidInput(f"memory {memory_id!r} is {cur[0]['status']}, not archived; "
                                   "only an archived memory can be restored", field="id")
            changes: dict[str, Any] = {"status": "active"}
            if cur[0].get("expires_at") is not None and cur[0]["expires_at"] <= self.clock():
                changes["expires_at"] = None  # or the next maintain would expire it again
            new, eff = next_version(w, cur[0], changes)
            self._res.commit(w, "memory.restored", actor, cur[0]["namespace"], memory_id, eff,
                             carry=[(memory_id, int(cur[0]["version"]), int(new["version"]))])
        return memory_from_row(new)

    def check_not_held(self, namespace: str) -> None:
        hold = hold_for(self._res.storage.fetch("legal_holds", {"active": 1}), namespace)
        if hold is not None:
            raise LegalHoldActive(f"a legal hold on {hold['pattern']!r} covers {namespace!r}",
                                  pattern=hold["pattern"])



def as_micros(value: datetime | int | None) -> int | None:
    if value is None or isinstance(value, int):
        return value
    return to_micros(value.astimezone(UTC))
