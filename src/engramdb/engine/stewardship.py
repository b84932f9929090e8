"""Administration of trust: schemas, namespace settings, principals' lives, rollback.

The admin surface (``db.admin``) delegates here for everything issue-3 adds
beyond keys and grants: predicate declarations, namespace settings (trust
floor, free-text detection, default policy, authority ranking), changing a
principal's trust or roles, retiring it, listing quarantined memories and
rolling back everything one principal wrote. Every change is effects plus a
logged event, like any memory write, so ``verify`` and ``import`` replay it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from engramdb._guard import guard_and_trace
from engramdb.codec import new_id, to_micros
from engramdb.engine._commit import next_version
from engramdb.engine.access import Caller
from engramdb.engine.resources import Resources
from engramdb.engine.rows import check_name, memory_from_row
from engramdb.engine.trust import TrustEngine
from engramdb.errors import InvalidInput, InvalidPolicy, NotFound
from engramdb.model import (
    Memory,
    Principal,
    RecallFilter,
    check_glob,
    check_namespace,
    namespace_matches,
    to_utc,
)
from engramdb.policy.acl import private_namespace
from engramdb.policy.conflicts import (
    NamespaceSettings,
    PredicateSchema,
    check_settings,
    make_schema,
    resolve_schema,
    resolve_settings,
)
from engramdb.storage.base import Effect, Insert, Update, WriteTx

__all__ = ["RETIRE_POLICIES", "Stewardship"]

RETIRE_POLICIES = ("freeze", "transfer", "archive", "erase")
# What a rollback restores: everything a version says, but not where it lives.
_CONTENT = ("layer", "text", "subject", "predicate", "value", "metadata", "importance",
            "confidence", "author", "source", "session", "valid_from", "valid_to", "status",
            "expires_at")


def _principal(r: dict[str, Any]) -> Principal:
    return Principal(name=r["name"], kind=r["kind"], roles=tuple(r["roles"]),
                     trust=float(r["trust"]), status=r["status"], created_tx=int(r["created_tx"]))


def _schema_row(r: dict[str, Any]) -> PredicateSchema:
    return PredicateSchema(pattern=r["pattern"], predicate=r["predicate"],
                           cardinality=r["cardinality"], value_type=r.get("value_type") or "any",
                           merge=r.get("merge"), policy=r["policy"], declared=True, id=r["id"],
                           tx_from=int(r["tx_from"]))


@guard_and_trace
class Stewardship:
    """The trust half of ``db.admin``; every method acts as the database's admin."""

    def __init__(self, res: Resources, trust: TrustEngine, caller: Caller, *,
                 lifecycle: Any = None, erasure: Any = None) -> None:
        self._res = res
        self._trust = trust
        self._caller = caller
        # The lifecycle and erasure services (engine/lifecycle.py, engine/erasure.py).
        self._lifecycle = lifecycle
        self._erasure = erasure

    @property
    def _actor(self) -> str:
        return self._caller.name

    def _commit(self, w: WriteTx, kind: str, namespace: str | None, subject_ref: str,
                effects: Sequence[Effect], extra: dict[str, Any] | None = None, *,
                carry: Sequence[tuple[str, int, int]] = ()) -> None:
        self._res.commit(w, kind, self._actor, namespace, subject_ref, effects, extra,
                         carry=carry)

    # -- predicate schemas ------------------------------------------------------

    def declare_predicate(self, pattern: str, predicate: str, *, cardinality: str = "one",
                          value_type: str | None = None, merge: str | None = None,
                          policy: str | None = None) -> PredicateSchema:
        """Declare how ``predicate`` behaves in namespaces matching ``pattern``.

        A declaration replaces an earlier one for the same pattern and
        predicate; it applies to writes from now on, not to stored memories.

        Raises:
            InvalidPolicy: unknown policy or merge kind, or an unworkable combination.
            InvalidNamespace: malformed glob.
            InvalidInput: malformed predicate, cardinality or value type.
        """
        schema = make_schema(pattern, predicate, cardinality=cardinality,
                             value_type=value_type, merge=merge, policy=policy)
        with self._res.storage.write(self._actor) as w:
            effects: list[Effect] = [
                Update("predicate_schemas", {"id": r["id"]}, {"tx_to": w.tx},
                       expect={"tx_to": None})
                for r in w.fetch("predicate_schemas", {"pattern": pattern,
                                                       "predicate": predicate, "tx_to": None})]
            row = {"id": new_id(), "pattern": pattern, "predicate": predicate,
                   "cardinality": schema.cardinality, "value_type": schema.value_type,
                   "merge": schema.merge, "policy": schema.policy, "tx_from": w.tx,
                   "tx_to": None}
            effects.append(Insert("predicate_schemas", row))
            self._commit(w, "predicate.declared", None, predicate, effects)
        return _schema_row(row)

    def undeclare_predicate(self, pattern: str, predicate: str) -> None:
        """End a declaration; the defaults (or a broader declaration) apply again.

        Raises:
            NotFound: nothing is declared for that pattern and predicate.
        """
        check_glob(pattern)
        with self._res.storage.write(self._actor) as w:
            rows = w.fetch("predicate_schemas", {"pattern": pattern, "predicate": predicate,
                                                 "tx_to": None})
            if not rows:
                raise NotFound(f"no declaration of {predicate!r} on {pattern!r}",
                               pattern=pattern, predicate=predicate)
            self._commit(w, "predicate.undeclared", None, predicate, [
                Update("predicate_schemas", {"id": r["id"]}, {"tx_to": w.tx},
                       expect={"tx_to": None}) for r in rows])

    def predicates(self, namespace: str | None = None) -> list[PredicateSchema]:
        """Current declarations, those applying to ``namespace`` if given."""
        rows = self._res.storage.fetch("predicate_schemas", {"tx_to": None}, order_by="tx_from")
        if namespace is not None:
            check_namespace(namespace)
            rows = [r for r in rows if namespace_matches(r["pattern"], namespace)]
        return [_schema_row(r) for r in rows]

    def schema_for(self, namespace: str, predicate: str) -> PredicateSchema:
        """The schema that governs ``predicate`` in ``namespace`` (defaults if undeclared)."""
        check_namespace(namespace)
        settings = self.settings_for(namespace)
        rows = self._res.storage.fetch("predicate_schemas",
                                      {"predicate": predicate, "tx_to": None})
        return resolve_schema(rows, namespace, predicate, settings.default_policy)

    # -- namespace settings ---------------------------------------------------------

    def configure_namespace(self, pattern: str, **settings: Any) -> dict[str, Any]:
        """Set trust settings on namespaces matching ``pattern`` (``None`` removes a key).

        Keys: ``trust_floor``, ``detect_free_text``, ``default_policy``,
        ``authority``, ``free_text_candidates``, ``judge_min_confidence``.
        A more specific pattern's value wins over a broader one's.

        Returns:
            The settings now stored for ``pattern`` itself.

        Raises:
            InvalidInput: unknown key or bad value.
            InvalidPolicy: unknown ``default_policy``.
        """
        check_glob(pattern)
        clean = check_settings(settings)
        if not clean:
            raise InvalidInput("configure_namespace needs at least one setting")
        with self._res.storage.write(self._actor) as w:
            rows = w.fetch("namespace_settings", {"pattern": pattern})
            merged = {**(rows[0]["settings"] if rows else {}), **clean}
            merged = {k: v for k, v in merged.items() if v is not None}
            if rows:
                effect: Effect = Update("namespace_settings", {"pattern": pattern},
                                        {"settings": merged, "tx": w.tx})
            else:
                effect = Insert("namespace_settings", {"pattern": pattern, "settings": merged,
                                                       "tx": w.tx})
            self._commit(w, "namespace.configured", None, pattern, [effect])
        return merged

    def settings_for(self, namespace: str) -> NamespaceSettings:
        """The settings in force for one concrete namespace."""
        check_namespace(namespace)
        return resolve_settings(self._res.storage.fetch("namespace_settings", {}), namespace)

    # -- principals ---------------------------------------------------------------------

    def _principal_row(self, w: WriteTx, name: str) -> dict[str, Any]:
        check_name(name)
        rows = w.fetch("principals", {"name": name})
        if not rows:
            raise NotFound(f"no principal {name!r}", name=name,
                           fix={"action": "create_agent", "name": name})
        return rows[0]

    def update_agent(self, name: str, *, trust: float | None = None,
                     roles: Sequence[str] | None = None) -> Principal:
        """Change a principal's trust level or roles (a logged event; takes effect at once).

        Raises:
            NotFound: no such principal.
            InvalidInput: bad trust or role, nothing to change, or the admin itself.
        """
        changes: dict[str, Any] = {}
        if trust is not None:
            if isinstance(trust, bool) or not isinstance(trust, (int, float)) \
                    or not 0 <= trust <= 1:
                raise InvalidInput("trust must be a number between 0 and 1", field="trust")
            changes["trust"] = float(trust)
        if roles is not None:
            if isinstance(roles, str) or not isinstance(roles, (list, tuple, set, frozenset)):
                raise InvalidInput("roles must be a list of role names", field="roles")
            changes["roles"] = sorted({check_name(r, "role") for r in roles})
        if not changes:
            raise InvalidInput("update_agent needs trust= or roles=")
        with self._res.storage.write(self._actor) as w:
            row = self._principal_row(w, name)
            if row["kind"] == "admin":
                raise InvalidInput("the admin principal's trust and roles are fixed")
            self._commit(w, "principal.updated", None, name, [
                Update("principals", {"name": name}, changes)])
        return _principal({**row, **changes})

    def reactivate_agent(self, name: str) -> Principal:
        """Let a frozen principal act again (its old keys stay revoked: issue a new one).

        Raises:
            NotFound: no such principal.
            InvalidInput: the principal is not frozen.
        """
        with self._res.storage.write(self._actor) as w:
            row = self._principal_row(w, name)
            if row["status"] != "frozen":
                raise InvalidInput(f"principal {name!r} is {row['status']}, not frozen; only "
                                   "frozen principals can be reactivated")
            self._commit(w, "principal.reactivated", None, name, [
                Update("principals", {"name": name}, {"status": "active"},
                       expect={"status": "frozen"})])
        return _principal({**row, "status": "active"})

    def retire_agent(self, name: str, policy: str = "freeze", *,
                     successor: str | None = None) -> Principal:
        """Stop a principal acting; nothing it wrote is silently deleted.

        Policies:
            ``freeze``: keys revoked, status ``frozen``; its grants and memories
                stay (reversible with :meth:`reactivate_agent`).
            ``transfer``: keys and grants revoked, status ``retired``;
                ``successor`` gets read, write and admin on its private namespace.
            ``archive``: keys and grants revoked, status ``retired``; the
                memories of its private namespace become ``archived`` (kept,
                hidden from default reads). What it wrote into shared
                namespaces stays: others may rely on it.
            ``erase``: as ``archive``, but the memories of its private namespace are
                erased (``db.forget(namespace='agents/<name>/**')``: every version,
                index and file), first, so a legal hold refuses it before anything
                changes.

        Raises:
            InvalidPolicy: unknown policy, or ``erase``.
            NotFound: no such principal (or successor).
            InvalidInput: the admin, an already retired principal, or a missing successor.
        """
        if policy not in RETIRE_POLICIES:
            raise InvalidPolicy(f"unknown retire policy {policy!r}; use one of "
                                f"{', '.join(RETIRE_POLICIES)}", policy=str(policy))
        if policy == "transfer" and not successor:
            raise InvalidInput("retire_agent(policy='transfer') needs successor=<principal>",
                               field="successor")
        if policy != "transfer" and successor is not None:
            raise InvalidInput("successor= only goes with policy='transfer'", field="successor")
        if policy == "erase":
            row = self._res.principal_row(name)
            if row is None:
                raise NotFound(f"no principal {name!r}", name=name)
            if row["kind"] == "admin" or row["status"] == "retired":
                raise InvalidInput(f"principal {name!r} cannot be retired (admin or retired)")
            own = private_namespace(name)
            if any(namespace_matches(f"{own}/**", ns) for ns in self._res.storage.namespaces()):
                self._erasure.forget(self._caller, {"namespace": f"{own}/**"},
                                     f"principal {name} retired with policy 'erase'")
        with self._res.storage.write(self._actor) as w:
            row = self._principal_row(w, name)
            if row["kind"] == "admin":
                raise InvalidInput("the admin principal cannot be retired")
            if row["status"] == "retired":
                raise InvalidInput(f"principal {name!r} is already retired")
            effects: list[Effect] = [
                Update("api_keys", {"key_id": k["key_id"]}, {"revoked_tx": w.tx},
                       expect={"revoked_tx": None})
                for k in w.fetch("api_keys", {"principal": name, "revoked_tx": None})]
            status = "frozen" if policy == "freeze" else "retired"
            if policy != "freeze":
                effects += [Update("grants", {"id": g["id"]}, {"tx_to": w.tx},
                                   expect={"tx_to": None})
                            for g in w.fetch("grants", {"grantee": name, "tx_to": None})]
            if policy == "transfer":
                heir = self._principal_row(w, str(successor))
                if heir["name"] == name or heir["status"] != "active":
                    raise InvalidInput("the successor must be another, active principal",
                                       field="successor")
                effects.append(Insert("grants", {
                    "id": new_id(), "grantee": heir["name"],
                    "pattern": f"{private_namespace(name)}/**",
                    "actions": ["admin", "read", "write"], "granted_by": self._actor,
                    "tx_from": w.tx, "tx_to": None}))
            meta = {**(row.get("metadata") or {}),
                    "retired": {"policy": policy, "successor": successor, "tx": w.tx}}
            effects.append(Update("principals", {"name": name},
                                  {"status": status, "metadata": meta}))
            self._commit(w, "principal.retired", None, name, effects,
                   {"policy": policy, "successor": successor})
            if policy == "archive":
                self._archive_private(w, name)
        return _principal({**row, "status": status})

    def _archive_private(self, w: WriteTx, name: str) -> None:
        own = private_namespace(name)
        spaces = [ns for ns in self._res.storage.namespaces()
                  if namespace_matches(f"{own}/**", ns)]
        for ns in spaces:
            effects: list[Effect] = []
            copies = []
            for cur in w.fetch("memories", {"namespace": ns, "tx_to": None,
                                            "status": ["active", "quarantined"]}):
                new, eff = next_version(w, cur, {"status": "archived"})
                effects += eff
                copies.append((cur["id"], int(cur["version"]), int(new["version"])))
            if effects:
                self._commit(w, "memory.archived", ns, name, effects,
                             {"reason": f"principal {name} retired with policy 'archive'"},
                             carry=copies)

    # -- quarantine and rollback --------------------------------------------------------

    def approve(self, memory_id: str, *, reason: str | None = None) -> Memory:
        """Release a quarantined memory (a logged event); it is then checked for
        conflicts and merged exactly as if its author wrote it now.

        Raises:
            NotFound: no such memory.
            InvalidInput: the memory is not quarantined.
            ContradictionError: the namespace's ``reject`` policy refuses it.
        """
        if reason is not None and (not isinstance(reason, str) or len(reason) > 2000):
            raise InvalidInput("reason must be a string of at most 2000 characters")
        return self._trust.approve(self._caller, memory_id, reason)

    def quarantined(self, namespace: str = "**", limit: int = 100) -> list[Memory]:
        """Quarantined memories waiting for :meth:`approve` (newest first)."""
        check_glob(namespace)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise InvalidInput("limit must be an integer from 1 to 10000", field="limit")
        spaces = tuple(ns for ns in self._res.storage.namespaces()
                       if namespace_matches(namespace, ns))
        if not spaces:
            return []
        rows = self._res.storage.list_memories(
            RecallFilter(namespaces=spaces, statuses=("quarantined",)), limit=limit)
        memories = [memory_from_row(r) for r in rows]
        self._res.read_audit.record_read(self._caller.name, "quarantined", memories)
        return memories

    def rollback_author(self, name: str, since: int | datetime | str) -> list[Memory]:
        """Undo everything ``name`` wrote since a transaction number or a time.

        Each memory the principal created since then is retracted; each
        memory it changed (an update, a retraction, a policy outcome its write
        caused, a conflict it resolved) gets a new version restoring the last
        version before its first change. Every new version is logged with
        reason ``rollback``; the rolled-back versions stay in history, so the
        rollback itself can be undone by updating back.

        Returns:
            The new versions written (empty if there was nothing to undo).

        Raises:
            NotFound: no such principal.
            InvalidInput: ``since`` is not a transaction number or a time.
        """
        if isinstance(since, bool) or since is None:
            raise InvalidInput("since must be a transaction number or a time", field="since")
        if isinstance(since, int):
            if since < 0:
                raise InvalidInput("since must be a non-negative transaction number")
            since_tx = since
        else:
            when = to_micros(to_utc(since, what="since"))
            since_tx = self._res.storage.tx_at(int(when or 0) - 1) + 1
        out: list[Memory] = []
        with self._res.storage.write(self._actor) as w:
            self._principal_row(w, name)
            touched, resolved = self._touched_by(name, since_tx)
            by_space: dict[str, list[Effect]] = defaultdict(list)
            copies: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
            undone: dict[str, list[str]] = defaultdict(list)
            for memory_id, first_tx in touched.items():
                versions = w.fetch("memories", {"id": memory_id}, order_by="version")
                current = [v for v in versions if v["tx_to"] is None]
                if not current:
                    continue
                cur = current[0]
                before = [v for v in versions if int(v["tx_from"]) < first_tx]
                if not before:
                    if cur["status"] in ("retracted", "erased"):
                        continue
                    valid_to = cur["valid_to"]
                    if valid_to is None or valid_to > w.recorded_at:
                        valid_to = max(w.recorded_at, int(cur["valid_from"]) + 1)
                    changes = {"status": "retracted", "valid_to": valid_to}
                    source = cur
                else:
                    source = before[-1]
                    changes = {k: source[k] for k in _CONTENT}
                    if all(cur[k] == changes[k] for k in _CONTENT):
                        continue
                new, eff = next_version(w, cur, changes)
                by_space[cur["namespace"]] += eff
                undone[cur["namespace"]].append(memory_id)
                if new["text"] == source["text"]:
                    copies[cur["namespace"]].append(
                        (memory_id, int(source["version"]), int(new["version"])))
                out.append(memory_from_row(new))
            for ns, effects in sorted(by_space.items()):
                effects += self._trust.close_conflicts(
                    w, undone[ns], ns, self._actor, f"rollback of {name} since tx {since_tx}")
                self._commit(w, "author.rolled_back", ns, name, effects,
                             {"author": name, "since_tx": since_tx, "reason": "rollback"},
                             carry=copies[ns])
            self._reopen(w, name, resolved, since_tx)
        return out

    def _reopen(self, w: WriteTx, name: str, conflict_ids: Sequence[str], since_tx: int
                ) -> None:
        """Conflicts the principal resolved are open again once its resolution is undone."""
        by_space: dict[str, list[Effect]] = defaultdict(list)
        for cid in conflict_ids:
            rows = w.fetch("conflicts", {"id": cid, "status": "resolved", "resolved_by": name})
            if rows:
                by_space[rows[0]["namespace"]].append(Update("conflicts", {"id": cid}, {
                    "status": "open", "winner": None, "resolution": None, "resolved_by": None,
                    "resolved_tx": None}))
        for ns, effects in sorted(by_space.items()):
            self._commit(w, "author.rolled_back", ns, name, effects,
                   {"author": name, "since_tx": since_tx, "reason": "rollback"})

    def _touched_by(self, name: str, since_tx: int) -> tuple[dict[str, int], list[str]]:
        """What the principal's events changed from ``since_tx`` on.

        Returns the memory ids with the first transaction that touched each,
        and the conflicts it resolved. Every logged transaction has at least
        one event, so the events of transaction ``t`` have ``seq >= t``:
        scanning from ``seq > since_tx - 1`` misses nothing.
        """
        touched: dict[str, int] = {}
        resolved: list[str] = []
        after = max(since_tx - 1, 0)
        while True:
            batch = self._res.storage.events(after=after, limit=2000)
            if not batch:
                return touched, resolved
            for ev in batch:
                after = ev.seq
                if ev.tx < since_tx or ev.actor != name or ev.payload is None:
                    continue
                for eff in json.loads(ev.payload).get("effects", []):
                    if eff.get("table") == "conflicts" and eff["op"] == "update" \
                            and eff["changes"].get("resolved_by") == name:
                        resolved.append(str(eff["key"]["id"]))
                    if eff.get("table") != "memories":
                        continue
                    mid = eff["row"]["id"] if eff["op"] == "insert" else eff["key"]["id"]
                    touched.setdefault(str(mid), ev.tx)
