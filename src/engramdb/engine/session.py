"""A principal's view of the database: every read and write, attributed.

:class:`Session` is the public API of DESIGN.md bound to one principal.
``Database`` is the session of the embedded opener (the admin); agents get
theirs from ``db.as_agent(name)`` and are checked exactly like remote
callers. Writes take the storage's serialised write transaction, apply
effects and log them in that same transaction; reads resolve the principal's
grants into the namespace list that every index query is filtered by.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from engramdb.codec import canonical, check_chars, check_json, new_id, sha256_hex, to_micros
from engramdb.engine.audit import AuditSession, mark_stale
from engramdb.engine.rows import (
    _short,
    _unit,
    check_embedding,
    check_idempotency_key,
    check_metadata,
    check_text,
    check_validity,
    draft_to_row,
    memory_from_row,
    validate_draft,
)
from engramdb.engine.trust import BatchItem, FreeTextBatch
from engramdb.errors import (
    IdempotencyKeyReused,
    InvalidInput,
    NotFound,
    PermissionDenied,
    VersionConflict,
)
from engramdb.model import (
    LAYERS,
    STATUSES,
    Conflict,
    Event,
    Hit,
    Memory,
    MemoryDraft,
    RecallFilter,
    RecallResult,
    Receipt,
    ReceiptItem,
    check_glob,
    check_layer,
    namespace_matches,
    to_utc,
)
from engramdb.policy.acl import AccessControl, grantees_of
from engramdb.retrieval.rank import fuse
from engramdb.storage.base import Insert, Update, WriteTx, effect_to_dict

if TYPE_CHECKING:
    from engramdb.engine.database import Database
    from engramdb.model_layers import ProcedureInfo, Recommendation, ToolStats

__all__ = ["PrincipalInfo", "Session", "Transaction"]

T = TypeVar("T")
_UNSET: Any = object()
_WRITABLE = ("active", "quarantined")


@dataclass(frozen=True, slots=True)
class PrincipalInfo:
    name: str
    roles: tuple[str, ...] = ()
    trust: float = 0.5
    is_admin: bool = False


def _request_hash(kind: str, payload: Mapping[str, Any]) -> str:
    return sha256_hex(canonical({"kind": kind, **payload}))


# Integers go into 64-bit SQL columns; a larger one is refused as input, not
# left to overflow in the driver.
MAX_INT64 = 2**63 - 1


def check_id(memory_id: Any, what: str = "memory id") -> str:
    """A memory (or other object) id: a non-empty, storable string."""
    if not isinstance(memory_id, str) or not memory_id:
        raise InvalidInput(f"{what} must be a non-empty string", field="id")
    return check_chars(memory_id, what)


def check_count(value: Any, what: str) -> int:
    """A non-negative integer that fits a 64-bit column (a seq, tx or version)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT64:
        raise InvalidInput(f"{what} must be an integer from 0 to {MAX_INT64}", field=what)
    return value


def _check_write_args(memory_id: Any, expected_version: Any, idempotency_key: Any) -> None:
    """What update and retract take besides their changes, checked before any lock."""
    check_id(memory_id)
    if expected_version is not None:
        check_count(expected_version, "expected_version")
    check_idempotency_key(idempotency_key)


def _check_reason(reason: Any) -> None:
    if reason is not None and (not isinstance(reason, str) or len(reason) > 2000):
        raise InvalidInput("reason must be a string of at most 2000 characters", field="reason")
    if reason is not None:
        check_chars(reason, "reason")


