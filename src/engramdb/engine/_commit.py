"""The one write path: apply effects, log them as one event, run the derived steps.

Every state change of the engine (memories, principals, keys, grants,
conflicts, decisions, settings, read audit) goes through :func:`commit`
inside an open :class:`~engramdb.storage.base.WriteTx`. It

1. applies the effects,
2. appends one log event carrying them (so ``verify`` and ``import`` can
   replay the state from the log alone),
3. runs every derived step such a change needs: decisions resting on a
   memory version the effects closed turn stale (:func:`mark_stale`, its
   own logged event), new memory versions get their vectors (given ones are
   stored, the others carry the previous version's vector when their text
   did not change).

A new kind of write therefore cannot forget the log or a derived step: it
describes its effects and calls :func:`commit`. This module imports nothing
else from ``engine/``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from engramdb import telemetry
from engramdb.model import Event
from engramdb.storage.base import Effect, Insert, Update, WriteTx, effect_to_dict

__all__ = ["Vectors", "commit", "commit_each", "mark_stale", "next_version"]


class Vectors:
    """What :func:`commit` does about embeddings of the memory versions it writes.

    Attributes:
        put: ``(id, version, vector)`` of versions with a fresh embedding.
        carry: ``(id, from_version, to_version)`` of versions whose text did not
            change: they reuse the earlier version's vector.
        embedded: whether the database has an embedder at all (without one
            there are no vectors to carry).
    """

    __slots__ = ("carry", "embedded", "put")

    def __init__(self, *, put: Sequence[tuple[str, int, np.ndarray]] = (),
                 carry: Sequence[tuple[str, int, int]] = (), embedded: bool = True) -> None:
        self.put = list(put)
        self.carry = list(carry)
        self.embedded = embedded


def commit(w: WriteTx, kind: str, actor: str, namespace: str | None, subject_ref: str | None,
           effects: Sequence[Effect], extra: Mapping[str, Any] | None = None, *,
           vectors: Vectors | None = None) -> Event:
    """Apply ``effects``, log them as one ``kind`` event, and run the derived steps.

    Args:
        w: the open write transaction.
        kind: the event kind (``memory.remembered``, ``grant.created``, ...).
        actor: the principal the event is attributed to.
        namespace: the namespace the event belongs to (``None``: database-wide).
        subject_ref: what the event is about (a memory, principal, pattern...).
        effects: the state changes, as data.
        extra: more payload fields beside ``effects`` (a reason, a policy...).
        vectors: embeddings to store or carry for the versions written.

    Returns:
        The logged event.
    """
    effects = list(effects)
    with telemetry.span("engram.commit", {"engram.event.kind": kind,
                                          "engram.effects": len(effects)}) as sp:
        w.apply(effects)
        payload = {"effects": [effect_to_dict(e) for e in effects], **(extra or {})}
        event = w.log(kind, actor=actor, namespace=namespace, subject_ref=subject_ref,
                      payload=payload)
        # Only an Update closes a memory version a decision may rest on.
        stale = ([] if all(type(e) is Insert for e in effects)
                 else mark_stale(w, effects, actor))
        sp.set("engram.event.seq", event.seq)
        sp.set("engram.decisions.stale", len(stale))
        telemetry.logged(kind)
        telemetry.logged("decision.stale", len(stale))
    if vectors is not None:
        if vectors.put:
            w.put_vectors(vectors.put)
        if vectors.embedded:
            for memory_id, old, new in vectors.carry:
                w.copy_vector(memory_id, old, new)
    return event


def commit_each(w: WriteTx, kind: str, actor: str,
                writes: Sequence[tuple[str | None, str | None, Sequence[Insert]]], *,
                put: Sequence[tuple[str, int, np.ndarray]] = ()) -> None:
    """:func:`commit` of each write in order, in bulk: writes that only insert rows.

    Each ``(namespace, subject_ref, inserts)`` gets its own ``kind`` event carrying
    its effects, exactly as one :func:`commit` call each would log it; ``put`` are
    the new versions' vectors. Rows only inserted close no version, so no decision
    turns stale and there is nothing to carry: the derived steps are the vectors.
    The rows are applied before the events are appended (one call each, not one
    per write); the state, the log and the chain are the same, and a failure rolls
    the whole transaction back either way.

    Raises:
        ValueError: a write holds an ``Update`` (use :func:`commit`).
    """
    effects: list[Effect] = []
    events: list[tuple[str | None, str | None, dict[str, Any]]] = []
    for namespace, subject_ref, inserts in writes:
        logged = []
        for e in inserts:
            if type(e) is not Insert:
                raise ValueError("commit_each takes writes that only insert; use commit")
            # effect_to_dict's form; a row that is a dict already is encoded, not copied.
            logged.append({"op": "insert", "table": e.table,
                           "row": e.row if type(e.row) is dict else dict(e.row)})
        effects.extend(inserts)
        events.append((namespace, subject_ref, {"effects": logged}))
    with telemetry.span("engram.commit", {"engram.event.kind": kind,
                                          "engram.effects": len(effects),
                                          "engram.events": len(events)}) as sp:
        w.apply(effects)
        w.log_many(kind, actor=actor, events=events)
        sp.set("engram.event.seq", w.head.seq)  # the last of them
        sp.set("engram.decisions.stale", 0)
        telemetry.logged(kind, len(events))
    if put:
        w.put_vectors(put)


def next_version(w: WriteTx, cur: Mapping[str, Any], changes: Mapping[str, Any]
                 ) -> tuple[dict[str, Any], list[Effect]]:
    """A new version of ``cur`` with ``changes``, and the two effects that write it.

    The author stays the content's author: the principal who caused a status
    change is the event's actor, so provenance of the words is never lost.
    """
    new = {**cur, **changes, "version": int(cur["version"]) + 1, "tx_from": w.tx,
           "tx_to": None, "recorded_at": w.recorded_at}
    return new, [
        Update("memories", {"id": cur["id"], "version": cur["version"]}, {"tx_to": w.tx},
               expect={"tx_to": None}),
        Insert("memories", new),
    ]


def mark_stale(w: WriteTx, effects: Sequence[Effect], actor: str) -> list[str]:
    """Mark decisions stale whose basis a just-applied write changed.

    A memory row is only ever updated to close it (a new version, a
    retraction, a rejection) or to erase it, so any ``Update`` of a
    ``memories`` row ``(id, version)`` changes the basis of every decision
    resting on that exact version. Each decision that turns stale gets a
    ``decision.stale`` event whose effect sets ``decisions.stale_tx``.

    A decision already stale is announced again for a newly closed basis
    version (without changing ``stale_tx``): a reader who may see only that
    memory learns of it from its own feed (see ``redact``).

    Returns:
        The ids of the decisions announced stale.
    """
    touched = sorted({
        (str(e.key["id"]), int(e.key["version"])) for e in effects
        if isinstance(e, Update) and e.table == "memories"
        and "id" in e.key and "version" in e.key
    })
    found: dict[str, tuple[dict[str, Any], list[tuple[str, int]]]] = {}
    if len(touched) > 1:  # many closed at once (maintain): one read per 500, not per row
        wanted = set(touched)
        ids = sorted({i for i, _ in touched})
        bases = [b for at in range(0, len(ids), 500)
                 for b in w.fetch("decision_basis", {"memory_id": ids[at:at + 500]})
                 if (str(b["memory_id"]), int(b["version"])) in wanted]
    else:
        bases = [b for memory_id, version in touched for b in w.fetch(
            "decision_basis", {"memory_id": memory_id, "version": version})]
    for b in sorted(bases, key=lambda b: (str(b["memory_id"]), int(b["version"]),
                                          str(b["decision_id"]))):
        memory_id, version = str(b["memory_id"]), int(b["version"])
        did = str(b["decision_id"])
        if did in found:
            found[did][1].append((memory_id, version))
            continue
        rows = w.fetch("decisions", {"id": did})
        if rows:
            found[did] = (rows[0], [(memory_id, version)])
    for did in sorted(found):
        row, items = found[did]
        log_stale(w, row, items, actor)
    return sorted(found)


def log_stale(w: WriteTx, row: Mapping[str, Any], items: Sequence[tuple[str, int]],
              actor: str) -> None:
    """Log that ``items`` (id, version) of a decision's basis changed (stale from now)."""
    effects: list[Effect] = []
    if row.get("stale_tx") is None:
        effects.append(Update("decisions", {"id": row["id"]}, {"stale_tx": w.tx},
                              expect={"stale_tx": None}))
        w.apply(effects)
    w.log("decision.stale", actor=actor, namespace=row["namespace"], subject_ref=row["id"],
          payload={"effects": [effect_to_dict(e) for e in effects],
                   "changed": [{"id": i, "version": v} for i, v in items]})
