"""Child-process side of the concurrent working-block test (``tests/test_layers.py``).

One agent in its own process: reads the shared block's version, waits at a
barrier until the other process has read it too, then pins its edit with that
``expected_version``. On :class:`VersionConflict` it reports the conflict,
re-reads and retries once, so no edit is lost silently.
"""

from __future__ import annotations

import traceback
from typing import Any

import engramdb
from engramdb import VersionConflict

__all__ = ["edit_block"]


def edit_block(path: str, agent: str, text: str, barrier: Any, results: Any) -> None:
    report: dict[str, Any] = {"agent": agent, "first": None, "final_version": None,
                              "error": None}
    try:
        with engramdb.open(path, embedder=None) as db:
            me = db.as_agent(agent)
            (block,) = me.blocks(namespace="team/shared")
            barrier.wait(timeout=120)  # both have read version `block.version` now
            try:
                done = me.pin("plan", text, namespace="team/shared",
                              expected_version=block.version)
                report["first"] = ("ok", done.version)
            except VersionConflict as exc:
                report["first"] = ("conflict", exc.details["current_version"])
                (fresh,) = me.blocks(namespace="team/shared")
                done = me.pin("plan", fresh.text + " + " + text, namespace="team/shared",
                              expected_version=fresh.version)
            report["final_version"] = done.version
    except BaseException:  # pragma: no cover - reported to the parent instead
        report["error"] = traceback.format_exc()
    results.put(report)
