"""Access: who is calling, what they may do, and what their reads are filtered by.

A :class:`Caller` is one principal bound to the shared :class:`Resources`.
Every service asks it, never the storage, whether an action is allowed:
``acl`` resolves the principal's live grants (status, roles and trust may
have changed since the session began) into an
:class:`~engramdb.policy.acl.AccessControl`; ``readable`` and ``filter`` turn
a namespace glob and the recall arguments into the :class:`RecallFilter`
every index query is filtered by; ``as_of`` turns a time into a transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from engramdb.codec import check_json, to_micros
from engramdb.engine.resources import Resources
from engramdb.engine.rows import MAX_INT64, PrincipalInfo, _short, grant_from_row, names
from engramdb.errors import InvalidInput, PermissionDenied
from engramdb.model import (
    LAYERS,
    STATUSES,
    Grant,
    RecallFilter,
    check_glob,
    check_layer,
    to_utc,
)
from engramdb.policy.acl import AccessControl

__all__ = ["FILTER_KEYS", "Caller"]

FILTER_KEYS = frozenset({"author", "authors", "subject", "predicate", "session", "metadata",
                         "recorded_after", "recorded_before", "valid_after", "valid_before",
                         "statuses", "include_superseded"})


class Caller:
    """One principal's access to the database: grants, readable namespaces, filters."""

    def __init__(self, res: Resources, principal: PrincipalInfo) -> None:
        self.res = res
        self.principal = principal
        # (WriteTx.fixed_config, the AccessControl read under it): a prepared write's
        # grants, the same for every write of this caller until the configuration moves.
        self._fixed_acl: tuple[int, AccessControl] | None = None

    @property
    def name(self) -> str:
        return self.principal.name

    def live_principal(self) -> PrincipalInfo:
        """The principal as it is now (roles and trust may have changed since login).

        Raises:
            PermissionDenied: the principal was frozen, retired or removed.
        """
        p = self.principal
        r = self.res.principal_row(p.name)
        if r is None or r["status"] != "active":
            status = r["status"] if r else "unknown"
            raise PermissionDenied(
                f"principal {p.name!r} is {status} and can no longer act", principal=p.name,
                **({"fix": {"action": "reactivate_agent", "name": p.name}}
                   if status == "frozen" else {}))
        return replace(p, roles=tuple(r["roles"]), trust=float(r["trust"]),
                       is_admin=r["kind"] == "admin")

    def acl(self, as_of: int | None = None, fixed_config: int | None = None) -> AccessControl:
        """The grants in force now (or at ``as_of``). ``fixed_config``: read inside a
        write whose configuration is the committed one as of this number
        (``WriteTx.fixed_config``): the grants and principal read once under it are
        used again without a read (both are configuration, which cannot move under it)."""
        p = self.principal
        if p.is_admin:
            return AccessControl(p.name, [], is_admin=True)
        if fixed_config is not None and as_of is None:
            hit = self._fixed_acl
            if hit is not None and hit[0] == fixed_config:
                return hit[1]
        p = self.live_principal()
        acl = AccessControl(p.name, self.res.grants_for(p, as_of))
        if fixed_config is not None and as_of is None:
            self._fixed_acl = (fixed_config, acl)
        return acl

    def grants(self) -> list[Grant]:
        """The grants in force for this principal (to it and to its roles), oldest first."""
        rows = self.res.grants_for(self.live_principal(), None)
        return [grant_from_row(r) for r in sorted(rows, key=lambda r: (r["tx_from"], r["id"]))]

    def require(self, action: str, namespace: str, fixed_config: int | None = None) -> None:
        decision = self.acl(fixed_config=fixed_config).check(action, namespace)
        if not decision.allow:
            name = self.principal.name
            # The namespace (the caller's input) is in details, not in the message.
            raise PermissionDenied(
                f"{name!r} may not {action} in that namespace",
                action=action,
                namespace=namespace,
                fix={"action": "grant", "grantee": name, "pattern": namespace,
                     "actions": [action]},
            )

    def readable(self, pattern: str, as_of: int | None) -> tuple[str, ...]:
        check_glob(pattern)
        # Permission is the reader's grants now, whatever the read point:
        # revoking a grant ends access to history too (as_of only picks versions).
        return self.acl().readable(pattern, self.res.storage.namespaces())

    def scope(self, flt: RecallFilter, namespace: str) -> RecallFilter:
        """``flt`` limited to the namespaces matching ``namespace`` that this caller may
        read now."""
        return replace(flt, namespaces=self.readable(namespace, flt.as_of))

    def as_of(self, as_of: int | datetime | str | None) -> int | None:
        """A transaction number for ``as_of`` (a tx number, a time or None: now)."""
        if as_of is None:
            return None
        if isinstance(as_of, bool):
            raise InvalidInput("as_of must be a transaction number or a time")
        if isinstance(as_of, int):
            if not 0 <= as_of <= MAX_INT64:
                raise InvalidInput(f"as_of must be a transaction number from 0 to {MAX_INT64} "
                                   "or a time", field="as_of")
            return as_of
        when = to_micros(to_utc(as_of, what="as_of"))
        assert when is not None  # as_of was given
        return self.res.storage.tx_at(when)

    def filter(self, namespace: str, layers: Sequence[str] | None, as_of: int | None,
               valid_at: Any, filters: Mapping[str, Any] | None, *, resolve: bool = True
               ) -> RecallFilter:
        """The validated filter of a read, limited to the namespaces this caller may read.

        ``resolve=False``: validate only, and leave the namespaces empty (a filter
        that reads nothing) for :meth:`scope` to fill in later, e.g. inside the
        read's snapshot.
        """
        if resolve:
            return self.scope(self.filter(namespace, layers, as_of, valid_at, filters,
                                          resolve=False), namespace)
        if filters is not None and not isinstance(filters, Mapping):
            raise InvalidInput("filters must be a dict of filter name -> value",
                               field="filters")
        f = dict(filters or {})
        unknown = set(f) - FILTER_KEYS
        if unknown:
            raise InvalidInput(f"unknown filters {sorted(unknown)}; use {sorted(FILTER_KEYS)}")
        if layers is not None:
            layers = tuple(check_layer(x) for x in names(layers, "layers", LAYERS))
        authors = f.get("authors")
        if authors is not None:
            authors = tuple(_short(a, "author") for a in names(authors, "authors"))
        if f.get("author") is not None:
            authors = (_short(f["author"], "author"),)
        for name in ("subject", "predicate", "session"):
            _short(f.get(name), name)
        meta = f.get("metadata")
        if meta is None:
            meta = {}
        elif not isinstance(meta, Mapping):
            # Even a falsy non-dict (False, 0, "") is a mistake, not "no filter".
            raise InvalidInput("filters['metadata'] must be a dict of key -> value equalities",
                               field="metadata")
        meta = check_json(dict(meta), what="metadata")
        statuses = f.get("statuses")
        if statuses is None:  # not given: current, active memories only
            statuses = ("active",)
        statuses = tuple(names(statuses, "statuses", STATUSES))
        unknown_status = [x for x in statuses if x not in STATUSES]
        if unknown_status or not statuses:
            raise InvalidInput(f"filters['statuses'] must be a non-empty list of "
                               f"{', '.join(STATUSES)}", field="statuses")
        include = f.get("include_superseded")
        if include is not None and not isinstance(include, bool):
            raise InvalidInput("filters['include_superseded'] must be true or false",
                               field="include_superseded")
        check_glob(namespace)
        return RecallFilter(
            namespaces=(),
            layers=tuple(layers) if layers is not None else None,
            authors=tuple(authors) if authors is not None else None,
            statuses=tuple(statuses),
            as_of=as_of,
            valid_at=to_utc(valid_at, what="valid_at"),
            recorded_after=to_utc(f.get("recorded_after"), what="recorded_after"),
            recorded_before=to_utc(f.get("recorded_before"), what="recorded_before"),
            valid_after=to_utc(f.get("valid_after"), what="valid_after"),
            valid_before=to_utc(f.get("valid_before"), what="valid_before"),
            metadata=tuple(sorted(meta.items())),
            subject=f.get("subject"),
            predicate=f.get("predicate"),
            session=f.get("session"),
            include_superseded=bool(include),
        )
