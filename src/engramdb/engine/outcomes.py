"""Tool outcomes as rows: checked, then written through the one commit path.

A leaf of the engine, shared by the procedural layer service
(:mod:`engramdb.engine.layers.procedures`) and the write transaction
(``tx.tool_outcome`` in :mod:`engramdb.engine.writes`), the cheap way to
write many. One ``tool.outcome`` event per outcome, in the outcome's
namespace; the writer must hold the write grant there.
"""

from __future__ import annotations

import math
from typing import Any

from engramdb.codec import new_id
from engramdb.engine.rows import EngineConfig, _short, check_metadata
from engramdb.errors import InvalidInput
from engramdb.model import check_namespace
from engramdb.storage.base import Insert

__all__ = ["check_outcome", "write_outcome"]


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
    if not isinstance(ok, bool):
        raise InvalidInput("ok must be true or false", field="ok")
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


def write_outcome(wr: Any, row: dict[str, Any]) -> None:
    """Write a checked outcome with ``wr`` (a :class:`~engramdb.engine.writes.Writer`)."""
    ns = row["namespace"]
    if ns not in wr._may_write:
        wr.s.require("write", ns)
        wr._may_write.add(ns)
    row = {**row, "tx": wr.w.tx, "recorded_at": wr.w.recorded_at}
    wr._commit("tool.outcome", ns, row["id"], [Insert("tool_outcomes", row)])
