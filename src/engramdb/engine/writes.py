"""Writes: memories remembered, updated and retracted inside one write transaction.

:class:`Writer` does the work of every memory write inside an open
:class:`~engramdb.storage.base.WriteTx`: it checks the write grant, replays
idempotent retries, lets :class:`~engramdb.engine.trust.TrustEngine` decide
what the write becomes, and hands the effects to the one commit path
(:meth:`Resources.commit`), which logs them, marks decisions stale and stores
or carries vectors. :class:`Transaction` is the public ``with
session.transaction() as tx:`` API over one writer. Input is validated here
(:func:`make_draft`, :func:`update_changes`) before any lock is taken.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from engramdb._guard import guard_calls
from engramdb.codec import canonical, check_json, new_id, new_ids, sha256_hex, to_micros
from engramdb.engine.access import Caller
from engramdb.engine.outcomes import check_outcome, write_outcomes
from engramdb.engine.plans import BatchItem, FreeTextBatch
from engramdb.engine.rows import (
    EngineConfig,
    _short,
    _unit,
    check_count,
    check_embedding,
    check_embeddings,
    check_id,
    check_idempotency_key,
    check_metadata,
    check_reason,
    check_text,
    check_validity,
    draft_to_row,
    memory_from_row,
    restamped,
    validate_fields,
)
from engramdb.engine.trust import _FREE_TEXT_LAYERS, TrustEngine
from engramdb.errors import (
    IdempotencyKeyReused,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    VersionConflict,
)
from engramdb.model import UNSET, Event, Memory, MemoryDraft, check_layer, to_utc
from engramdb.storage.base import Insert, Storage, Unprepared, Update, WriteTx

__all__ = ["UNSET", "UPDATABLE", "Transaction", "Writer", "batch_drafts", "check_write_args",
           "make_draft", "preparable", "update_changes", "write_prepared"]

T = TypeVar("T")

_UNSET = UNSET
_WRITABLE = ("active", "quarantined")
# Plain memories of a batch committed (applied and logged) together: a backend that
# sends rows as they are buffered then works on them while the next run is planned.
_HELD_RUN = 500
UPDATABLE = frozenset({"metadata", "importance", "confidence", "value", "valid_from",
                       "valid_to", "layer", "source", "expires_at"})


def _request_hash(kind: str, payload: Mapping[str, Any]) -> str:
    return sha256_hex(canonical({"kind": kind, **payload}))


def check_write_args(memory_id: Any, expected_version: Any, idempotency_key: Any) -> None:
    """What update and retract take besides their changes, checked before any lock."""
    check_id(memory_id)
    if expected_version is not None:
        check_count(expected_version, "expected_version")
    check_idempotency_key(idempotency_key)


def _draft_fingerprint(draft: MemoryDraft) -> dict[str, Any]:
    return {
        "text": draft.text, "namespace": draft.namespace, "layer": draft.layer,
        "subject": draft.subject, "predicate": draft.predicate, "value": draft.value,
        "metadata": dict(draft.metadata), "importance": draft.importance,
        "confidence": draft.confidence, "source": draft.source, "session": draft.session,
        "valid_from": to_micros(draft.valid_from), "valid_to": to_micros(draft.valid_to),
    }


def make_draft(caller: Caller, **fields: Any) -> MemoryDraft:
    """A validated draft for ``caller`` (default namespace: its private one)."""
    if fields.get("namespace") is None:
        fields["namespace"] = f"agents/{caller.name}"
    # A given embedding (list, tuple or array) becomes a read-only float32 array in
    # validate_fields: the form it is searched and stored in.
    return validate_fields(fields, caller.res.config, caller.res.dimension)


def batch_drafts(caller: Caller, drafts: Any, lifecycle: Any) -> list[MemoryDraft]:
    """The validated drafts of a ``remember_many`` batch, with the TTL in force.

    Each item is a :class:`MemoryDraft` or a dict of ``remember`` arguments;
    ``lifecycle`` (:class:`~engramdb.engine.lifecycle.Lifecycle`) gives the TTLs.
    """
    if not isinstance(drafts, (list, tuple)):
        raise InvalidInput(f"remember_many takes a list of drafts, not "
                           f"{type(drafts).__name__}; wrap an iterator in list(...)",
                           field="drafts")
    limit = caller.res.config.max_batch
    if len(drafts) > limit:
        raise InvalidInput(f"batch of {len(drafts)} is over the limit of {limit}; split it")
    given: list[dict[str, Any]] = []
    for item in drafts:
        if isinstance(item, MemoryDraft):
            given.append({f: getattr(item, f) for f in MemoryDraft.__slots__})
        elif isinstance(item, Mapping):
            given.append(dict(item))
        else:
            break  # refused below, once the items before it are checked
    # Precomputed embeddings (float32 rows of the database's dimension) are checked
    # and normalised as one matrix; any other batch is checked item by item.
    checked = (check_embeddings([f.get("embedding") for f in given], caller.res.dimension)
               if len(given) == len(drafts) else None)
    policies = lifecycle.policies()
    clean: list[MemoryDraft] = []
    config, dimension, private = caller.res.config, caller.res.dimension, f"agents/{caller.name}"
    for i, fields in enumerate(given):
        if fields.get("namespace") is None:  # make_draft's default
            fields["namespace"] = private
        draft = validate_fields(fields, config, dimension, None if checked is None else checked[i])
        clean.append(lifecycle.with_ttl(draft, policies) if policies else draft)
    if len(clean) < len(drafts):
        raise InvalidInput("each batch item must be a MemoryDraft or a dict")
    return clean


def update_changes(text: Any, fields: Mapping[str, Any], cfg: EngineConfig) -> dict[str, Any]:
    """The validated changes of an ``update`` (before any lock)."""
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


def prepare_update(caller: Caller, text: Any, fields: Mapping[str, Any]
                   ) -> tuple[dict[str, Any], np.ndarray | None]:
    """Validated changes and the new text's embedding: all an update's work before the lock.

    ``fields`` may hold ``embedding``: the new text already embedded with the
    database's embedder (validated like :meth:`Session.remember`'s).
    """
    fields = dict(fields)
    given = check_embedding(fields.pop("embedding", None), caller.res.dimension)
    unknown = set(fields) - UPDATABLE
    if unknown:
        raise InvalidInput(f"update cannot change {len(unknown)} of the fields given; it "
                           f"changes text, embedding, {', '.join(sorted(UPDATABLE))} "
                           "(namespace, subject and predicate are fixed for a memory's life)",
                           field="update")
    changes = update_changes(text, fields, caller.res.config)
    if given is not None and "text" not in changes:
        raise InvalidInput("an embedding goes with a new text; give text= too",
                           field="embedding")
    vector = given
    if "text" in changes and vector is None:
        vector = caller.res.vectors_for([changes["text"]])[0]
    return changes, vector


def preparable(draft: MemoryDraft) -> bool:
    """Whether a ``remember`` of ``draft`` is worth preparing (:func:`write_prepared`).

    Not with an idempotency key, an assertion or in a layer checked for free-text
    contradictions: those read current memories, so a prepared attempt would
    stop there and the write run under the lock anyway.
    """
    return (draft.idempotency_key is None and draft.predicate is None
            and draft.layer not in _FREE_TEXT_LAYERS)


def write_prepared(storage: Storage, actor: str, work: Callable[[WriteTx], T]) -> T:
    """Run ``work`` as a prepared write when the backend has them, else under the lock.

    A prepared write (:meth:`Storage.prepare`) does the work before the chain lock
    and is applied in one step; work it cannot do (reads of current memories, a
    compare-and-swap, a configuration change) raises :class:`Unprepared` before
    anything is written, and runs under the lock instead, as does a write whose
    configuration changed while it was prepared, once it has been tried again.
    A refusal (a permission, a policy) decided while preparing rests on
    configuration read before the lock, which may have changed: only the same
    work under the lock may refuse, so it runs there again.
    A write whose answer was lost on the way back (the connection dropped after
    it was sent) is never run again: it may have committed, and the caller is
    told its outcome is unknown (retry with the same ``idempotency_key``).
    The memories returned carry the transaction number the write got.
    """
    if storage.prepared_writes:
        for _ in range(3):
            w = None
            try:
                with storage.prepare(actor) as w:
                    result = work(w)
            except Unprepared as exc:
                if not exc.again:
                    break
                continue
            except Exception:  # decided on what may be stale: ask under the lock
                if getattr(w, "outcome_unknown", False):
                    # It reached the server and the answer was lost: it may have
                    # committed, so running it again could write it twice.
                    raise
                break
            if isinstance(result, Memory):
                return _stamped(result, w)  # type: ignore[return-value]
            if isinstance(result, list):
                return [_stamped(m, w) if isinstance(m, Memory) else m
                        for m in result]  # type: ignore[return-value]
            return result
    with storage.write(actor) as w:
        return work(w)


def _stamped(m: Memory, w: Any) -> Memory:
    """``m`` with the transaction number and time its prepared write got."""
    return restamped(m, w.stamp(m.tx_from), w.stamp_time(m.recorded_at),
                     w.stamp_time(m.valid_from))


def write_receipt(memory: Memory, draft: MemoryDraft) -> Memory:
    """What a writer without read access gets back: its write as it sent it.

    Id, version, transaction, time and author (the engine's), and the fields
    it gave; the status stays ``active`` and no conflicts are listed, whatever
    the namespace's policy did with rivals it may not see (docs/security.md).
    """
    return memory.replace(status="active", conflicts=(), valid_to=draft.valid_to)


class Writer:
    """Write operations inside one open storage transaction."""

    def __init__(self, caller: Caller, trust: TrustEngine, w: WriteTx) -> None:
        self.s = caller
        self.w = w
        self._res = caller.res
        self._trust = trust
        # Namespaces this transaction may write in, as checked once. Exact while
        # it is open: grants and principals change only in write transactions,
        # and none can commit while this one holds the lock.
        self._may_write: set[str] = set()
        self._readable: dict[str, bool] = {}

    def _may_read(self, namespace: str) -> bool:
        if namespace not in self._readable:
            self._readable[namespace] = bool(
                self.s.acl(fixed_config=self.w.fixed_config).check("read", namespace).allow)
        return self._readable[namespace]

    # idempotency -------------------------------------------------------------

    def _replay(self, key: str | None, request_hash: str) -> Memory | None:
        if key is None:
            return None
        rows = self.w.fetch("idempotency", {"principal": self.s.name, "key": key})
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
            "principal": self.s.name, "key": key, "request_hash": request_hash,
            "result": {"id": m["id"], "version": m["version"]}, "tx": self.w.tx,
        })]

    def _commit(self, kind: str, namespace: str, subject_ref: str, effects: list[Any],
                extra: Mapping[str, Any] | None = None, *,
                put: Sequence[tuple[str, int, np.ndarray]] = (),
                carry: Sequence[tuple[str, int, int]] = ()) -> Event:
        return self._res.commit(self.w, kind, self.s.name, namespace, subject_ref, effects,
                                extra, put=put, carry=carry)

    # operations ----------------------------------------------------------------

    def remember(self, draft: MemoryDraft, vector: np.ndarray | None,
                 item: BatchItem | None = None, memory_id: str | None = None) -> Memory:
        planned = self._plan_remember(draft, vector, item, memory_id)
        if isinstance(planned, Memory):
            return planned
        ref, effects, put, carry, memory = planned
        self._commit("memory.remembered", draft.namespace, ref, effects, put=put, carry=carry)
        return memory

    def _plan_remember(self, draft: MemoryDraft, vector: np.ndarray | None,
                       item: BatchItem | None, memory_id: str | None = None
                       ) -> Memory | tuple[str, list[Any], list[Any], tuple[Any, ...], Memory]:
        """What remembering ``draft`` writes: (the event's subject, effects, vectors put,
        vectors carried, the memory returned); or the memory an idempotent retry
        returns (nothing to write). ``memory_id``: the new memory's id (default: a new one)."""
        s = self.s
        if draft.namespace not in self._may_write:
            s.require("write", draft.namespace, self.w.fixed_config)
            self._may_write.add(draft.namespace)
        # The request hash only matters with a key (it detects a key's reuse).
        rhash = ("" if draft.idempotency_key is None
                 else _request_hash("remember", _draft_fingerprint(draft)))
        blind = not self._may_read(draft.namespace)
        replayed = None if draft.idempotency_key is None else self._replay(
            draft.idempotency_key, rhash)
        if replayed is not None:
            return write_receipt(replayed, draft) if blind else replayed
        row = draft_to_row(draft, memory_id=memory_id or new_id(), author=s.name, tx=self.w.tx,
                           recorded_at=self.w.recorded_at)
        if row["valid_to"] is not None and row["valid_to"] <= row["valid_from"]:
            raise InvalidInput("valid_to must be later than valid_from (which defaults to now)",
                               field="valid_to")
        # Trust decides what the write becomes: quarantined, merged, or checked
        # against current memories under the namespace's conflict policy.
        submitted = row
        plan = self._trust.plan_remember(self, row, vector, item)
        row = plan.row
        effects: list[Any] = list(plan.effects)
        if draft.idempotency_key is not None:
            effects += self._remember_idempotency(draft.idempotency_key, rhash, row)
        put = [] if vector is None else [(row["id"], row["version"], vector)]
        # No read grant: what the namespace's policy made of the write is a read.
        memory = (write_receipt(memory_from_row(submitted), draft) if blind
                  else plan.memory())
        return row["id"], effects, put, plan.carry, memory

    def remember_many(self, drafts: Sequence[MemoryDraft], vectors: Sequence[np.ndarray | None],
                      batch: FreeTextBatch | None) -> list[Memory]:
        """Remember each draft in order, with free-text candidates ``batch`` found for all.

        One event per memory, in order, as :meth:`remember` logs it. A run of memories
        that only insert rows (no key, no assertion; a free-text check that found no
        rival to change) is committed in bulk (:meth:`Resources.commit_each`) before
        the next memory that may read them is planned (one with a key or an assertion,
        or one whose free-text candidates include a memory of the run:
        :meth:`TrustEngine.reads_batch_rows`), or at the end. Rows a plan reads
        otherwise (settings, principals, committed candidates) no such run changes.
        """
        if batch is not None:
            self._trust.settle_batch(self.w, batch)
        out: list[Memory] = []
        held: list[tuple[str | None, str | None, Sequence[Insert]]] = []
        held_put: list[tuple[str, int, np.ndarray]] = []
        # The batch's ids, made at once and taken in order (ids keep the batch's order).
        ids = new_ids(len(drafts))
        for i, (d, v) in enumerate(zip(drafts, vectors, strict=True)):
            # Only a memory checked for free-text rivals reads the batch's lists (and
            # only such memories are ever another's pending candidate).
            item = (None if batch is None or d.layer not in _FREE_TEXT_LAYERS
                    else BatchItem(batch, i))
            if d.idempotency_key is not None or d.predicate is not None:
                self._commit_held(held, held_put)
                out.append(self.remember(d, v, item, ids[i]))
                continue
            if d.layer in _FREE_TEXT_LAYERS and self._trust.reads_batch_rows(
                    self.w, d.namespace, item):
                self._commit_held(held, held_put)  # its candidates must be readable
            planned = self._plan_remember(d, v, item, ids[i])
            if isinstance(planned, Memory):  # pragma: no cover - a replay needs a key
                out.append(planned)
                continue
            ref, effects, put, carry, memory = planned
            if carry or not all(type(e) is Insert for e in effects):
                self._commit_held(held, held_put)
                self._commit("memory.remembered", d.namespace, ref, effects, put=put,
                             carry=carry)
            else:
                held.append((d.namespace, ref, effects))
                held_put.extend(put)
                if len(held) >= _HELD_RUN:  # logged now, sent while the rest is planned
                    self._commit_held(held, held_put)
            out.append(memory)
        self._commit_held(held, held_put)
        return out

    def _commit_held(self, held: list[tuple[str | None, str | None, Sequence[Insert]]],
                     put: list[tuple[str, int, np.ndarray]]) -> None:
        if held:
            self._res.commit_each(self.w, "memory.remembered", self.s.name, held, put=put)
            held.clear()
            put.clear()

    def _current(self, memory_id: str, action: str) -> dict[str, Any]:
        if not isinstance(memory_id, str) or not memory_id:
            raise InvalidInput("memory id must be a non-empty string", field="id")
        rows = self.w.fetch("memories", {"id": memory_id, "tx_to": None})
        if not rows or not self.s.acl().check("read", rows[0]["namespace"]):
            raise NotFound(f"no memory {memory_id!r}; check the id (or your read grant)",
                           id=memory_id)
        row = rows[0]
        self.s.require(action, row["namespace"])
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
               "author": self.s.name}
        if new["valid_to"] is not None and new["valid_to"] <= new["valid_from"]:
            raise InvalidInput("valid_to must be later than valid_from", field="valid_to")
        plan = self._trust.plan_version(self, cur, new, kind, vector)
        new = plan.row
        effects: list[Any] = [
            Update("memories", {"id": cur["id"], "version": cur["version"]},
                   {"tx_to": self.w.tx}, expect={"tx_to": None}),
            *plan.effects,
        ]
        effects += self._remember_idempotency(idempotency_key, rhash, new)
        put: list[tuple[str, int, np.ndarray]] = []
        carry = list(plan.carry)
        if vector is not None:
            put.append((new["id"], new["version"], vector))
        elif new["text"] == cur["text"]:
            carry.append((cur["id"], cur["version"], new["version"]))
        self._commit(kind, cur["namespace"], cur["id"], effects, extra, put=put, carry=carry)
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


