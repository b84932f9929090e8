"""Tool outcomes as rows: checked, then written through the one commit path.

A leaf of the engine, shared by the procedural layer service
(:mod:`engramdb.engine.layers.procedures`) and the write transaction
(``tx.tool_outcome`` in :mod:`engramdb.engine.writes`), the cheap way to
write many: a transaction's outcomes are written when it ends, as one
``tool.outcome`` event per namespace, together with the ``tool_stats``
and ``tool_stats_hourly`` aggregate rows they change (:mod:`engramdb.audit.tool_stats`).
The writer must hold the write grant
in the outcome's namespace (checked when the outcome is given).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from engramdb.audit.tool_stats import HOURLY_COLUMNS, KEY_COLUMNS, aggregate
from engramdb.codec import new_id
from engramdb.engine.rows import EngineConfig, _short, check_bool, check_metadata
from engramdb.errors import InvalidInput
from engramdb.model import check_namespace
from engramdb.storage.base import Effect, Insert, Update, WriteTx

__all__ = ["check_outcome", "stats_effects", "write_outcomes"]



def check_outcome(author: str, config: EngineConfig, tool: Any, ok: Any, latency_ms: Any,
                  error: Any, metadata: Any, namespace: Any) -> dict[str, Any]:
    """A tool outcome checked into its ``tool_outcomes`` row (without tx and time).

    Raises:
        InvalidInput: a bad tool name, ``ok`` not a bool, a bad latency, error,
            metadata or namespace.
    """
    name = _short(tool, "tool", 200)
    if name is None:
        raise InvalidInput("tool must be a non-empty string of at most 200 characters",
                           field="tool")
    check_bool(ok, "ok")
    if latency_ms is not None and (isinstance(latency_ms, bool)
                                   or not isinstance(latency_ms, (int, float))
                                   or not math.isfinite(latency_ms)
                                   or not 0 <= latency_ms <= 1e9):
        raise InvalidInput("latency_ms must be a number of milliseconds from 0 to 1e9",
                           field="latency_ms")
    return {"id": new_id(), "principal": author,
            "namespace": check_namespace(namespace if namespace is not None
                                         else f"agents/{author}"),
            "tool": name, "ok": int(ok),
            "latency_ms": None if latency_ms is None else float(latency_ms),
            "error": _short(error, "error", 2000),
            "metadata": check_metadata(metadata, config)}


def stats_effects(w: WriteTx, outcomes: Sequence[dict[str, Any]]) -> list[Effect]:
    """The ``tool_stats`` and ``tool_stats_hourly`` changes that count ``outcomes``
    (one namespace and agent).

    Per table, one read of the touched aggregate rows, then an insert or a
    compare-and-swap update per row: a concurrent writer of the same row makes
    this transaction fail with ``VersionConflict`` rather than lose a count.
    """
    ns, principal = outcomes[0]["namespace"], outcomes[0]["principal"]
    effects: list[Effect] = []
    for table, columns, hourly in (("tool_stats", KEY_COLUMNS, False),
                                   ("tool_stats_hourly", HOURLY_COLUMNS, True)):
        counted = aggregate(outcomes, hourly=hourly)  # what these outcomes add, per row
        where: dict[str, Any] = {"namespace": ns, "principal": principal,
                                 "tool": sorted({k[2] for k in counted})}
        if hourly:
            where["hour"] = sorted({k[3] for k in counted})
        # kind too: without it the key's prefix ends at the tool (or hour), and the
        # read walks every latency bin and error of that tool to find a few labels.
        where["kind"] = sorted({k[-2] for k in counted})
        where["label"] = sorted({k[-1] for k in counted})
        current = {k: r for r in w.fetch(table, where)
                   if (k := tuple(r[c] for c in columns)) in counted}
        for key, add in counted.items():
            old = current.get(key)
            if old is None:
                effects.append(Insert(table, {**add, "tx": w.tx}))
                continue
            effects.append(Update(table, dict(zip(columns, key, strict=True)),
                                  {"calls": int(old["calls"]) + add["calls"],
                                   "successes": int(old["successes"]) + add["successes"],
                                   "last_at": max(int(old["last_at"]), add["last_at"]),
                                   "tx": w.tx},
                                  {"calls": old["calls"]}))
    return effects


def write_outcomes(wr: Any, rows: list[dict[str, Any]]) -> None:
    """Write checked outcomes with ``wr`` (a :class:`~engramdb.engine.writes.Writer`).

    One ``tool.outcome`` event per namespace carries all of that namespace's
    rows and the aggregate rows they change: logging is most of a small
    write's cost, and a batch is one write.
    """
    by_ns: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_ns.setdefault(row["namespace"], []).append(row)
    for ns, group in by_ns.items():
        if ns not in wr._may_write:
            wr.s.require("write", ns)
            wr._may_write.add(ns)
        stamped = [{**r, "tx": wr.w.tx, "recorded_at": wr.w.recorded_at} for r in group]
        effects: list[Effect] = [Insert("tool_outcomes", r) for r in stamped]
        effects += stats_effects(wr.w, stamped)
        wr._commit("tool.outcome", ns, group[0]["id"] if len(group) == 1 else None, effects)
