"""Principals, API keys and grants: the admin surface (``db.admin``).

Keys are shown once and stored only as a SHA-256 of their random secret
(256 bits of entropy make a slow hash unnecessary). Every change here is a
logged event like any memory write, so ``knowledge(agent, at=T)`` can later
reconstruct which grants an agent held at any transaction time.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Sequence
from typing import Any

from engramdb._guard import guard_and_trace
from engramdb.codec import check_chars, new_id, sha256_hex
from engramdb.engine.read_audit import READ_AUDIT_MODES
from engramdb.engine.rows import check_name, grant_from_row
from engramdb.engine.stewardship import Stewardship
from engramdb.errors import ConflictError, InvalidInput, NotFound, Unauthenticated
from engramdb.model import ACTIONS, Grant, Principal, check_glob
from engramdb.storage.base import Effect, Insert, Update

__all__ = ["Admin"]

KINDS = ("agent", "service", "person", "admin")


def _split_key(api_key: str) -> tuple[str, str]:
    parts = api_key.split("_") if isinstance(api_key, str) else []
    if len(parts) != 3 or parts[0] != "ek" or not parts[1] or not parts[2]:
        raise Unauthenticated("API key is malformed; keys look like ek_<id>_<secret>")
    return parts[1], parts[2]


@guard_and_trace
class Admin(Stewardship):
    """Administration of principals, keys and grants; available to admins only.

    The trust half (predicate schemas, namespace settings, retiring agents,
    quarantine and rollback) comes from :class:`Stewardship`.
    """

    def _log(self, w: Any, kind: str, subject_ref: str, effects: list[Any],
             extra: dict[str, Any] | None = None) -> None:
        self._commit(w, kind, None, subject_ref, effects, extra)

    def _new_key(self, w: Any, name: str) -> tuple[str, Insert]:
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32).replace("_", "-")
        row = {"key_id": key_id, "principal": name, "secret_hash": sha256_hex(secret.encode()),
               "created_tx": w.tx, "revoked_tx": None, "expires_at": None}
        return f"ek_{key_id}_{secret}", Insert("api_keys", row)

    def create_agent(self, name: str, *, roles: Sequence[str] = (), trust: float = 0.5,
                     kind: str = "agent") -> str:
        """Create a principal and return its first API key (shown only this once).

        Raises:
            Conflict: a principal with that name exists.
            InvalidInput: malformed name, role, kind or trust.
        """
        check_name(name)
        if isinstance(roles, str) or not isinstance(roles, (list, tuple, set, frozenset)):
            raise InvalidInput("roles must be a list of role names", field="roles")
        roles = tuple(check_name(r, "role") for r in roles)
        if kind not in KINDS:
            raise InvalidInput(f"kind must be one of {', '.join(KINDS)}", field="kind")
        if isinstance(trust, bool) or not isinstance(trust, (int, float)) or not 0 <= trust <= 1:
            raise InvalidInput("trust must be a number between 0 and 1", field="trust")
        with self._res.storage.write(self._actor) as w:
            if w.fetch("principals", {"name": name}):
                raise ConflictError(f"principal {name!r} already exists; pick another name",
                               name=name)
            key, key_effect = self._new_key(w, name)
            row = {"name": name, "kind": kind, "roles": list(roles), "trust": float(trust),
                   "status": "active", "created_tx": w.tx, "metadata": {}}
            self._log(w, "principal.created", name, [Insert("principals", row), key_effect])
        return key

    def principal(self, name: str) -> Principal:
        check_name(name)
        rows = self._res.storage.fetch("principals", {"name": name})
        if not rows:
            raise NotFound(f"no principal {name!r}", name=name,
                           fix={"action": "create_agent", "name": name})
        r = rows[0]
        return Principal(name=r["name"], kind=r["kind"], roles=tuple(r["roles"]),
                         trust=float(r["trust"]), status=r["status"],
                         created_tx=int(r["created_tx"]))

    def agents(self) -> list[Principal]:
        return [self.principal(r["name"]) for r in self._res.storage.fetch("principals", {},
                                                                          order_by="name")]

    def has_key(self, name: str) -> bool:
        """Whether principal ``name`` holds an API key that is not revoked."""
        check_name(name)
        return bool(self._res.storage.fetch("api_keys", {"principal": name, "revoked_tx": None},
                                            limit=1))

    def create_key(self, name: str) -> str:
        """Issue another API key for a principal (rotation: create, switch, revoke old)."""
        check_name(name)
        with self._res.storage.write(self._actor) as w:
            if not w.fetch("principals", {"name": name}):
                raise NotFound(f"no principal {name!r}", name=name)
            key, effect = self._new_key(w, name)
            self._log(w, "key.created", name, [effect])
        return key

    def revoke_key(self, api_key_or_id: str) -> None:
        """Revoke a key (by the key itself or its id); it stops working at once."""
        if not isinstance(api_key_or_id, str) or not api_key_or_id:
            raise InvalidInput("give the API key or its id (a string)", field="api_key_or_id")
        check_chars(api_key_or_id, "key id")
        key_id = api_key_or_id
        if isinstance(api_key_or_id, str) and api_key_or_id.startswith("ek_"):
            key_id = _split_key(api_key_or_id)[0]
        with self._res.storage.write(self._actor) as w:
            rows = w.fetch("api_keys", {"key_id": key_id, "revoked_tx": None})
            if not rows:
                raise NotFound(f"no active key {key_id!r}", key_id=key_id)
            self._log(w, "key.revoked", rows[0]["principal"], [
                Update("api_keys", {"key_id": key_id}, {"revoked_tx": w.tx},
                       expect={"revoked_tx": None})])

    def authenticate(self, api_key: str) -> str:
        """The principal name an API key belongs to.

        Raises:
            Unauthenticated: malformed, unknown, revoked key or inactive principal.
        """
        key_id, secret = _split_key(api_key)
        rows = self._res.storage.fetch("api_keys", {"key_id": key_id})
        ok = bool(rows) and hmac.compare_digest(rows[0]["secret_hash"],
                                                sha256_hex(secret.encode()))
        if not ok or rows[0]["revoked_tx"] is not None:
            raise Unauthenticated("API key is unknown or revoked; ask an admin for a new key")
        name = str(rows[0]["principal"])
        p = self._res.storage.fetch("principals", {"name": name})
        if not p or p[0]["status"] != "active":
            raise Unauthenticated(f"principal {name!r} is not active")
        return name

    def grant(self, grantee: str, pattern: str, actions: Sequence[str]) -> Grant:
        """Allow ``actions`` on namespaces matching ``pattern`` to a principal or ``role:<r>``.

        Raises:
            NotFound: the grantee principal does not exist.
            InvalidNamespace: malformed glob.
            InvalidInput: unknown action.
        """
        if not isinstance(grantee, str):
            raise InvalidInput("grantee must be a principal name or 'role:<role>'",
                               field="grantee")
        check_glob(pattern)
        if isinstance(actions, str):
            actions = [actions]
        if not isinstance(actions, (list, tuple, set, frozenset)):
            raise InvalidInput(f"actions must be a list of {list(ACTIONS)}", field="actions")
        bad = [a for a in actions if not isinstance(a, str) or a not in ACTIONS]
        if bad or not actions:
            raise InvalidInput(f"actions must be a non-empty subset of {list(ACTIONS)}",
                               field="actions")
        if grantee.startswith("role:"):
            check_name(grantee[5:], "role")
        else:
            check_name(grantee)
        with self._res.storage.write(self._actor) as w:
            if not grantee.startswith("role:") and not w.fetch("principals", {"name": grantee}):
                raise NotFound(f"no principal {grantee!r}; create it before granting",
                               name=grantee)
            row: dict[str, Any] = {
                "id": new_id(), "grantee": grantee, "pattern": pattern,
                "actions": sorted(set(actions)), "granted_by": self._actor,
                "tx_from": w.tx, "tx_to": None}
            self._log(w, "grant.created", grantee, [Insert("grants", row)])
        return Grant(id=row["id"], grantee=grantee, pattern=pattern,
                     actions=tuple(row["actions"]), granted_by=row["granted_by"],
                     tx_from=row["tx_from"])

    def revoke(self, grant_id: str) -> None:
        """End a grant; reads and writes through it stop at once (history keeps it)."""
        if not isinstance(grant_id, str) or not grant_id:
            raise InvalidInput("grant id must be a non-empty string", field="grant_id")
        check_chars(grant_id, "grant id")
        with self._res.storage.write(self._actor) as w:
            rows = w.fetch("grants", {"id": grant_id, "tx_to": None})
            if not rows:
                raise NotFound(f"no active grant {grant_id!r}", grant_id=grant_id)
            self._log(w, "grant.revoked", rows[0]["grantee"], [
                Update("grants", {"id": grant_id}, {"tx_to": w.tx}, expect={"tx_to": None})])

    def grants(self, grantee: str | None = None) -> list[Grant]:
        where: dict[str, Any] = {"tx_to": None}
        if grantee is not None and not isinstance(grantee, str):
            raise InvalidInput("grantee must be a principal name or 'role:<role>'",
                               field="grantee")
        if grantee is not None:
            where["grantee"] = grantee
        return [grant_from_row(r)
                for r in self._res.storage.fetch("grants", where, order_by="tx_from")]

    # -- read-audit settings -----------------------------------------------------------

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
        with self._res.storage.write(self._actor) as w:
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
            self._commit(w, "settings.changed", None, pattern, [eff])
        self._res.read_audit.invalidate()

    # -- lifecycle (engine/lifecycle.py) ---------------------------------------------------

    def set_lifecycle(self, pattern: str, *, layer: str | None = None, ttl: Any = None,
                      half_life: Any = None, archive_below: float | None = None,
                      capacity: int | None = None, on_retire: str | None = None
                      ) -> dict[str, Any]:
        """Declare the lifecycle of memories in namespaces matching ``pattern`` (a logged
        admin action; setting it again replaces it).

        Args:
            pattern: a namespace glob.
            layer: one layer, or ``None`` for every layer.
            ttl: new memories expire this long after they are written (``"30d"``,
                seconds, or a ``timedelta``); ``remember(expires_at=...)`` overrides it.
            half_life: relevance halves every this long without use (recall and
                decisions reinforce it); ranking weighs hits by it.
            archive_below: archive a memory once its relevance drops below this (0..1).
            capacity: keep at most this many live memories per namespace, archiving
                the lowest-scoring first.
            on_retire: ``keep``, ``archive`` or ``erase``: noted for retire_agent.

        Returns:
            The stored policy as a dict (durations in microseconds).

        Raises:
            InvalidPolicy: negative or zero durations, an out-of-range value.
            InvalidNamespace: malformed glob.
        """
        fields = {"ttl": ttl, "half_life": half_life, "archive_below": archive_below,
                  "capacity": capacity, "on_retire": on_retire}
        return self._lifecycle.set_policy(self._actor, pattern, layer, fields).to_dict()

    def lifecycle(self, namespace: str, *, layer: str | None = None) -> dict[str, Any] | None:
        """The lifecycle policy in force for one namespace (and layer), or ``None``."""
        found = self._lifecycle.policy(namespace, layer)
        return None if found is None else found.to_dict()

    def legal_hold(self, pattern: str, on: bool = True, *, reason: str) -> dict[str, Any]:
        """Place (``on=True``) or lift a legal hold on namespaces matching ``pattern``:
        while on, erasure, expiry and archival there are refused (``LegalHoldActive``)
        or skipped (``maintain`` reports them as ``held``). Logged with the reason.

        Raises:
            InvalidInput: no reason. NotFound: lifting a hold that does not exist.
        """
        return self._lifecycle.legal_hold(self._actor, pattern, on, reason)