@guard_calls
class Transaction:
    """The write API inside ``with session.transaction() as tx:``."""

    def __init__(self, writer: Writer) -> None:
        self._w = writer
        self._caller = writer.s
        self._closed = False
        self._ops = 0
        self._chars = 0
        self._outcomes: list[dict[str, Any]] = []  # written together by _finish
        self.reads: list[Memory] = []  # what get showed, read-audited when the tx ends

    def _check(self, text: Any = None) -> None:
        if self._closed:
            raise InvalidInput("this transaction has ended; open a new one")
        # Every other writer waits while a transaction holds the write lock, so one
        # transaction's work is bounded (embed ahead, or split large batches).
        cfg = self._caller.res.config
        self._ops += 1
        self._chars += len(text) if isinstance(text, str) else 0
        if self._ops > cfg.max_tx_ops or self._chars > cfg.max_tx_text_chars:
            raise PayloadTooLarge(
                f"a transaction holds at most {cfg.max_tx_ops} writes and "
                f"{cfg.max_tx_text_chars} characters of text; split it into several "
                "transactions (or use remember_many, which embeds before locking)",
                limit_ops=cfg.max_tx_ops, limit_chars=cfg.max_tx_text_chars)

    def remember(self, text: str, **fields: Any) -> Memory:
        self._check(text)
        draft = make_draft(self._caller, text=text, **fields)
        vector = self._caller.res.vectors_for([draft])[0]
        return self._w.remember(draft, vector)

    def update(self, memory_id: str, *, text: Any = _UNSET,
               expected_version: int | None = None, idempotency_key: str | None = None,
               **fields: Any) -> Memory:
        self._check(text)
        check_write_args(memory_id, expected_version, idempotency_key)
        changes, vector = prepare_update(self._caller, text, fields)
        return self._w.update(memory_id, changes, expected_version, vector, idempotency_key)

    def retract(self, memory_id: str, *, reason: str | None = None,
                expected_version: int | None = None,
                idempotency_key: str | None = None) -> Memory:
        self._check()
        check_reason(reason)
        check_write_args(memory_id, expected_version, idempotency_key)
        return self._w.retract(memory_id, reason, expected_version, idempotency_key)

    def tool_outcome(self, tool: str, ok: bool, *, latency_ms: float | None = None,
                     error: str | None = None, metadata: Mapping[str, Any] | None = None,
                     namespace: str | None = None) -> None:
        """Record a tool outcome in this transaction (the cheap way to write many)."""
        self._check()
        w = self._w
        row = check_outcome(w.s.name, w._res.config, tool, ok, latency_ms, error, metadata,
                            namespace)
        if row["namespace"] not in w._may_write:  # refused now, not at the end
            w.s.require("write", row["namespace"])
            w._may_write.add(row["namespace"])
        self._outcomes.append(row)

    def _finish(self) -> None:
        """Write what was buffered (tool outcomes) and end the transaction."""
        if self._outcomes:
            write_outcomes(self._w, self._outcomes)
            self._outcomes = []
        self._closed = True

    def get(self, memory_id: str) -> Memory:
        self._check()
        rows = self._w.w.fetch("memories", {"id": memory_id, "tx_to": None})
        if not rows or not self._caller.acl().check("read", rows[0]["namespace"]):
            raise NotFound(f"no memory {memory_id!r}", id=memory_id)
        memory = memory_from_row(rows[0])
        self.reads.append(memory)
        return memory
