"""Engine glue for conflicts as data: detection and policies inside the write.

:class:`TrustEngine` is called by the session's writer inside the one
serialised write transaction, so detection sees exactly the state the write
lands on and two concurrent writers can never both miss each other. It
reads the predicate schema and namespace settings, finds rivals (exactly for
cardinality-one assertions, through the database's pluggable ``judge`` for
free text), asks :mod:`engramdb.policy.conflicts` what the policy says, and
turns the answer into effects that the writer logs with the write itself, so
``verify`` and ``import`` replay policies without knowing them.

It also plans ``approve`` of quarantined memories. The conflict inbox,
``resolve`` and the ``contested`` mark on recall hits live in
:mod:`engramdb.engine.inbox`; administration (schemas, settings, principals,
rollback) in :mod:`engramdb.engine.stewardship`.
"""

from __future__ import annotations

import weakref
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import numpy as np

from engramdb.codec import from_micros, new_id
from engramdb.engine._commit import next_version
from engramdb.engine.access import Caller
from engramdb.engine.plans import BatchItem, FreeTextBatch, Plan
from engramdb.engine.resources import Resources
from engramdb.engine.rows import conflict_from_row
from engramdb.errors import (
    ContradictionError,
    InvalidInput,
    InvalidMetadata,
    NotFound,
    PermissionDenied,
)
from engramdb.model import Memory, RecallFilter
from engramdb.policy import crdt
from engramdb.policy.conflicts import (
    NamespaceSettings,
    Outcome,
    Party,
    PredicateSchema,
    Rival,
    check_value,
    decide,
    exact_rivals,
    resolve_schema,
    resolve_settings,
    valid_overlap,
)
from engramdb.policy.judge import Statement
from engramdb.storage.base import Effect, Insert, Update, WriteTx

__all__ = ["CRDT_KEY", "BatchItem", "FreeTextBatch", "Plan", "TrustEngine"]

CRDT_KEY = "_crdt"  # metadata key holding a merged memory's state; set only by the engine
_FREE_TEXT_LAYERS = ("semantic",)  # episodes and working notes record events, not beliefs
# Below this cosine similarity two texts are not about the same thing (MiniLM scale);
# contradicting pairs ("window is Friday" / "window is Monday") score above 0.8.
_MIN_SIMILARITY = 0.5
# Committed candidates a batch keeps beyond the n + 1 a search takes, so that a few
# of them changing before the write lock is taken does not force a new search.
_SPARE_CANDIDATES = 4


class Writer(Protocol):
    """What the trust engine needs from the session's writer."""

    @property
    def s(self) -> Caller: ...

    @property
    def w(self) -> WriteTx: ...


@dataclass(frozen=True, slots=True)
class _Ctx:
    s: Caller
    w: WriteTx


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b)) / norm if norm else 0.0


