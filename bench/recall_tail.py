"""Which recalls make the outside check's p95, and which stage owns them (SQLite, 100k).

Runs ``../shared/checks/recall_speed.py``'s loop in one process: three rounds of 100
NumPy brute-force queries (two BLAS threads on a free machine, 150 MB read each),
100 unscoped recalls, 100 recalls scoped to one of 20 namespaces. For every recall:
wall time, thread CPU, the wall time of each stage (full text, the vector search on
whichever thread ran it, candidate rows, ranking, read audit and its batched write,
...), garbage-collector pauses and the kernel's counts for the thread (preempted,
blocked, page faults). Reported per side: p50 / p95, the median wall by position in
its round (the first recalls after NumPy's scan meet cold CPU caches), the stages'
medians for the body and the slowest 5%, and how many vector searches ran beside
the full text (``storage/sqlite/beside.py``, on branch ``rc9`` only: printed
when the checkout has it).

Database: the check's, as ``bench/recall_lexical.py --build DIR`` makes it (use a
copy per run: recalls write read-audit events)::

    PYTHONPATH=src python bench/recall_tail.py DIR [--json OUT]
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stage_clock import clock

CHECKS = Path(os.environ.get("ENGRAM_CHECKS",
                            Path(__file__).resolve().parents[2] / "shared" / "checks"))
_WALL: dict[str, float] = collections.defaultdict(float)
_GC = [0.0, 0.0]


def _timed(owner: Any, name: str, label: str) -> None:
    clock(owner, name, label, wall=_WALL, optional=True)  # a stage this checkout may lack


def _instrument() -> None:
    from engramdb.engine import read_audit, recall
    from engramdb.storage import sqlite
    from engramdb.storage.sqlite import ann, lexical

    for owner, name, label in (
            (sqlite.SQLiteStorage, "search_text_and_vector", "both searches"),
            (sqlite.SQLiteStorage, "search_text", "full text"),
            (lexical.LexicalSearch, "ranked", "full text: ranked"),
            (ann.VectorSearch, "refresh", "vectors: refresh"),
            (ann.VectorSearch, "_search_snapshot", "vectors: snapshot"),
            (sqlite.SQLiteStorage, "_rows_by_ids", "vectors: rows"),
            (recall, "rank_hybrid", "ranking"),
            (sqlite.SQLiteStorage, "whole_rows", "whole rows"),
            (read_audit.ReadAudit, "record", "read audit"),
            (read_audit.ReadAudit, "_write", "read audit: write")):
        _timed(owner, name, label)

    def pause(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            _GC[1] = time.perf_counter()
        else:
            _GC[0] += time.perf_counter() - _GC[1]

    gc.callbacks.append(pause)


def measure(path: Path, n: int) -> dict[str, list[dict[str, Any]]]:
    sys.path.insert(0, str(CHECKS))
    from common import actor  # type: ignore[import-not-found]
    from corpus import vectors  # type: ignore[import-not-found]

    import engramdb

    texts = (path / "corpus.txt").read_text(encoding="utf-8").split("\n")
    queries = [" ".join(t.split()[:6]) for t in texts[n:n + 300]]
    db = engramdb.open(path / "speed.db", synchronous="NORMAL")
    me = actor(db, "loader")
    qv = np.load(path / "qv.npy")
    vec = vectors(n + 300, db.dimension or 384)[:n]
    _instrument()
    me.recall(queries[0], namespace="corp/**", k=10, query_embedding=qv[0].tolist())
    out: dict[str, list[dict[str, Any]]] = {"numpy": [], "unscoped": [], "scoped": []}
    sides = {
        "numpy": lambda i: np.argpartition(-(vec @ qv[i]), 10)[:10],
        "unscoped": lambda i: me.recall(queries[i], namespace="corp/**", k=10,
                                        query_embedding=qv[i].tolist()),
        "scoped": lambda i: me.recall(queries[i], namespace=f"corp/ns{i % 20}", k=10,
                                      query_embedding=qv[i].tolist()),
    }
    for _ in range(3):
        for side, fn in sides.items():
            for i in range(100):
                _WALL.clear()
                _GC[0] = 0.0
                before = resource.getrusage(resource.RUSAGE_THREAD)
                wall, cpu = time.perf_counter(), time.thread_time()
                fn(i)
                wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
                after = resource.getrusage(resource.RUSAGE_THREAD)
                out[side].append({
                    "wall": wall * 1000, "cpu": cpu * 1000, "gc": _GC[0] * 1000,
                    "preempted": after.ru_nivcsw - before.ru_nivcsw,
                    "blocked": after.ru_nvcsw - before.ru_nvcsw,
                    "faults": after.ru_minflt - before.ru_minflt,
                    "stages": {k: v * 1000 for k, v in _WALL.items()}})
    db.close()
    return out


def report(out: dict[str, list[dict[str, Any]]]) -> None:
    for side, rec in out.items():
        walls = np.array([r["wall"] for r in rec])
        cpus = np.array([r["cpu"] for r in rec])
        print(f"{side}: wall p50 {np.percentile(walls, 50):.2f} p95 {np.percentile(walls, 95):.2f}"
              f" ms; CPU p50 {np.percentile(cpus, 50):.2f} p95 {np.percentile(cpus, 95):.2f} ms")
        if side == "numpy":
            continue
        by_position = np.median(walls.reshape(3, 100), axis=0)
        print("  median wall by position in its round: "
              + " ".join(f"{v:.1f}" for v in by_position[:12])
              + f" ... positions 30-99 {np.median(walls.reshape(3, 100)[:, 30:]):.2f} ms")
        tail = [r for r, w in zip(rec, walls, strict=True) if w >= np.percentile(walls, 95)]
        body = [r for r, w in zip(rec, walls, strict=True) if w < np.percentile(walls, 80)]
        for key in ("preempted", "blocked", "faults", "gc"):
            print(f"  {key:22s} mean {np.mean([r[key] for r in body]):6.2f} in the body,"
                  f" {np.mean([r[key] for r in tail]):6.2f} in the slowest 5%")
        for label in sorted({k for r in rec for k in r["stages"]}):
            def med(rows: list[dict[str, Any]], lab: str = label) -> float:
                return float(np.median([r["stages"].get(lab, 0.0) for r in rows]))
            print(f"  {label:22s} median {med(body):5.2f} ms in the body, {med(tail):5.2f} ms"
                  " in the slowest 5%")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("db", type=Path, help="folder of the check's database (a copy)")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--json", type=Path, help="write every recall's figures here")
    args = ap.parse_args()
    print(f"{args.n:,} memories, load average "
          + " / ".join(f"{x:.2f}" for x in os.getloadavg()))
    out = measure(args.db, args.n)
    report(out)
    try:
        from engramdb.storage.sqlite import beside
        print(f"vector searches run beside the full text: {beside.ran} of 601")
    except ImportError:
        pass
    print("load average after " + " / ".join(f"{x:.2f}" for x in os.getloadavg()))
    if args.json:
        args.json.write_text(json.dumps(out), encoding="utf-8")


if __name__ == "__main__":
    main()
