"""PostgreSQL vector search quality and recall latency at 100k memories, any tree.

Loads ``--memories`` memories (20 namespaces) with given embeddings into a fresh
database of a ``tests.support.pg.PgServer``, waits for the background vector
index, then, for ``--queries`` held-out vectors:

* ``overlap_at_10`` / ``overlap_at_50``: how much of the exact top 10 / 50 (ranked
  here with NumPy over the very vectors stored) ``storage.search_vector`` returns,
  unscoped and scoped to one namespace (5%), on the index's path;
* ``recall`` / ``recall_one_namespace``: ``db.recall(text, k=10,
  query_embedding=...)`` latency percentiles, unscoped (``bench/**``) and scoped to
  one namespace (``--lock``: each timed loop holds the shared bench lock).

Vectors: ``--vectors clustered`` (``/work/shared/checks/corpus.py``'s seeded,
clustered unit vectors) or a ``.npy`` file of real text embeddings, one row per
line of ``--texts`` (the memories' texts; queries are the rows after them).
Run with ``PYTHONPATH=<tree>/src:<this checkout>`` to measure any tree.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _vectors(kind: str, n: int) -> np.ndarray:
    if kind == "clustered":
        sys.path.insert(0, "/work/shared/checks")
        from corpus import vectors  # type: ignore[import-not-found]

        return np.asarray(vectors(n, 384), dtype=np.float32)
    v = np.load(kind)[:n].astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@contextlib.contextmanager
def _locked(on: bool) -> Any:
    if not on:
        yield
        return
    with Path("/tmp/engram-bench.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _pct(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {"p50_ms": round(1000 * s[len(s) // 2], 2),
            "p95_ms": round(1000 * s[min(len(s) - 1, int(0.95 * len(s)))], 2),
            "mean_ms": round(1000 * statistics.fmean(s), 2)}


def run(memories: int, queries: int, kind: str, texts_path: str, lock: bool) -> dict[str, Any]:
    from tests.support.pg import PgServer

    import engramdb
    from engramdb.model import RecallFilter
    from engramdb.retrieval.embed import LocalEmbedder

    texts = Path(texts_path).read_text().splitlines()[:memories + queries]
    vecs = _vectors(kind, memories + queries)
    base, qv, qt = vecs[:memories], vecs[memories:], texts[memories:]
    names = [f"bench/ns{i % 20}" for i in range(memories)]
    out: dict[str, Any] = {"memories": memories, "queries": queries, "vectors": kind,
                           "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    settings = {"shared_buffers": "1GB", "maintenance_work_mem": "512MB",
                "effective_cache_size": "4GB"}
    with PgServer(settings=settings) as url:
        db = engramdb.open(url, embedder=LocalEmbedder())
        try:
            start = time.perf_counter()
            ids: list[str] = []
            for i in range(0, memories, 5000):
                drafts = [{"text": texts[j], "namespace": names[j], "layer": "episodic",
                           "embedding": base[j]} for j in range(i, min(memories, i + 5000))]
                ids += [m.id for m in db.remember_many(drafts)]
            out["load_seconds"] = round(time.perf_counter() - start, 1)
            start = time.perf_counter()
            db.storage.wait_for_vector_index(timeout=1200)
            out["index_catch_up_seconds"] = round(time.perf_counter() - start, 1)
            import psycopg

            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("ANALYZE")
                out["indexes"] = [r[0] for r in conn.execute(
                    "SELECT indexname FROM pg_indexes WHERE tablename = 'memory_vectors_ann' "
                    "ORDER BY 1")]
            row = {mid: j for j, mid in enumerate(ids)}
            head = db.storage.head().tx
            scope = "bench/ns3"
            in_scope = np.array([j for j in range(memories) if names[j] == scope])
            for label, flt, pool in (
                    ("unscoped", RecallFilter(as_of=head), np.arange(memories)),
                    ("one_namespace", RecallFilter(namespaces=(scope,), as_of=head),
                     in_scope)):
                o10, o50 = [], []
                for q in qv:
                    sims = base[pool] @ q
                    order = pool[np.argsort(-sims, kind="stable")]
                    got = [row[r["id"]] for r, _ in db.storage.search_vector(q, flt, 50)]
                    o10.append(len(set(order[:10].tolist()) & set(got[:10])) / 10)
                    o50.append(len(set(order[:50].tolist()) & set(got)) / 50)
                out[f"overlap_{label}"] = {"at_10": round(float(np.mean(o10)), 4),
                                           "at_50": round(float(np.mean(o50)), 4)}
            for label, ns in (("recall", "bench/**"), ("recall_one_namespace", scope)):
                for t, v in zip(qt[:10], qv[:10], strict=True):  # warm caches and plans
                    db.recall(t, k=10, namespace=ns, query_embedding=v)
                times: list[float] = []
                with _locked(lock):
                    load = os.getloadavg()[0]
                    for t, v in zip(qt, qv, strict=True):
                        s = time.perf_counter()
                        db.recall(t, k=10, namespace=ns, query_embedding=v)
                        times.append(time.perf_counter() - s)
                out[label] = {**_pct(times), "load": round(load, 2)}
                times = []
                flt = (RecallFilter(as_of=head) if ns == "bench/**"
                       else RecallFilter(namespaces=(scope,), as_of=head))
                with _locked(lock):
                    for v in qv:
                        s = time.perf_counter()
                        db.storage.search_vector(v, flt, 50)
                        times.append(time.perf_counter() - s)
                out[label]["search_vector"] = _pct(times)
        finally:
            db.close()
    out["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--vectors", default="clustered",
                        help="'clustered' or a .npy file of embeddings of --texts' lines")
    parser.add_argument("--texts", default="/tmp/lead16/corpus-100000.txt")
    parser.add_argument("--lock", action="store_true", help="time under the shared lock")
    args = parser.parse_args()
    print(json.dumps(run(args.memories, args.queries, args.vectors, args.texts, args.lock),
                     indent=2))
