"""Where a recall's CPU time goes, stage by stage, at 100k memories (SQLite).

Wall-clock latency on the shared 2-core machine moves by a third between runs
(other engineers' jobs), so this script measures each stage's *CPU time* in the
recalling thread (``time.thread_time``), which other processes barely move, and
is meant to be run alternately against two checkouts on one database::

    PYTHONPATH=src python bench/recall_stages.py --build /tmp/stages-db   # once
    cp -r /tmp/stages-db /tmp/stages-db-b   # a copy per checkout (migrations!)
    PYTHONPATH=/other/checkout/src python bench/recall_stages.py /tmp/stages-db-b
    PYTHONPATH=src python bench/recall_stages.py /tmp/stages-db

The database is the outside check's (``../shared/checks/recall_speed.py``):
docstring sentences (:func:`bench.scale.corpus`), seeded clustered vectors,
20 namespaces; queries are the first six words of 300 held-out sentences. The
stages are found by name (``search_text``, ``search_vector``, ``rank_hybrid``,
...), so the script runs unchanged against older checkouts.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scale import NAMESPACES, corpus, vectors
from bench.stage_clock import clock

_CPU: dict[str, float] = collections.defaultdict(float)


def _timed(owner: Any, name: str, label: str) -> None:
    clock(owner, name, label, cpu=_CPU)


def _instrument() -> None:
    from engramdb.engine import inbox, recall
    from engramdb.storage import sqlite

    _timed(sqlite.SQLiteStorage, "search_text", "full text")
    _timed(sqlite.SQLiteStorage, "search_vector", "vectors")
    _timed(sqlite.SQLiteStorage, "_rows_by_ids", "vectors: rows")
    _timed(recall, "rank_hybrid", "ranking")
    _timed(recall, "hits_from", "hits")
    _timed(inbox.ConflictInbox, "mark_contested", "contested")


def build(path: Path, n: int, queries: int) -> None:
    import engramdb

    texts = corpus(n + queries)
    (path / "corpus.txt").write_text("\n".join(texts), encoding="utf-8")
    db = engramdb.open(path / "speed.db", synchronous="NORMAL")
    vec = vectors(n + queries, db.dimension or 384)
    for i in range(0, n, 2000):
        db.remember_many([{"text": texts[j], "namespace": f"corp/ns{j % NAMESPACES}",
                           "layer": "episodic", "embedding": vec[j].tolist()}
                          for j in range(i, min(n, i + 2000))])
    db.storage.rebuild_vector_index()
    db.close()


def measure(path: Path, n: int, queries: int, rounds: int) -> dict[str, dict[str, float]]:
    import engramdb

    texts = (path / "corpus.txt").read_text(encoding="utf-8").split("\n")
    asked = [" ".join(t.split()[:6]) for t in texts[n:n + queries]]
    db = engramdb.open(path / "speed.db", synchronous="NORMAL")
    qv = vectors(n + queries, db.dimension or 384)[n:]
    _instrument()
    scopes: dict[str, Callable[[int], str]] = {
        "unscoped": lambda i: "corp/**", "scoped": lambda i: f"corp/ns{i % NAMESPACES}"}
    out: dict[str, dict[str, float]] = {}
    for name, scope in scopes.items():
        db.recall(asked[0], namespace=scope(0), k=10, query_embedding=qv[0].tolist())
        _CPU.clear()
        per_recall = []
        for _ in range(rounds):
            for i in range(queries):
                start = time.thread_time()
                db.recall(asked[i], namespace=scope(i), k=10, query_embedding=qv[i].tolist())
                per_recall.append(time.thread_time() - start)
        total = len(per_recall)
        out[name] = {"recall mean": 1000 * float(np.mean(per_recall)),
                     "recall p95": 1000 * float(np.percentile(per_recall, 95)),
                     **{k: 1000 * v / total for k, v in sorted(_CPU.items())}}
    db.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("db", type=Path, help="folder of the database (built by --build)")
    ap.add_argument("--build", action="store_true", help="load and index the database first")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    if args.build:
        args.db.mkdir(parents=True, exist_ok=True)
        build(args.db, args.n, args.queries)
    result = measure(args.db, args.n, args.queries, args.rounds)
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"CPU ms per recall (thread time), {args.n:,} memories, load average {load}")
    for name, stages in result.items():
        print(f"  {name:9s} " + "  ".join(f"{k} {v:.2f}" for k, v in stages.items()))


if __name__ == "__main__":
    main()
