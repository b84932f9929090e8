"""PostgreSQL recall latency in a process that only recalls: wall and thread CPU.

    PYTHONPATH=src:. python bench/pg_recall_only.py --url URL [--queries Q] [--rounds R]

On a database an earlier ``bench/scale_pg.py --no-time`` loaded (the same
corpus, seeded vectors, 20 namespaces, query embedding excluded, k=10): Q
warm-up recalls, then R rounds of Q recalls unscoped and Q scoped to one
namespace (5% of the rows), alternating; p50 / p95 of each recall's wall
time and of the calling thread's CPU time, in ms. Unlike ``bench/scale_pg.py``
no NumPy product runs between the recalls (its threads compete for the two
cores). Where the storage predicts its searches (``storage.predictor``), how
many predictions answered a search and how many were sent and not used.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np

import engramdb
from bench.scale import NAMESPACES, corpus, vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--memories", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    n, reps = args.memories, args.queries
    texts = corpus(n + reps)
    queries = [" ".join(t.split()[:6]) for t in texts[-reps:]]
    qv = vectors(n + reps, 384)[n:]
    load = os.getloadavg()
    times: dict[str, list[tuple[float, float]]] = {"unscoped": [], "scoped": []}
    with engramdb.open(args.url) as db:
        for i in range(reps):  # warm-up: words stemmed, pages and plans cached
            db.recall(queries[i], k=10, query_embedding=qv[i].tolist())
        for _ in range(args.rounds):
            for mode, rows in times.items():
                for i in range(reps):
                    scope: dict[str, Any] = ({"namespace": f"scale/ns{i % NAMESPACES}"}
                                             if mode == "scoped" else {})
                    w0, c0 = time.perf_counter(), time.thread_time()
                    db.recall(queries[i], k=10, query_embedding=qv[i].tolist(), **scope)
                    rows.append(((time.perf_counter() - w0) * 1000,
                                 (time.thread_time() - c0) * 1000))
        predictor = getattr(db.storage, "predictor", None)
        ahead = None if predictor is None else {"held": predictor.held,
                                                "missed": predictor.missed}
    out: dict[str, Any] = {"memories": n, "queries": reps, "rounds": args.rounds}
    for mode, rows in times.items():
        for i, what in enumerate(("wall", "cpu")):
            out[f"{mode}_{what}_p50_p95_ms"] = [
                round(float(np.percentile([r[i] for r in rows], p)), 2) for p in (50, 95)]
    print(json.dumps({**out, "ahead": ahead, "load_start": load, "load_end": os.getloadavg()}))


if __name__ == "__main__":
    main()
