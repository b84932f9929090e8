"""Where a recall's *wall* time goes beyond its CPU time, stage by stage (SQLite, 100k).

For each recall: wall clock and thread CPU of the whole call and of each stage
(full text, vector search and its rows, ranking, access scope, read audit and its
batched write, contested marks, hits), plus what the kernel says happened to the
thread meanwhile (``getrusage``: involuntary context switches = preempted by other
processes; voluntary = it blocked: a lock, the GIL, I/O; page faults) and the
garbage collector's pauses. Wall minus CPU with no voluntary switches is time the
scheduler gave the core to someone else, not anything the code waits for.

Uses the database of :mod:`bench.recall_stages` (the outside check's corpus)::

    PYTHONPATH=src python bench/recall_stages.py --build /tmp/stages-db   # once
    PYTHONPATH=src python bench/recall_wall.py /tmp/stages-db
"""

from __future__ import annotations

import argparse
import collections
import gc
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scale import NAMESPACES, vectors
from bench.stage_clock import clock

_WALL: dict[str, float] = collections.defaultdict(float)
_CPU: dict[str, float] = collections.defaultdict(float)
_GC = [0.0, 0.0]  # pause total, start of the current pause


def _timed(owner: Any, name: str, label: str) -> None:
    clock(owner, name, label, wall=_WALL, cpu=_CPU)


def _instrument() -> None:
    from engramdb.engine import access, inbox, read_audit, recall
    from engramdb.storage import sqlite
    from engramdb.storage.sqlite import ann

    for owner, name, label in (
            (sqlite.SQLiteStorage, "search_text", "full text"),
            (sqlite.SQLiteStorage, "search_vector", "vectors"),
            (sqlite.SQLiteStorage, "_rows_by_ids", "vectors: rows"),
            (ann.VectorSearch, "_search_snapshot", "vectors: snapshot"),
            (recall, "rank_hybrid", "ranking"),
            (recall, "hits_from", "hits"),
            (inbox.ConflictInbox, "mark_contested", "contested"),
            (access.Caller, "scope", "access scope"),
            (read_audit.ReadAudit, "record", "read audit"),
            (read_audit.ReadAudit, "_write", "read audit: write")):
        _timed(owner, name, label)

    def pause(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            _GC[1] = time.perf_counter()
        else:
            _GC[0] += time.perf_counter() - _GC[1]

    gc.callbacks.append(pause)


def measure(path: Path, n: int, queries: int, rounds: int) -> None:
    import engramdb

    texts = (path / "corpus.txt").read_text(encoding="utf-8").split("\n")
    asked = [" ".join(t.split()[:6]) for t in texts[n:n + queries]]
    db = engramdb.open(path / "speed.db", synchronous="NORMAL")
    if not any(a.name == "loader" for a in db.admin.agents()):
        db.admin.create_agent("loader")
        db.admin.grant("loader", "**", ["read", "write"])
    me = db.as_agent("loader")  # as the outside check reads: an agent, through its grants
    qv = vectors(n + queries, db.dimension or 384)[n:]
    _instrument()
    for name, scope in (("unscoped", lambda i: "corp/**"),
                        ("scoped", lambda i: f"corp/ns{i % NAMESPACES}")):
        me.recall(asked[0], namespace=scope(0), k=10, query_embedding=qv[0].tolist())
        rec = []
        for _ in range(rounds):
            for i in range(queries):
                _WALL.clear()
                _CPU.clear()
                _GC[0] = 0.0
                q = qv[i].tolist()
                before = resource.getrusage(resource.RUSAGE_THREAD)
                wall, cpu = time.perf_counter(), time.thread_time()
                me.recall(asked[i], namespace=scope(i), k=10, query_embedding=q)
                wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
                after = resource.getrusage(resource.RUSAGE_THREAD)
                rec.append({"wall": wall, "cpu": cpu, "gc": _GC[0],
                            "preempted": after.ru_nivcsw - before.ru_nivcsw,
                            "blocked": after.ru_nvcsw - before.ru_nvcsw,
                            "minor faults": after.ru_minflt - before.ru_minflt,
                            "major faults": after.ru_majflt - before.ru_majflt,
                            "stages": (dict(_WALL), dict(_CPU))})
        _report(name, rec)
    db.close()


def _report(name: str, rec: list[dict[str, Any]]) -> None:
    walls = np.array([r["wall"] for r in rec]) * 1000
    cpus = np.array([r["cpu"] for r in rec]) * 1000
    tail = [r for r, w in zip(rec, walls, strict=True) if w >= np.percentile(walls, 95)]
    print(f"{name}: wall p50 {np.percentile(walls, 50):.2f} p95 {np.percentile(walls, 95):.2f}"
          f" mean {walls.mean():.2f} ms; CPU p50 {np.percentile(cpus, 50):.2f}"
          f" p95 {np.percentile(cpus, 95):.2f} mean {cpus.mean():.2f} ms")
    print("  per recall: " + ", ".join(
        f"{k} {np.mean([r[k] for r in rec]):.2f}"
        for k in ("preempted", "blocked", "minor faults", "major faults"))
        + f", GC pauses {1000 * np.mean([r['gc'] for r in rec]):.3f} ms")
    labels = sorted({k for r in rec for k in r["stages"][0]})
    for label in labels:
        def mean(rows: list[dict[str, Any]], which: int, lab: str = label) -> float:
            return 1000 * float(np.mean([r["stages"][which].get(lab, 0.0) for r in rows]))
        print(f"  {label:18s} wall {mean(rec, 0):5.2f} (slowest 5%: {mean(tail, 0):5.2f})"
              f"  CPU {mean(rec, 1):5.2f} (slowest 5%: {mean(tail, 1):5.2f}) ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("db", type=Path, help="folder of the database (bench/recall_stages.py --build)")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    print(f"{args.n:,} memories, load average "
          + " / ".join(f"{x:.1f}" for x in os.getloadavg()))
    measure(args.db, args.n, args.queries, args.rounds)


if __name__ == "__main__":
    main()