class TrustEngine:
    """Detection, policies and the conflict inbox for one :class:`Database`."""

    def __init__(self, res: Resources) -> None:
        self._res = res
        # Memories written earlier in the same transaction: storage search
        # reads committed state only, so free-text detection looks here too.
        self._pending: weakref.WeakKeyDictionary[
            WriteTx, list[tuple[dict[str, Any], np.ndarray | None]]] = weakref.WeakKeyDictionary()
        self._settings: weakref.WeakKeyDictionary[
            WriteTx, dict[str, NamespaceSettings]] = weakref.WeakKeyDictionary()
        # Settings by namespace as of one fixed configuration (WriteTx.fixed_config):
        # the prepared writes of every thread share them until the configuration moves.
        self._fixed_settings: tuple[int, dict[str, NamespaceSettings]] = (-1, {})

    # -- configuration reads ---------------------------------------------------

    def settings(self, src: Any, namespace: str) -> NamespaceSettings:
        """Settings in force for ``namespace``, read through ``src`` (storage or WriteTx)."""
        return resolve_settings(src.fetch("namespace_settings", {}), namespace)

    def _tx_settings(self, w: WriteTx, namespace: str) -> NamespaceSettings:
        """:meth:`settings` resolved once per namespace and memory write transaction
        (a batch of 2,000 resolved them 2,000 times). Exact: settings change only in
        an admin's own write transaction, never inside a memory write's."""
        fixed = w.fixed_config
        if fixed is not None:  # the same settings for every write of that configuration
            memo = self._fixed_settings
            if memo[0] != fixed:
                memo = self._fixed_settings = (fixed, {})
            known = memo[1]
        else:
            known = self._settings.setdefault(w, {})
        found = known.get(namespace)
        if found is None:
            found = known[namespace] = self.settings(w, namespace)
        return found

    def schema(self, src: Any, namespace: str, predicate: str,
               settings: NamespaceSettings) -> PredicateSchema:
        rows = src.fetch("predicate_schemas", {"predicate": predicate, "tx_to": None})
        return resolve_schema(rows, namespace, predicate, settings.default_policy)

    def party(self, src: Any, name: str) -> Party:
        rows = src.fetch("principals", {"name": name})
        if not rows:
            return Party(name, 0.0)
        return Party(name, float(rows[0]["trust"]), tuple(rows[0]["roles"]))

    # -- write hooks -----------------------------------------------------------

    def prepare_batch(self, drafts: Sequence[Any], vectors: Sequence[np.ndarray | None]
                      ) -> FreeTextBatch | None:
        """Find the free-text candidates of a batch of new memories, before the write lock.

        ``drafts`` are validated :class:`~engramdb.model.MemoryDraft` values in
        write order and ``vectors`` their embeddings. Reads committed state
        only; :meth:`settle_batch` brings the answer up to date under the lock.
        Returns None when the per-memory path must run instead: memories
        without embeddings (a text search finds their candidates).
        """
        if any(v is None for v in vectors):
            return None
        storage = self._res.storage
        # Recorded before searching: the searches see this head or a later one,
        # so "recorded since the snapshot" covers whatever they may have missed.
        batch = FreeTextBatch(len(drafts), storage.head())
        groups: dict[str, list[int]] = defaultdict(list)
        for i, d in enumerate(drafts):
            if d.layer in _FREE_TEXT_LAYERS:
                groups[d.namespace].append(i)
        for ns, members in groups.items():
            settings = self.settings(storage, ns)
            if settings.detect_free_text:
                self._prepare_group(batch, drafts, vectors, members, settings)
        return batch

    def _prepare_group(self, batch: FreeTextBatch, drafts: Sequence[Any],
                       vectors: Sequence[np.ndarray | None], members: list[int],
                       settings: NamespaceSettings) -> None:
        """Candidates for the semantic memories of one namespace in a batch."""
        n = settings.free_text_candidates
        ns = drafts[members[0]].namespace
        mat = np.stack([np.asarray(vectors[i], dtype=np.float32).reshape(-1)
                        for i in members])
        norms = np.linalg.norm(mat, axis=1)
        mat = (mat / np.where(norms == 0, 1.0, norms)[:, None]).astype(np.float32)
        # Only memories without a predicate are checked as free text; every
        # semantic memory of the namespace is a candidate for later ones.
        checked = [a for a, i in enumerate(members) if drafts[i].predicate is None]
        by_subject: dict[str | None, list[int]] = defaultdict(list)
        for a in checked:
            by_subject[drafts[members[a]].subject].append(a)
        storage = self._res.storage
        keep = n + 1 + _SPARE_CANDIDATES
        for subject, positions in by_subject.items():
            flt = RecallFilter(namespaces=(ns,), layers=_FREE_TEXT_LAYERS,
                               statuses=("active",), subject=subject)
            found = storage.search_vectors([mat[a] for a in positions], flt, keep,
                                           _MIN_SIMILARITY)
            for a, hits in zip(positions, found, strict=True):
                kept = [(str(r["id"]), int(r["version"]), sim) for r, sim in hits
                        if sim >= _MIN_SIMILARITY]
                batch.found[members[a]] = kept
                batch.truncated[members[a]] = len(kept) == keep
            batch.groups.append((ns, subject, [members[a] for a in positions],
                                 mat[positions]))
        codes: dict[str | None, int] = {}
        subjects = np.array([codes.setdefault(drafts[i].subject, len(codes))
                             for i in members], dtype=np.int64)
        checked_set = set(checked)
        step = max(1, (8 << 20) // max(1, len(members)))  # rows per chunk: ~32 MB of sims
        for start in range(0, len(members), step):
            stop = min(len(members), start + step)
            sims = mat[start:stop] @ mat[:stop].T
            # Row r (memory start + r) against earlier memories only: columns c < start + r.
            rows, cols = np.nonzero(np.tril(sims >= _MIN_SIMILARITY, start - 1))
            bounds = np.searchsorted(rows, np.arange(stop - start + 1))
            for a in range(start, stop):
                if a not in checked_set:
                    continue
                qual = cols[bounds[a - start]:bounds[a - start + 1]]  # ascending
                subject = drafts[members[a]].subject
                if subject is not None:
                    qual = qual[subjects[qual] == codes[subject]]
                i = members[a]
                batch.earlier[i] = [members[b] for b in qual[::-1][:n]]
                batch.settings[i] = (True, n)

    def settle_batch(self, w: WriteTx, batch: FreeTextBatch) -> None:
        """Under the write lock: bring a prepared batch's candidates up to the head.

        Afterwards ``batch.committed`` holds, for each memory, what its own
        search under the lock would return (or None: it searches itself).
        """
        if self._pending.get(w):  # only a fresh transaction's batch is prepared
            batch.earlier = [None] * len(batch.earlier)
            return
        for ns in {g[0] for g in batch.groups}:
            now = self.settings(w, ns)
            for _, _, positions, _ in (g for g in batch.groups if g[0] == ns):
                for i in positions:
                    if batch.settings[i] != (now.detect_free_text, now.free_text_candidates):
                        batch.earlier[i] = None  # settings changed since: search yourself
        head = batch.snapshot
        if w.tx == head.tx + 1:  # nothing committed since the searches' head
            for i, kept in enumerate(batch.found):
                made_for = batch.settings[i]
                if kept is not None and made_for is not None:
                    batch.committed[i] = [m for m, _, _ in kept[:made_for[1] + 1]]
            return
        # Candidates kept before the lock still stand if their version is current.
        ids = sorted({m for kept in batch.found if kept for m, _, _ in kept})
        current: dict[str, tuple[int, str]] = {}
        for start in range(0, len(ids), 500):
            for r in w.fetch("memories", {"id": ids[start:start + 500], "tx_to": None}):
                current[str(r["id"])] = (int(r["version"]), str(r["status"]))
        since = from_micros(head.recorded_at)
        storage = self._res.storage
        for ns, subject, positions, mat in batch.groups:
            made_for = batch.settings[positions[0]]  # one namespace: the same for all
            if made_for is None:
                continue
            n = made_for[1]
            flt = RecallFilter(namespaces=(ns,), layers=_FREE_TEXT_LAYERS,
                               statuses=("active",), subject=subject, recorded_after=since)
            fresh = storage.search_vectors(list(mat), flt, n + 1, _MIN_SIMILARITY)
            for i, hits in zip(positions, fresh, strict=True):
                kept = [(m, v, sim) for m, v, sim in batch.found[i] or ()
                        if current.get(m) == (v, "active")]
                if batch.truncated[i] and len(kept) < n + 1:
                    continue  # a rival beyond those kept may now rank: search yourself
                merged = {(m, v): sim for m, v, sim in kept}
                merged.update({(str(r["id"]), int(r["version"])): sim for r, sim in hits
                               if sim >= _MIN_SIMILARITY})
                ranked = sorted(merged.items(), key=lambda kv: -kv[1])[:n + 1]
                batch.committed[i] = [m for (m, _), _ in ranked]

    def reads_batch_rows(self, w: WriteTx, namespace: str, item: BatchItem | None) -> bool:
        """Whether planning a batch's new free-text memory (no key, no assertion) in
        ``namespace`` may read memories the same transaction wrote before it.

        False when no check runs, or when its batch lists apply and name no earlier
        memory of the batch: then the plan reads committed candidates only, which a
        run of new memories cannot change (a new version of a committed memory is
        an update, never held back), so the rows of the memories planned before it
        may still be unapplied (:meth:`Writer.remember_many` commits them in bulk).
        """
        settings = self._tx_settings(w, namespace)
        if not settings.detect_free_text:
            return False
        prepared = self._prepared(item, settings)
        return prepared is None or bool(prepared[1])

    def plan_remember(self, wr: Writer, row: dict[str, Any], vector: np.ndarray | None,
                      item: BatchItem | None = None) -> Plan:
        """Decide what a new memory becomes: quarantined, merged, or checked for conflicts.

        ``item`` places the memory in a batch prepared by :meth:`prepare_batch`.

        Raises:
            ValueTypeError: the value does not fit the predicate's declaration.
            ContradictionError: a ``reject`` policy refused it (nothing written).
            InvalidMetadata: the metadata uses the engine's reserved key.
        """
        w = wr.w
        if CRDT_KEY in (row.get("metadata") or {}):
            raise InvalidMetadata(f"metadata key {CRDT_KEY!r} is reserved for merged values; "
                                  "rename it", field="metadata")
        ns = row["namespace"]
        settings = self._tx_settings(w, ns)
        schema, op = self._check_assertion(w, row, settings)
        if self._below_floor(wr, settings):
            row = {**row, "status": "quarantined"}
            plan = Plan(row, [Insert("memories", row)])
        elif schema is not None and schema.policy == "merge":
            plan = self._merge(w, row, schema, op)
        elif schema is None and row["layer"] not in _FREE_TEXT_LAYERS:
            plan = Plan(row, [Insert("memories", row)])  # nothing detects a rival here
        else:
            plan = self._decide(wr, row, vector, settings, schema, [Insert("memories", row)],
                                item)
        if not w.single_write:  # read by later writes of the same transaction
            self._pending.setdefault(w, []).append((plan.row, vector))
        if item is not None:
            item.batch.rows[item.index] = plan.row
        return plan

    def plan_version(self, wr: Writer, cur: dict[str, Any], new: dict[str, Any], kind: str,
                     vector: np.ndarray | None) -> Plan:
        """Decide what an update or retraction of ``cur`` becomes.

        Raises:
            PermissionDenied: the writer is below the namespace's trust floor and
                the memory is not its own quarantined one.
            ValueTypeError, ContradictionError: as for :meth:`plan_remember`.
            InvalidInput: the memory holds a merged value (contribute instead).
        """
        w = wr.w
        ns = cur["namespace"]
        settings = self.settings(w, ns)
        if self._below_floor(wr, settings):
            me = wr.s.principal.name
            if not (cur["author"] == me and cur["status"] == "quarantined"):
                raise PermissionDenied(
                    f"{me!r} is below the trust floor of {ns!r} and may only change its own "
                    "quarantined memories; ask an admin to approve or change it",
                    namespace=ns)
            new = {**new, "status": "quarantined"} if new["status"] == cur["status"] else new
            return Plan(new, [Insert("memories", new)])
        insert: list[Effect] = [Insert("memories", new)]
        if kind == "memory.retracted":
            closing = self.close_conflicts(w, [cur["id"]], ns, wr.s.principal.name,
                                            f"memory {cur['id']} was retracted")
            return Plan(new, insert + closing)
        if CRDT_KEY in (cur.get("metadata") or {}) and (
                new.get("metadata") != cur.get("metadata") or new.get("value") != cur["value"]):
            raise InvalidInput(
                f"memory {cur['id']} holds a merged value; add a contribution with remember() "
                "instead of changing its value or metadata", id=cur["id"])
        if CRDT_KEY in (new.get("metadata") or {}) and CRDT_KEY not in (cur.get("metadata")
                                                                        or {}):
            raise InvalidMetadata(f"metadata key {CRDT_KEY!r} is reserved for merged values",
                                  field="metadata")
        schema, _ = self._check_assertion(w, new, settings, merged_ok=True)
        changed = any(new.get(k) != cur.get(k)
                      for k in ("text", "value", "valid_from", "valid_to", "status"))
        if new["status"] != "active" or not changed or (
                schema is not None and schema.policy == "merge"):
            return Plan(new, insert)
        return self._decide(wr, new, vector, settings, schema, insert)

    def _check_assertion(self, w: WriteTx, row: Mapping[str, Any], settings: NamespaceSettings,
                         merged_ok: bool = False) -> tuple[PredicateSchema | None, Any]:
        if row.get("predicate") is None:
            return None, None
        schema = self.schema(w, row["namespace"], row["predicate"], settings)
        if schema.policy == "merge" and schema.merge is not None and not merged_ok:
            return schema, crdt.check_op(schema.merge, row.get("value"),
                                         partial(check_value, schema))
        check_value(schema, row.get("value"))
        return schema, None

    def _below_floor(self, wr: Writer, settings: NamespaceSettings) -> bool:
        if settings.trust_floor is None or wr.s.principal.is_admin:
            return False
        return self.party(wr.w, wr.s.principal.name).trust < settings.trust_floor

    # -- detection and policy ----------------------------------------------------

    def _decide(self, wr: Writer, row: dict[str, Any], vector: np.ndarray | None,
                settings: NamespaceSettings, schema: PredicateSchema | None,
                insert: list[Effect], item: BatchItem | None = None) -> Plan:
        w = wr.w
        if schema is not None:
            rivals = (exact_rivals(row, self._assertions(w, row))
                      if schema.cardinality == "one" else [])
            policy = schema.policy
        else:
            rivals = (self._free_text_rivals(w, row, vector, settings, item)
                      if settings.detect_free_text and row["layer"] in _FREE_TEXT_LAYERS else [])
            policy = settings.default_policy
        rivals = self._not_yet_flagged(w, row, rivals)
        if not rivals:
            return Plan(row, insert)
        parties = {name: self.party(w, name)
                   for name in {row["author"], *(r.row["author"] for r in rivals)}}
        outcome = decide(policy, row, rivals, parties, settings.authority)
        readable = wr.s.acl().check("read", row["namespace"]).allow
        if outcome.refuse and not readable:
            # A refusal would tell a writer without read access that a rival exists
            # (a 409 oracle): its write is held in quarantine for review instead.
            held = {**row, "status": "quarantined"}
            return Plan(held, [Insert("memories", held) if isinstance(e, Insert)
                               and e.table == "memories" and e.row is row else e
                               for e in insert])
        if outcome.refuse:
            raise self._contradiction(row, outcome, readable)
        planned = {**row, "status": outcome.new_status, "valid_to": outcome.new_valid_to}
        effects: list[Effect] = [
            Insert("memories", planned) if isinstance(e, Insert) and e.table == "memories"
            and e.row is row else e for e in insert]
        carry: list[tuple[str, int, int]] = []
        for change in outcome.rival_changes:
            cur = w.fetch("memories", {"id": change.id, "version": change.version})[0]
            new, eff = next_version(w, cur, change.changes)
            effects += eff
            carry.append((cur["id"], int(cur["version"]), int(new["version"])))
        conflicts = []
        for co in outcome.conflicts:
            resolved = co.status == "resolved"
            crow = {
                "id": new_id(), "kind": "contradiction", "namespace": row["namespace"],
                "subject": row.get("subject"), "predicate": row.get("predicate"),
                "memories": [
                    {"id": row["id"], "version": int(row["version"]),
                     "valid_to": row.get("valid_to")},
                    {"id": co.rival.row["id"], "version": int(co.rival.row["version"]),
                     "valid_to": co.rival.row.get("valid_to")},
                ],
                "detector": co.rival.detector, "reason": co.reason, "policy": outcome.policy,
                "outcome": co.outcome, "status": co.status, "winner": co.winner,
                "resolution": f"applied policy {outcome.policy!r}" if resolved else None,
                "resolved_by": "policy" if resolved else None, "tx": w.tx,
                "resolved_tx": w.tx if resolved else None,
            }
            effects.append(Insert("conflicts", crow))
            conflicts.append(conflict_from_row(crow))
        return Plan(planned, effects, tuple(conflicts) if readable else (), tuple(carry))

    def _contradiction(self, row: Mapping[str, Any], outcome: Outcome,
                       readable: bool) -> ContradictionError:
        rivals = [{"id": r.row["id"], "version": int(r.row["version"]),
                   "author": r.row["author"], "value": r.row.get("value"),
                   "text": r.row["text"], "detector": r.detector, "reason": r.reason}
                  for r in outcome.rivals]
        if not readable:
            # The writer may not read this namespace: say that it contradicts, not what.
            return ContradictionError(
                f"namespace {row['namespace']!r} refuses contradicting writes (policy "
                f"'reject') and this one contradicts {len(rivals)} memory(ies) you may not "
                "read; nothing was written", rivals=[], unreadable_rivals=len(rivals))
        listed = "; ".join(r["reason"] for r in rivals)
        return ContradictionError(
            f"policy 'reject' refused this write ({listed}). Nothing was written; retract or "
            "update the rival first, or ask an admin to change the policy", rivals=rivals)

    def _assertions(self, w: WriteTx, row: Mapping[str, Any]) -> list[dict[str, Any]]:
        return w.fetch("memories", {"namespace": row["namespace"], "subject": row["subject"],
                                    "predicate": row["predicate"], "tx_to": None,
                                    "status": "active"})

    def _free_text_rivals(self, w: WriteTx, row: Mapping[str, Any], vector: np.ndarray | None,
                          settings: NamespaceSettings, item: BatchItem | None = None
                          ) -> list[Rival]:
        if not settings.detect_free_text or row["layer"] not in _FREE_TEXT_LAYERS:
            return []
        n = settings.free_text_candidates
        prepared = self._prepared(item, settings)
        unread: Mapping[str, Any] | None = None  # a candidate still to be fetched
        if prepared is not None:
            found, pending = prepared
            cands = [(i, unread) for i in found if i != row["id"]][:n]
        else:
            cands = self._committed_candidates(w, row, vector, n)
            pending = [p["id"] for p, v in reversed(self._pending.get(w, []))
                       if p["namespace"] == row["namespace"]
                       and p["layer"] in _FREE_TEXT_LAYERS
                       and (row.get("subject") is None or p.get("subject") == row.get("subject"))
                       and (vector is None or v is None
                            or _cosine(vector, v) >= _MIN_SIMILARITY)]
        seen = {i for i, _ in cands}
        cands += [(i, unread) for i in pending[:n] if i not in seen and i != row["id"]]
        judge = self._res.judge
        new = Statement(row["text"], row.get("subject"), row.get("predicate"), row.get("value"))
        out: list[Rival] = []
        for memory_id, known in cands:
            if known is None:  # not read with the search: its current version, if any
                current = w.fetch("memories", {"id": memory_id, "tx_to": None})
                if not current:
                    continue
                known = current[0]
            cand = known
            if cand["status"] != "active" or cand["namespace"] != row["namespace"] \
                    or not valid_overlap(cand, row):
                continue
            j = judge.judge(new, Statement(cand["text"], cand.get("subject"),
                                           cand.get("predicate"), cand.get("value")))
            if j.verdict == "contradiction" and j.confidence >= settings.judge_min_confidence:
                # A plain row (a search may hand back a read-only mapping).
                out.append(Rival(dict(cand), j.detector, f"{j.detector}: {j.reason}"))
        return out

    def _committed_candidates(self, w: WriteTx, row: Mapping[str, Any],
                              vector: np.ndarray | None, n: int
                              ) -> list[tuple[str, Mapping[str, Any] | None]]:
        """The ``n`` committed memories most like ``row`` (its own search), as
        ``(id, current row)``; the row is None when the search did not read it."""
        flt = RecallFilter(namespaces=(row["namespace"],), layers=_FREE_TEXT_LAYERS,
                           statuses=("active",), subject=row.get("subject"))
        storage = self._res.storage
        # Nearest by meaning when there is an embedding (cheap, and dissimilar
        # memories are never judged); by words when the database has no embedder.
        if vector is not None:
            near = [str(r["id"]) for r, sim in storage.search_vector(vector, flt, n + 1)
                    if sim >= _MIN_SIMILARITY and r["id"] != row["id"]]
            return [(i, None) for i in near[:n]]
        return storage.search_text_current(w, row["text"], flt, n, other_than=row["id"])

    @staticmethod
    def _prepared(item: BatchItem | None, settings: NamespaceSettings
                  ) -> tuple[list[str], list[str]] | None:
        """A batch memory's (committed, pending) candidate ids, if its batch lists apply."""
        if item is None:
            return None
        batch, i = item.batch, item.index
        found, earlier = batch.committed[i], batch.earlier[i]
        if found is None or earlier is None or batch.settings[i] != (
                settings.detect_free_text, settings.free_text_candidates):
            return None
        pending = []
        for j in earlier:
            planned = batch.rows[j]
            if planned is None:  # an idempotent replay: never pending, so the lists are off
                return None
            pending.append(planned["id"])
        return found, pending

    def _not_yet_flagged(self, w: WriteTx, row: Mapping[str, Any], rivals: list[Rival]
                         ) -> list[Rival]:
        """Drop rivals already in an open conflict with this memory (updates re-detect)."""
        if not rivals or int(row["version"]) == 1:
            return rivals
        paired: set[str] = set()
        for c in w.fetch("conflicts", {"namespace": row["namespace"], "status": "open"}):
            ids = {str(m["id"]) for m in c["memories"]}
            if row["id"] in ids:
                paired |= ids
        return [r for r in rivals if r.row["id"] not in paired]

    def close_conflicts(self, w: WriteTx, memory_ids: Sequence[str], namespace: str,
                         actor: str, why: str) -> list[Effect]:
        wanted = set(memory_ids)
        out: list[Effect] = []
        for c in w.fetch("conflicts", {"namespace": namespace, "status": "open"}):
            if wanted & {str(m["id"]) for m in c["memories"]}:
                out.append(Update("conflicts", {"id": c["id"]}, {
                    "status": "resolved", "resolution": why, "resolved_by": actor,
                    "resolved_tx": w.tx}, expect={"status": "open"}))
        return out

    # -- merge -------------------------------------------------------------------

    def _merge(self, w: WriteTx, row: dict[str, Any], schema: PredicateSchema, op: Any) -> Plan:
        """Fold a contribution into the merged memory of its (namespace, subject, predicate)."""
        kind = str(schema.merge)
        targets = [t for t in self._assertions(w, row)
                   if ((t.get("metadata") or {}).get(CRDT_KEY) or {}).get("kind") == kind]
        target = min(targets, key=lambda t: str(t["id"])) if targets else None
        prior: dict[str, Any] = (target["metadata"][CRDT_KEY] if target else
                                 {"state": crdt.initial_state(kind), "contributions": 0})
        seq = int(target["version"]) + 1 if target else 1
        state = crdt.apply(kind, prior["state"], crdt.Contribution(
            op, w.tx, seq, int(row["valid_from"]), str(row["author"])))
        meta = {**(row.get("metadata") or {}), CRDT_KEY: {
            "kind": kind, "state": state, "op": op,
            "contributions": int(prior["contributions"]) + 1}}
        merged = {**row, "value": crdt.value_of(kind, state), "metadata": meta}
        if target is None:
            return Plan(merged, [Insert("memories", merged)])
        merged.update(id=target["id"], version=seq, valid_from=target["valid_from"],
                      valid_to=None)
        return Plan(merged, [
            Update("memories", {"id": target["id"], "version": target["version"]},
                   {"tx_to": w.tx}, expect={"tx_to": None}),
            Insert("memories", merged),
        ])

    # -- quarantine ------------------------------------------------------------------

    def approve(self, caller: Caller, memory_id: str, reason: str | None) -> Memory:
        """Release a quarantined memory: it is checked for conflicts as if written now.

        Raises:
            NotFound: no such memory.
            InvalidInput: the memory is not quarantined.
            ContradictionError: the namespace's ``reject`` policy refuses it.
        """
        actor = caller.name
        with self._res.storage.write(actor) as w:
            rows = w.fetch("memories", {"id": memory_id, "tx_to": None})
            if not rows:
                raise NotFound(f"no memory {memory_id!r}", id=memory_id)
            cur = rows[0]
            if cur["status"] != "quarantined":
                raise InvalidInput(f"memory {memory_id} is {cur['status']}, not quarantined; "
                                   "only quarantined memories can be approved", id=memory_id)
            ctx = _Ctx(caller, w)
            settings = self.settings(w, cur["namespace"])
            schema, op = self._check_assertion(w, cur, settings)
            released, effects = next_version(w, cur, {"status": "active"})
            if schema is not None and schema.policy == "merge":
                contribution = {**cur, "status": "active"}
                plan = self._merge(w, contribution, schema, op)
                if plan.row["id"] == cur["id"]:  # first contribution: this memory holds it
                    released, effects = next_version(w, cur, {
                        "status": "active", "value": plan.row["value"],
                        "metadata": plan.row["metadata"]})
                    result = released
                else:  # folded into the existing merged memory
                    released, effects = next_version(w, cur, {"status": "superseded"})
                    effects += plan.effects
                    result = plan.row
                plan = Plan(result, effects)
            else:
                plan = self._decide(ctx, released, None, settings, schema, effects[1:])
                plan = Plan(plan.row, effects[:1] + plan.effects, plan.conflicts, plan.carry)
            put = []
            if plan.row["id"] != memory_id:  # the merged memory now carries these words
                vector = self._res.vectors_for([plan.row["text"]])[0]
                if vector is not None:
                    put.append((plan.row["id"], int(plan.row["version"]), vector))
            self._res.commit(w, "memory.approved", actor, cur["namespace"], memory_id,
                             plan.effects, {"reason": reason}, put=put,
                             carry=[*plan.carry, (memory_id, int(cur["version"]),
                                                  int(cur["version"]) + 1)])
        return plan.memory()