class _Writer:
    """Write operations inside one open storage transaction."""

    def __init__(self, session: Session, w: WriteTx) -> None:
        self.s = session
        self.w = w
        # Namespaces this transaction may write in, as checked once. Exact while
        # it is open: grants and principals change only in write transactions,
        # and none can commit while this one holds the lock.
        self._may_write: set[str] = set()

    # idempotency -------------------------------------------------------------

    def _replay(self, key: str | None, request_hash: str) -> Memory | None:
        if key is None:
            return None
        rows = self.w.fetch("idempotency", {"principal": self.s.principal.name, "key": key})
        if not rows:
            return None
        if rows[0]["request_hash"] != request_hash:
            raise IdempotencyKeyReused(
                f"idempotency key {key!r} was already used for a different request; "
                "use a new key for a new request",
                key=key,
            )
        result = rows[0]["result"]
        found = self.w.fetch("memories", {"id": result["id"], "version": result["version"]})
        # As of the original write: the retry sees what the first call saw.
        return memory_from_row(found[0], as_of=rows[0]["tx"]) if found else None

    def _remember_idempotency(self, key: str | None, request_hash: str, m: Mapping[str, Any]
                              ) -> list[Insert]:
        if key is None:
            return []
        return [Insert("idempotency", {
            "principal": self.s.principal.name, "key": key, "request_hash": request_hash,
            "result": {"id": m["id"], "version": m["version"]}, "tx": self.w.tx,
        })]

    def _commit(self, kind: str, namespace: str, subject_ref: str, effects: list[Any],
                extra: Mapping[str, Any] | None = None) -> Event:
        self.w.apply(effects)
        payload = {"effects": [effect_to_dict(e) for e in effects], **(extra or {})}
        event = self.w.log(kind, actor=self.s.principal.name, namespace=namespace,
                           subject_ref=subject_ref, payload=payload)
        mark_stale(self.w, effects, self.s.principal.name)
        return event

    # operations ----------------------------------------------------------------

    def remember(self, draft: MemoryDraft, vector: np.ndarray | None,
                 item: BatchItem | None = None) -> Memory:
        s = self.s
        if draft.namespace not in self._may_write:
            s._require("write", draft.namespace)
            self._may_write.add(draft.namespace)
        # The request hash only matters with a key (it detects a key's reuse).
        rhash = ("" if draft.idempotency_key is None
                 else _request_hash("remember", _draft_fingerprint(draft)))
        replayed = self._replay(draft.idempotency_key, rhash)
        if replayed is not None:
            return replayed
        row = draft_to_row(draft, memory_id=new_id(), author=s.principal.name, tx=self.w.tx,
                           recorded_at=self.w.recorded_at)
        if row["valid_to"] is not None and row["valid_to"] <= row["valid_from"]:
            raise InvalidInput("valid_to must be later than valid_from (which defaults to now)",
                               field="valid_to")
        # Trust decides what the write becomes: quarantined, merged, or checked
        # against current memories under the namespace's conflict policy.
        plan = s._db._trust.plan_remember(self, row, vector, item)
        row = plan.row
        effects: list[Any] = list(plan.effects)
        effects += self._remember_idempotency(draft.idempotency_key, rhash, row)
        self._commit("memory.remembered", draft.namespace, row["id"], effects)
        if vector is not None:
            self.w.put_vectors([(row["id"], row["version"], vector)])
        return plan.memory()

    def remember_many(self, drafts: Sequence[MemoryDraft], vectors: Sequence[np.ndarray | None],
                      batch: FreeTextBatch | None) -> list[Memory]:
        """Remember each draft in order, with free-text candidates ``batch`` found for all."""
        if batch is None:
            return [self.remember(d, v) for d, v in zip(drafts, vectors, strict=True)]
        self.s._db._trust.settle_batch(self.w, batch)
        return [self.remember(d, v, BatchItem(batch, i))
                for i, (d, v) in enumerate(zip(drafts, vectors, strict=True))]

    def _current(self, memory_id: str, action: str) -> dict[str, Any]:
        if not isinstance(memory_id, str) or not memory_id:
            raise InvalidInput("memory id must be a non-empty string", field="id")
        rows = self.w.fetch("memories", {"id": memory_id, "tx_to": None})
        if not rows or not self.s._acl().check("read", rows[0]["namespace"]):
            raise NotFound(f"no memory {memory_id!r}; check the id (or your read grant)",
                           id=memory_id)
        row = rows[0]
        self.s._require(action, row["namespace"])
        return row

    def _new_version(self, cur: dict[str, Any], changes: Mapping[str, Any], kind: str,
                     expected_version: int | None, extra: Mapping[str, Any] | None,
                     vector: np.ndarray | None, idempotency_key: str | None,
                     rhash: str) -> Memory:
        if expected_version is not None and int(expected_version) != int(cur["version"]):
            raise VersionConflict(
                f"memory {cur['id']} is at version {cur['version']}, not {expected_version}; "
                "re-read it, reapply your change and retry",
                id=cur["id"],
                current_version=int(cur["version"]),
                expected_version=int(expected_version),
            )
        new = {**cur, **changes, "version": cur["version"] + 1, "tx_from": self.w.tx,
               "tx_to": None, "recorded_at": self.w.recorded_at,
               "author": self.s.principal.name}
        if new["valid_to"] is not None and new["valid_to"] <= new["valid_from"]:
            raise InvalidInput("valid_to must be later than valid_from", field="valid_to")
        plan = self.s._db._trust.plan_version(self, cur, new, kind, vector)
        new = plan.row
        effects: list[Any] = [
            Update("memories", {"id": cur["id"], "version": cur["version"]},
                   {"tx_to": self.w.tx}, expect={"tx_to": None}),
            *plan.effects,
        ]
        effects += self._remember_idempotency(idempotency_key, rhash, new)
        self._commit(kind, cur["namespace"], cur["id"], effects, extra)
        if vector is not None:
            self.w.put_vectors([(new["id"], new["version"], vector)])
        elif new["text"] == cur["text"]:
            self.s._db._copy_vector(self.w, cur["id"], cur["version"], new["version"])
        return plan.memory()

    def update(self, memory_id: str, changes: Mapping[str, Any], expected_version: int | None,
               vector: np.ndarray | None, idempotency_key: str | None) -> Memory:
        rhash = _request_hash("update", {"id": memory_id, "expected": expected_version,
                                         "changes": changes})
        replayed = self._replay(idempotency_key, rhash)
        if replayed is not None:
            return replayed
        cur = self._current(memory_id, "write")
        if cur["status"] not in _WRITABLE:
            raise InvalidInput(
                f"memory {memory_id} is {cur['status']} and cannot be updated; "
                "remember a new memory instead",
                id=memory_id,
                status=cur["status"],
            )
        return self._new_version(cur, changes, "memory.updated", expected_version, None,
                                 vector, idempotency_key, rhash)

    def retract(self, memory_id: str, reason: str | None, expected_version: int | None,
                idempotency_key: str | None) -> Memory:
        rhash = _request_hash("retract", {"id": memory_id, "reason": reason,
                                          "expected": expected_version})
        replayed = self._replay(idempotency_key, rhash)
        if replayed is not None:
            return replayed
        cur = self._current(memory_id, "write")
        if cur["status"] == "retracted":
            raise InvalidInput(f"memory {memory_id} is already retracted", id=memory_id)
        valid_to = cur["valid_to"]
        if valid_to is None or valid_to > self.w.recorded_at:
            valid_to = max(self.w.recorded_at, cur["valid_from"] + 1)
        changes = {"status": "retracted", "valid_to": valid_to}
        return self._new_version(cur, changes, "memory.retracted", expected_version,
                                 {"reason": reason}, None, idempotency_key, rhash)


