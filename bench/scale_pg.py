"""PostgreSQL recall latency at one size, beside NumPy, without the SQLite leg.

    PYTHONPATH=src:. python bench/scale_pg.py [--memories N] [--queries Q] [--url URL]

The corpus, vectors and timing loop of ``bench/scale.py`` (docstring
sentences, seeded clustered vectors, query embedding excluded, 20 namespaces,
three rounds alternating EngramDB unscoped, scoped to one namespace, and NumPy
exact top-10 over the same vectors in this process), on PostgreSQL only: the
test suite's embedded server (``tests.support.pg.PgServer``) unless ``--url``
names one. The HNSW projection has caught up before timing.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import engramdb
from bench.scale import NAMESPACES, _measure, corpus, vectors


def run(url: str, n: int, reps: int, *, load: bool = True, time_it: bool = True
        ) -> dict[str, Any]:
    """Load ``n`` memories into ``url`` (unless ``load`` is false: already loaded) and time."""
    texts_all = corpus(n + reps)
    texts, queries = texts_all[:n], [" ".join(t.split()[:6]) for t in texts_all[-reps:]]
    db = engramdb.open(url)
    load_s = index_s = 0.0
    timings: dict[str, Any] = {}
    try:
        vec_all = vectors(n + reps, db.dimension or 384)
        vec, qv = vec_all[:n], vec_all[n:]
        start = time.perf_counter()
        for i in range(0, n if load else 0, 2000):
            db.remember_many([{"text": texts[j], "namespace": f"scale/ns{j % NAMESPACES}",
                               "layer": "episodic", "embedding": vec[j].tolist()}
                              for j in range(i, min(n, i + 2000))])
        load_s = time.perf_counter() - start
        start = time.perf_counter()
        db.storage.wait_for_vector_index(timeout=3600)
        index_s = time.perf_counter() - start
        if time_it:
            timings = _measure(db, texts, vec, qv, queries, reps)
    finally:
        db.close()
    return {"memories": n, "queries": reps, "load_s": round(load_s, 1),
            "index_s": round(index_s, 1),
            **{f"{k}_p50_p95_ms": [round(x, 1) for x in v] for k, v in timings.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--url", default=None, help="a PostgreSQL URL (default: embedded)")
    parser.add_argument("--no-load", action="store_true",
                        help="--url already holds these N memories (an earlier --no-time run)")
    parser.add_argument("--no-time", action="store_true", help="load and index only")
    args = parser.parse_args()
    load = os.getloadavg()
    server = None
    url = args.url
    if url is None:
        from tests.support.pg import PgServer

        server = PgServer()
        server.start()
        url = server.fresh_database("scale_pg")
    try:
        result = run(url, args.memories, args.queries, load=not args.no_load,
                     time_it=not args.no_time)
    finally:
        if server is not None:
            server.stop()
    print(json.dumps({**result, "load_start": load, "load_end": os.getloadavg()}, indent=2))


if __name__ == "__main__":
    main()
