"""Child-process side of the concurrent tool-outcome test (``tests/test_tool_stats.py``).

One process of a multi-process agent: waits at a barrier, then records
``n`` outcomes of one tool, alternating single calls and batches of five, so
two such processes write the same ``tool_stats`` rows at the same time.
"""

from __future__ import annotations

import traceback
from typing import Any

import engramdb

__all__ = ["record_outcomes"]


def record_outcomes(path: str, agent: str, n: int, barrier: Any, results: Any) -> None:
    error = None
    try:
        with engramdb.open(path, embedder=None) as db:
            me = db.as_agent(agent)
            barrier.wait(timeout=120)
            i = 0
            while i < n:
                if i % 10 < 5:
                    me.tool_outcome("fetch", i % 3 != 0, latency_ms=float(i % 7),
                                    error=None if i % 3 else "timeout")
                    i += 1
                else:
                    me.tool_outcomes([{"tool": "fetch", "ok": j % 3 != 0,
                                       "latency_ms": float(j % 7),
                                       "error": None if j % 3 else "timeout"}
                                      for j in range(i, i + 5)])
                    i += 5
    except BaseException:  # pragma: no cover - reported to the parent instead
        error = traceback.format_exc()
    results.put(error)