def _draft_fingerprint(draft: MemoryDraft) -> dict[str, Any]:
    return {
        "text": draft.text, "namespace": draft.namespace, "layer": draft.layer,
        "subject": draft.subject, "predicate": draft.predicate, "value": draft.value,
        "metadata": dict(draft.metadata), "importance": draft.importance,
        "confidence": draft.confidence, "source": draft.source, "session": draft.session,
        "valid_from": to_micros(draft.valid_from), "valid_to": to_micros(draft.valid_to),
    }


class Session(AuditSession):
    """The database as seen and changed by one principal."""

    def __init__(self, db: Database, principal: PrincipalInfo) -> None:
        self._db = db
        self._principal = principal

    @property
    def principal(self) -> PrincipalInfo:
        return self._principal

    # -- access ------------------------------------------------------------------

    def _acl(self, as_of: int | None = None) -> AccessControl:
        p = self._principal
        if p.is_admin:
            return AccessControl(p.name, [], is_admin=True)
        # Status, roles and trust may have changed since this session began.
        p = self._db._trust.live_principal(p)
        return AccessControl(p.name, self._db._grants_for(p, as_of))

    def _require(self, action: str, namespace: str) -> None:
        decision = self._acl().check(action, namespace)
        if not decision.allow:
            raise PermissionDenied(
                f"{self._principal.name!r} may not {action} in {namespace!r}; ask an admin "
                f"for a grant (db.admin.grant({self._principal.name!r}, {namespace!r}, "
                f"[{action!r}]))",
                action=action,
                namespace=namespace,
            )

    def _readable(self, pattern: str, as_of: int | None) -> tuple[str, ...]:
        check_glob(pattern)
        acl = self._acl(as_of)
        return tuple(
            ns for ns in self._db.storage.namespaces()
            if namespace_matches(pattern, ns) and acl.check("read", ns).allow
        )

    def _as_of(self, as_of: int | datetime | str | None) -> int | None:
        if as_of is None:
            return None
        if isinstance(as_of, bool):
            raise InvalidInput("as_of must be a transaction number or a time")
        if isinstance(as_of, int):
            if not 0 <= as_of <= MAX_INT64:
                raise InvalidInput(f"as_of must be a transaction number from 0 to {MAX_INT64} "
                                   "or a time", field="as_of")
            return as_of
        when = to_utc(as_of, what="as_of")
        return self._db.storage.tx_at(to_micros(when))

    # -- writes ------------------------------------------------------------------

    def _write(self, fn: Callable[[_Writer], T]) -> T:
        with self._db.storage.write(self._principal.name) as w:
            return fn(_Writer(self, w))

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
        draft = self._draft(
            text=text, namespace=namespace, layer=layer, subject=subject, predicate=predicate,
            value=value, metadata=metadata, importance=importance, confidence=confidence,
            source=source, session=session, valid_from=valid_from, valid_to=valid_to,
            expires_at=expires_at, embedding=embedding, idempotency_key=idempotency_key,
        )
        vectors = self._db._vectors_for([draft])
        return self._write(lambda wr: wr.remember(draft, vectors[0]))

    def _draft(self, **fields: Any) -> MemoryDraft:
        if fields.get("namespace") is None:
            fields["namespace"] = f"agents/{self._principal.name}"
        try:
            # A given embedding (list, tuple or array) becomes a read-only float32
            # array in validate_draft: the form it is searched and stored in.
            draft = MemoryDraft(**fields)
        except TypeError as exc:
            raise InvalidInput(f"unexpected memory field: {exc}") from exc
        return validate_draft(draft, self._db.config, self._db.dimension)

    def remember_many(self, drafts: Sequence[MemoryDraft | Mapping[str, Any]]) -> list[Memory]:
        """Store many memories in one transaction (all or nothing).

        Each item is a :class:`MemoryDraft` or a dict of :meth:`remember` arguments.
        Embeddings are computed in batches before the write lock is taken.
        """
        if len(drafts) > self._db.config.max_batch:
            raise InvalidInput(
                f"batch of {len(drafts)} is over the limit of {self._db.config.max_batch}; "
                "split it"
            )
        clean: list[MemoryDraft] = []
        for item in drafts:
            if isinstance(item, MemoryDraft):
                fields = {f: getattr(item, f) for f in MemoryDraft.__slots__}
            elif isinstance(item, Mapping):
                fields = dict(item)
            else:
                raise InvalidInput("each batch item must be a MemoryDraft or a dict")
            clean.append(self._draft(**fields))
        vectors = self._db._vectors_for(clean)
        # Free-text rival candidates are searched before the lock is taken, and
        # brought up to date under it (only rows committed since are searched).
        batch = self._db._trust.prepare_batch(clean, vectors)
        return self._write(lambda wr: wr.remember_many(clean, vectors, batch))

    def _update_changes(self, text: Any, fields: Mapping[str, Any]) -> dict[str, Any]:
        cfg = self._db.config
        changes: dict[str, Any] = {}
        if text is not _UNSET:
            changes["text"] = check_text(text, cfg)
        for name in ("metadata", "importance", "confidence", "value", "valid_from", "valid_to",
                     "layer", "source", "expires_at"):
            if fields.get(name, _UNSET) is _UNSET:
                continue
            v = fields[name]
            if name == "metadata":
                changes[name] = check_metadata(v, cfg)
            elif name in ("importance", "confidence"):
                changes[name] = _unit(v, name)
            elif name == "layer":
                changes[name] = check_layer(v)
            elif name == "source":
                changes[name] = _short(v, "source")  # None removes it
            elif name in ("valid_from", "valid_to", "expires_at"):
                t = to_utc(v, what=name)
                if name == "valid_from" and t is None:
                    raise InvalidInput("valid_from cannot be removed", field="valid_from")
                changes[name] = to_micros(t)
            elif name == "value":
                changes[name] = check_json(v, what="value")
            else:
                changes[name] = v
        if "valid_from" in changes or "valid_to" in changes:
            check_validity(fields.get("valid_from"), fields.get("valid_to"))
        if not changes:
            raise InvalidInput("update needs at least one field to change (text, metadata, ...)")
        return changes

    def update(
        self,
        memory_id: str,
        *,
        text: Any = _UNSET,
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
                ``valid_from``, ``valid_to``, ``layer``, ``source``, ``expires_at``.

        Raises:
            VersionConflict: ``expected_version`` is not current (nothing written);
                ``err.current_version`` says what is.
            NotFound: no such memory, or one you may not read.
        """
        unknown = set(fields) - {"metadata", "importance", "confidence", "value", "valid_from",
                                 "valid_to", "layer", "source", "expires_at"}
        if unknown:
            raise InvalidInput(f"update cannot change {sorted(unknown)}; namespace, subject and "
                               "predicate are fixed for a memory's life")
        _check_write_args(memory_id, expected_version, idempotency_key)
        changes = self._update_changes(text, fields)
        vector = None
        if "text" in changes:
            vector = self._db._vectors_for([changes["text"]])[0]
        return self._write(lambda wr: wr.update(memory_id, changes, expected_version, vector,
                                                idempotency_key))

    def retract(self, memory_id: str, *, reason: str | None = None,
                expected_version: int | None = None,
                idempotency_key: str | None = None) -> Memory:
        """End a memory's validity: a new version with status ``retracted``.

        History keeps every earlier version; default reads stop returning it.
        """
        _check_reason(reason)
        _check_write_args(memory_id, expected_version, idempotency_key)
        return self._write(lambda wr: wr.retract(memory_id, reason, expected_version,
                                                 idempotency_key))

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """All-or-nothing writes: every call inside commits together or not at all."""
        with self._db.storage.write(self._principal.name) as w:
            tx = Transaction(self, _Writer(self, w))
            yield tx
            tx._closed = True

    # -- reads ---------------------------------------------------------------------

    def _visible_rows(self, memory_id: str, as_of: int | None) -> list[dict[str, Any]]:
        check_id(memory_id)
        rows = self._db.storage.fetch("memories", {"id": memory_id}, order_by="version")
        if as_of is not None:
            rows = [r for r in rows if r["tx_from"] <= as_of]
        if not rows or not self._acl(as_of).check("read", rows[0]["namespace"]):
            raise NotFound(f"no memory {memory_id!r}; check the id (or your read grant)",
                           id=memory_id)
        return rows

    def get(self, memory_id: str, *, as_of: int | datetime | str | None = None,
            valid_at: datetime | str | None = None) -> Memory:
        """The version of a memory current at ``as_of`` (default: now).

        Raises:
            NotFound: unknown id, not yet written at ``as_of``, not valid at
                ``valid_at``, or not readable by this principal.
        """
        t = self._as_of(as_of)
        rows = self._visible_rows(memory_id, t)
        row = rows[-1]
        if t is not None:
            live = [r for r in rows if r["tx_to"] is None or r["tx_to"] > t]
            row = live[-1]
        va = to_utc(valid_at, what="valid_at")
        if va is not None:
            v = to_micros(va)
            if not (row["valid_from"] <= v and (row["valid_to"] is None or row["valid_to"] > v)):
                raise NotFound(f"memory {memory_id!r} is not valid at {va.isoformat()}",
                               id=memory_id)
        return memory_from_row(row, as_of=t)

    def history(self, memory_id: str, *, as_of: int | datetime | str | None = None
                ) -> list[Memory]:
        """Every version of a memory, oldest first, with times and authors."""
        t = self._as_of(as_of)
        return [memory_from_row(r, as_of=t) for r in self._visible_rows(memory_id, t)]

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
                the full-text side.

        Returns:
            :class:`RecallResult` with scored hits (``why`` holds the score
            parts) and a :class:`Receipt` of the exact versions returned.
        """
        if not isinstance(query, str) or not query.strip():
            raise InvalidInput("query must be a non-empty string")
        check_chars(query, "query")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self._db.config.max_k:
            raise InvalidInput(f"k must be an integer from 1 to {self._db.config.max_k}")
        qv = check_embedding(query_embedding, self._db.dimension)
        t = self._as_of(as_of)
        flt = self._filter(namespace, layers, t, valid_at, filters)
        result = self._db._recall(self, query, flt, k, t, query_embedding=qv)
        self._db.read_audit.record(self._principal.name, result.receipt, result.memories)
        return result

    def _filter(self, namespace: str, layers: Sequence[str] | None, as_of: int | None,
                valid_at: Any, filters: Mapping[str, Any] | None) -> RecallFilter:
        f = dict(filters or {})
        allowed = {"author", "authors", "subject", "predicate", "session", "metadata",
                   "recorded_after", "recorded_before", "valid_after", "valid_before",
                   "statuses", "include_superseded"}
        unknown = set(f) - allowed
        if unknown:
            raise InvalidInput(f"unknown filters {sorted(unknown)}; use {sorted(allowed)}")
        if layers is not None:
            layers = tuple(check_layer(x) for x in _names(layers, "layers", LAYERS))
        authors = f.get("authors")
        if authors is not None:
            authors = tuple(_short(a, "author") for a in _names(authors, "authors"))
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
        statuses = tuple(_names(statuses, "statuses", STATUSES))
        unknown_status = [x for x in statuses if x not in STATUSES]
        if unknown_status or not statuses:
            raise InvalidInput(f"filters['statuses'] must be a non-empty list of "
                               f"{', '.join(STATUSES)}", field="statuses")
        include = f.get("include_superseded")
        if include is not None and not isinstance(include, bool):
            raise InvalidInput("filters['include_superseded'] must be true or false",
                               field="include_superseded")
        return RecallFilter(
            namespaces=self._readable(namespace, as_of),
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

    def namespaces(self, pattern: str = "**") -> list[str]:
        """The namespaces matching ``pattern`` that hold memories and that you may read."""
        return sorted(self._readable(pattern, None))

    def recent(self, *, namespace: str = "**", k: int = 20,
               layers: Sequence[str] | None = None) -> list[Memory]:
        """The ``k`` most recently written current memories you may read, newest first.

        A browse without a query (what the MCP namespace resources show);
        namespaces you may not read contribute nothing, like empty ones.
        """
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self._db.config.max_k:
            raise InvalidInput(f"k must be an integer from 1 to {self._db.config.max_k}")
        flt = self._filter(namespace, layers, None, None, None)
        if not flt.namespaces:
            return []
        rows = self._db.storage.list_memories(flt, limit=k, order="recent")
        return [memory_from_row(r) for r in rows]

    def conflicts(self, namespace: str = "**", *, status: str | None = "open",
                  limit: int = 100) -> list[Conflict]:
        """The conflict inbox: conflicts in namespaces you may read, oldest first.

        Args:
            namespace: a glob; only namespaces you may read contribute.
            status: ``"open"`` (default), ``"resolved"``, or ``None`` for both.
            limit: at most this many.
        """
        return self._db._trust.conflicts(self, namespace, status, limit)

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
        _check_reason(reason)
        return self._db._trust.resolve(self, conflict_id, winner, reason)

    def changes(self, since: int = 0, *, namespace: str = "**", limit: int = 1000
                ) -> Iterator[Event]:
        """Log events after cursor ``since`` (a seq) that this principal may read.

        Events without a namespace (principals, keys, grants, settings) reach
        an admin only when following every namespace (``namespace="**"``).
        """
        check_glob(namespace)
        check_count(since, "since")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidInput("limit must be a positive integer", field="limit")
        every = namespace == "**"
        acl = self._acl()
        cursor = since
        while True:
            batch = self._db.storage.events(after=cursor, limit=min(limit, 1000))
            if not batch:
                return
            for raw in batch:
                cursor = raw.seq
                ns = raw.namespace
                if ns is None:
                    if not (self._principal.is_admin and every):
                        continue
                elif not (namespace_matches(namespace, ns) and acl.check("read", ns).allow):
                    continue
                yield self._db._event(raw)

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
        return self._db._layers.blocks.pin(self, name, text, session=session,
                                           namespace=namespace, limit_tokens=limit_tokens,
                                           expected_version=expected_version)

    def unpin(self, name: str, *, session: str | None = None, namespace: str | None = None,
              expected_version: int | None = None) -> Memory:
        """Remove a working block (its memory is retracted; history keeps it)."""
        return self._db._layers.blocks.unpin(self, name, session=session, namespace=namespace,
                                             expected_version=expected_version)

    def blocks(self, session: str | None = None, *, namespace: str | None = None
               ) -> list[Memory]:
        """The working blocks in force: agent-wide ones, plus ``session``'s when given.

        ``namespace`` (a glob, default ``agents/<you>``) reads shared or other
        agents' blocks where you hold a read grant.
        """
        return self._db._layers.blocks.blocks(self, session=session, namespace=namespace)

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
        return self._db._layers.episodes.episode(self, session, role, content, at=at,
                                                 metadata=metadata, namespace=namespace)

    def episodes(self, session: str | None = None, *, agent: str | None = None,
                 since: datetime | str | None = None, until: datetime | str | None = None,
                 limit: int = 100, namespace: str = "**") -> list[Memory]:
        """Episodes you may read, in the order they happened (the newest ``limit``).

        ``session`` answers "what happened in session S"; ``agent`` with
        ``since``/``until`` "what did agent A do between T1 and T2".
        """
        return self._db._layers.episodes.episodes(self, session, agent=agent, since=since,
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
        return self._db._layers.episodes.summarize(self, session, namespace=namespace,
                                                   method=method)

    def extract(self, session: str, *, namespace: str | None = None) -> list[Memory]:
        """Turn a session's episodes into assertions (needs an LLM), checked for conflicts.

        Raises:
            LLMNotConfigured: no LLM; the message says how to configure one.
            UpstreamError: the LLM failed or answered badly (nothing written).
        """
        return self._db._layers.episodes.extract(self, session, namespace=namespace)

    def tool_outcome(self, tool: str, ok: bool, *, latency_ms: float | None = None,
                     error: str | None = None, metadata: Mapping[str, Any] | None = None,
                     namespace: str | None = None) -> None:
        """Record one tool call's outcome (in ``agents/<you>`` unless ``namespace``).

        Batch many with ``with s.transaction() as tx: tx.tool_outcome(...)``.
        """
        self._db._layers.procedures.tool_outcome(self, tool, ok, latency_ms=latency_ms,
                                                 error=error, metadata=metadata,
                                                 namespace=namespace)

    def tool_stats(self, tool: str | None = None, *, since: datetime | str | None = None,
                   agent: str | None = None, namespace: str = "**") -> list[ToolStats]:
        """Per tool: calls, success and recency-weighted rates, latency p50/p95, errors.

        Counts the outcomes in namespaces you may read (``agent``: one agent's).
        """
        return self._db._layers.procedures.tool_stats(self, tool, since=since, agent=agent,
                                                      namespace=namespace)

    def procedure(self, name: str, text: str, *, namespace: str | None = None,
                  expected_version: int | None = None) -> Memory:
        """Write a new version of a named procedure (playbook, prompt snippet).

        Raises:
            VersionConflict: ``expected_version`` is not current (``0``: create only).
        """
        return self._db._layers.procedures.procedure(self, name, text, namespace=namespace,
                                                     expected_version=expected_version)

    def procedure_outcome(self, name: str, version: int, ok: bool, *,
                          namespace: str | None = None) -> None:
        """Record one use of a procedure version (the procedure in ``namespace``)."""
        self._db._layers.procedures.procedure_outcome(self, name, version, ok,
                                                      namespace=namespace)

    def procedures(self, namespace: str = "**") -> list[ProcedureInfo]:
        """Procedures you may read, with outcome statistics per version."""
        return self._db._layers.procedures.procedures(self, namespace=namespace)

    def recommend(self, task: str, k: int = 5, *, namespace: str = "**"
                  ) -> list[Recommendation]:
        """The procedure versions and tools most likely to succeed at ``task``, with evidence."""
        return self._db._layers.procedures.recommend(self, task, k=k, namespace=namespace)


class Transaction:
    """The write API inside ``with session.transaction() as tx:``."""

    def __init__(self, session: Session, writer: _Writer) -> None:
        self._s = session
        self._w = writer
        self._closed = False

    def _check(self) -> None:
        if self._closed:
            raise InvalidInput("this transaction has ended; open a new one")

    def remember(self, text: str, **fields: Any) -> Memory:
        self._check()
        draft = self._s._draft(text=text, **fields)
        vector = self._s._db._vectors_for([draft])[0]
        return self._w.remember(draft, vector)

    def update(self, memory_id: str, *, text: Any = _UNSET,
               expected_version: int | None = None, idempotency_key: str | None = None,
               **fields: Any) -> Memory:
        self._check()
        _check_write_args(memory_id, expected_version, idempotency_key)
        changes = self._s._update_changes(text, fields)
        vector = self._s._db._vectors_for([changes["text"]])[0] if "text" in changes else None
        return self._w.update(memory_id, changes, expected_version, vector, idempotency_key)

    def retract(self, memory_id: str, *, reason: str | None = None,
                expected_version: int | None = None,
                idempotency_key: str | None = None) -> Memory:
        self._check()
        _check_reason(reason)
        _check_write_args(memory_id, expected_version, idempotency_key)
        return self._w.retract(memory_id, reason, expected_version, idempotency_key)

    def tool_outcome(self, tool: str, ok: bool, *, latency_ms: float | None = None,
                     error: str | None = None, metadata: Mapping[str, Any] | None = None,
                     namespace: str | None = None) -> None:
        """Record a tool outcome in this transaction (the cheap way to write many)."""
        self._check()
        p = self._s._db._layers.procedures
        p.write_outcome(self._w, p.check_outcome(self._s, tool, ok, latency_ms, error,
                                                 metadata, namespace))

    def get(self, memory_id: str) -> Memory:
        self._check()
        rows = self._w.w.fetch("memories", {"id": memory_id, "tx_to": None})
        if not rows or not self._s._acl().check("read", rows[0]["namespace"]):
            raise NotFound(f"no memory {memory_id!r}", id=memory_id)
        return memory_from_row(rows[0])


def _names(value: Any, what: str, choices: Sequence[str] = ()) -> list[Any]:
    """A list argument of names: one string, or a list, tuple or set of them.

    Anything else (a dict, a generator, a number) is refused rather than iterated.
    """
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, tuple, set, frozenset)):
        hint = f" of {', '.join(choices)}" if choices else ""
        raise InvalidInput(f"{what} must be a list{hint}, not {type(value).__name__}",
                           field=what)
    return list(value)


def hits_from(scored: Sequence[Any], as_of: int | None) -> tuple[Hit, ...]:
    return tuple(
        Hit(memory=memory_from_row(s.row, as_of=as_of), score=s.score, why=s.why)
        for s in scored
    )


def receipt_for(hits: Sequence[Hit], as_of: int, valid_at: datetime | None, principal: str,
                query: str) -> Receipt:
    return Receipt(
        items=tuple(ReceiptItem(h.memory.id, h.memory.version) for h in hits),
        as_of=as_of,
        valid_at=valid_at,
        principal=principal,
        query_digest=sha256_hex(query.encode("utf-8")),
    )


_ = (fuse, replace, grantees_of)
