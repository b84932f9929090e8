"""Write-path throughput: batch and single writes, SQLite and PostgreSQL.

Measures what issues 2 and 5 set targets for, with precomputed embeddings
(random unit vectors, so the embedder never runs) and the engine's default
settings (free-text contradiction detection on, ``synchronous=FULL``):

* ``batch``: ``remember_many`` in batches of 2,000, memories per second, in
  the ``episodic`` layer (no contradiction detection) and the ``semantic``
  layer (every memory is checked for free-text rivals);
* ``single``: ``remember`` one memory per transaction, writes per second,
  and the engine's CPU per write (this process's CPU time over the calls:
  validation, encoding, hashing, the driver and, on SQLite, the library itself;
  never the PostgreSQL server's, nor time spent waiting for fsync);
* ``raw-batch`` / ``raw-single``: the bare driver doing comparable work in the
  same run (the ceiling the engine is measured against): one executemany of
  rows carrying the same text, namespace, metadata and embedding in one
  transaction (a psycopg pipeline on PostgreSQL), and one row per committed
  transaction with the same durability (SQLite ``synchronous=FULL``).

Each figure is the best of ``--repeat`` runs on a fresh database (the machine
is shared: the best run is the one least disturbed by other load), and the
load average is printed with it. ``--profile CASE`` runs one case under
cProfile instead and prints the top functions by cumulative and own time.

Usage (from a checkout)::

    python bench/profile_writes.py [--pg] [--n 4000] [--single 300] [--repeat 3]
    python bench/profile_writes.py --profile sqlite-batch-semantic
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_postgres import Corpus  # noqa: E402

BATCH = 2_000


def _open(url: str) -> Any:
    import engramdb
    from engramdb.retrieval.embed import LocalEmbedder

    # The default embedder's identity; its model never loads (embeddings are given).
    return engramdb.open(url, embedder=LocalEmbedder())


@contextmanager
def _sqlite_urls() -> Iterator[Callable[[str], str]]:
    with tempfile.TemporaryDirectory(prefix="engram-profile-") as tmp:
        yield lambda name: str(Path(tmp) / f"{name}.db")


@contextmanager
def _pg_urls() -> Iterator[Callable[[str], str]]:
    from tests.support.pg import PgServer

    from bench.bench_postgres import BENCH_SETTINGS

    server = PgServer(settings=BENCH_SETTINGS)
    server.start()
    try:
        yield server.fresh_database
    finally:
        server.stop()


_CPU: dict[str, float] = {}  # case -> CPU microseconds per write of its last run


def batch(url: str, corpus: Corpus, n: int, layer: str, namespaces: int = 20,
          prof: cProfile.Profile | None = None) -> float:
    """``remember_many`` of ``n`` memories in batches of 2,000; memories per second."""
    drafts = corpus.drafts(n, layer=layer, namespaces=namespaces)
    db = _open(url)
    try:
        if prof:
            prof.enable()
        start, cpu = time.perf_counter(), time.process_time()
        for i in range(0, n, BATCH):
            db.remember_many(drafts[i:i + BATCH])
        seconds = time.perf_counter() - start
        _CPU["last"] = (time.process_time() - cpu) / n * 1e6
        if prof:
            prof.disable()
        assert db.storage.head().seq >= n
    finally:
        db.close()
    return n / seconds


def single(url: str, corpus: Corpus, n: int, layer: str, namespaces: int = 20,
           prof: cProfile.Profile | None = None) -> float:
    """``remember`` ``n`` times, one transaction each; writes per second."""
    drafts = corpus.drafts(n, layer=layer, namespaces=namespaces)
    db = _open(url)
    try:
        db.remember(**drafts[0])  # first write sets up caches; not timed
        if prof:
            prof.enable()
        start, cpu = time.perf_counter(), time.process_time()
        for d in drafts[1:]:
            db.remember(**d)
        seconds = time.perf_counter() - start
        _CPU["last"] = (time.process_time() - cpu) / (n - 1) * 1e6
        if prof:
            prof.disable()
    finally:
        db.close()
    return (n - 1) / seconds


def semantic_at(url: str, corpus: Corpus, size: int, measured: int = 4_000,
                layers: tuple[str, ...] = ("semantic",), settle: bool = False,
                warm: int = 0) -> tuple[dict[str, float], float, float | None]:
    """Memories/s of ``measured`` memories of each of ``layers`` in turn (batches of
    2,000, detection on) written into one namespace already holding ``size``
    semantic memories; the seconds the preload took (written with free-text
    detection off); and, with ``settle``, the seconds PostgreSQL's background
    HNSW indexer then took to index the preload (measured after it: the steady
    state, not a batch racing the index build of the load before it). ``warm``
    memories of each layer are written first, unmeasured: a writer process that
    has written before (in-process indexes loaded), not its first batch; with
    ``settle``, the indexes are waited for after it too."""
    db = _open(url)
    try:
        pre = corpus.drafts(size, layer="semantic", namespaces=1)
        db.admin.configure_namespace("bench/**", detect_free_text=False)
        start = time.perf_counter()
        for i in range(0, size, 5_000):
            db.remember_many(pre[i:i + 5_000])
        load = time.perf_counter() - start
        db.admin.configure_namespace("bench/**", detect_free_text=True)
        settled = None
        if settle and hasattr(db.storage, "wait_for_vector_index"):
            start = time.perf_counter()
            db.storage.wait_for_vector_index(timeout=600)
            settled = time.perf_counter() - start
        db.recall("warm", namespace="bench/**", k=1,
                  query_embedding=corpus.vectors(1)[0].tolist())  # bring indexes up to date
        rates = {}
        for layer in layers:
            if warm:
                rates[f"{layer} (warm-up, {warm:,})"] = _timed(
                    db, corpus.drafts(warm, layer=layer, namespaces=1))
                if settle and hasattr(db.storage, "wait_for_vector_index"):
                    db.storage.wait_for_vector_index(timeout=600)  # indexes built since
            rates[layer] = _timed(db, corpus.drafts(measured, layer=layer, namespaces=1))
        return rates, load, settled
    finally:
        db.close()


def _timed(db: Any, drafts: list[dict[str, Any]]) -> float:
    """Memories/s of ``drafts`` written in batches of 2,000."""
    start = time.perf_counter()
    for i in range(0, len(drafts), BATCH):
        db.remember_many(drafts[i:i + BATCH])
    return len(drafts) / (time.perf_counter() - start)


def _raw_rows(corpus: Corpus, n: int) -> list[tuple[Any, ...]]:
    vecs = corpus.vectors(n)
    return [(f"raw-{i}", f"bench/ns{i % 20}", corpus.text(), "{}", vecs[i]) for i in range(n)]


def _raw_sqlite(path: str) -> Any:
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE raw (id TEXT PRIMARY KEY, namespace TEXT NOT NULL, "
                 "text TEXT NOT NULL, metadata TEXT NOT NULL, vec BLOB NOT NULL)")
    return conn


def raw_batch(url: str, corpus: Corpus, n: int, layer: str, namespaces: int = 20,
              prof: cProfile.Profile | None = None) -> float:
    """The bare driver: ``n`` comparable rows in batches of 2,000, one transaction each."""
    rows = _raw_rows(corpus, n)
    if url.startswith("postgresql"):
        import psycopg
        from pgvector.psycopg import register_vector

        with psycopg.connect(url) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            register_vector(conn)
            conn.execute("CREATE TABLE raw (id TEXT PRIMARY KEY, namespace TEXT NOT NULL, "
                         "text TEXT NOT NULL, metadata JSONB NOT NULL, vec vector(384))")
            conn.commit()
            start = time.perf_counter()
            for i in range(0, n, BATCH):
                with conn.pipeline(), conn.transaction(), conn.cursor() as cur:
                    cur.executemany("INSERT INTO raw VALUES (%s, %s, %s, %s, %s)",
                                    rows[i:i + BATCH])
            return n / (time.perf_counter() - start)
    conn = _raw_sqlite(url)
    try:
        blobs = [(a, b, c, d, v.tobytes()) for a, b, c, d, v in rows]
        start = time.perf_counter()
        for i in range(0, n, BATCH):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO raw VALUES (?, ?, ?, ?, ?)", blobs[i:i + BATCH])
            conn.execute("COMMIT")
        return n / (time.perf_counter() - start)
    finally:
        conn.close()


def raw_single(url: str, corpus: Corpus, n: int, layer: str, namespaces: int = 20,
               prof: cProfile.Profile | None = None) -> float:
    """The bare driver: one comparable row per committed transaction."""
    rows = _raw_rows(corpus, n)
    if url.startswith("postgresql"):
        import psycopg
        from pgvector.psycopg import register_vector

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            register_vector(conn)
            conn.execute("CREATE TABLE raw (id TEXT PRIMARY KEY, namespace TEXT NOT NULL, "
                         "text TEXT NOT NULL, metadata JSONB NOT NULL, vec vector(384))")
            start = time.perf_counter()
            for r in rows:
                conn.execute("INSERT INTO raw VALUES (%s, %s, %s, %s, %s)", r)
            return n / (time.perf_counter() - start)
    conn = _raw_sqlite(url)
    try:
        start = time.perf_counter()
        for a, b, c, d, v in rows:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO raw VALUES (?, ?, ?, ?, ?)", (a, b, c, d, v.tobytes()))
            conn.execute("COMMIT")
        return n / (time.perf_counter() - start)
    finally:
        conn.close()


# name -> (function, layer, namespaces the memories spread over). One namespace is
# the worst case for free-text detection: every memory of a batch is a candidate
# rival of every other.
CASES: dict[str, tuple[Callable[..., float], str, int]] = {
    "raw-batch": (raw_batch, "-", 20),
    "batch-episodic": (batch, "episodic", 20),
    "batch-semantic": (batch, "semantic", 20),
    "batch-semantic-1ns": (batch, "semantic", 1),
    "raw-single": (raw_single, "-", 20),
    "single-episodic": (single, "episodic", 20),
    "single-semantic": (single, "semantic", 20),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pg", action="store_true", help="also measure PostgreSQL")
    ap.add_argument("--pg-only", action="store_true", help="measure PostgreSQL only")
    ap.add_argument("--n", type=int, default=4_000, help="memories per batch run")
    ap.add_argument("--single", type=int, default=300, help="writes per single run")
    ap.add_argument("--repeat", type=int, default=3, help="runs per case (best is kept)")
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    ap.add_argument("--at", default="",
                    help="comma-separated namespace sizes: semantic batches into one "
                         "namespace already holding that many memories (e.g. 4000,100000)")
    ap.add_argument("--at-layers", default="semantic",
                    help="layers measured with --at (comma-separated, e.g. semantic,episodic)")
    ap.add_argument("--settle", action="store_true",
                    help="with --at: wait for the vector index to take in the preload first")
    ap.add_argument("--warm", type=int, default=0,
                    help="with --at: memories of each layer written (and timed apart) "
                         "before the measured ones")
    ap.add_argument("--profile", metavar="BACKEND-CASE",
                    help="profile one case, e.g. sqlite-batch-semantic or postgres-single-episodic")
    args = ap.parse_args()

    if args.profile:
        backend, case = args.profile.split("-", 1)
        fn, layer, spaces = CASES[case]
        n = args.n if fn in (batch, raw_batch) else args.single
        urls = _sqlite_urls() if backend == "sqlite" else _pg_urls()
        with urls as url_for:
            prof = cProfile.Profile()
            rate = fn(url_for("profile"), Corpus(), n, layer, spaces, prof)
        print(f"{args.profile}: {rate:,.0f}/s (under the profiler)")
        stats = pstats.Stats(prof).strip_dirs()
        stats.sort_stats("cumulative").print_stats(35)
        stats.sort_stats("tottime").print_stats(25)
        return

    if args.at:
        layers = tuple(args.at_layers.split(","))
        for backend in ([] if args.pg_only else ["sqlite"]) + (
                ["postgres"] if args.pg or args.pg_only else []):
            urls = _sqlite_urls() if backend == "sqlite" else _pg_urls()
            with urls as url_for:
                for size in (int(x) for x in args.at.split(",")):
                    rates, load, settled = semantic_at(url_for(f"at_{size}"), Corpus(), size,
                                                       args.n, layers, args.settle,
                                                       args.warm)
                    index = "" if settled is None else f", index {settled:.0f} s"
                    for layer, rate in rates.items():
                        print(f"{backend:8} {layer} batch into 1 namespace of {size:>7,}: "
                              f"{rate:8,.0f}/s (preload {load:.0f} s{index})   load "
                              f"{os.getloadavg()[0]:.1f}", flush=True)
        return

    backends = [] if args.pg_only else ["sqlite"]
    if args.pg or args.pg_only:
        backends.append("postgres")
    cases = args.cases.split(",")
    for backend in backends:
        urls = _sqlite_urls() if backend == "sqlite" else _pg_urls()
        with urls as url_for:
            for case in cases:
                fn, layer, spaces = CASES[case]
                n = args.n if fn in (batch, raw_batch) else args.single
                rates, cpus = [], []
                for r in range(args.repeat):
                    _CPU.pop("last", None)
                    rates.append(fn(url_for(f"{case.replace('-', '_')}_{r}"), Corpus(seed=r),
                                    n, layer, spaces))
                    if "last" in _CPU:
                        cpus.append(_CPU["last"])
                cpu = f"   cpu/write min {min(cpus):6.0f} us" if cpus else ""
                print(f"{backend:8} {case:18} n={n:<6} best {max(rates):8,.0f}/s   runs "
                      + " ".join(f"{x:,.0f}" for x in rates) + cpu
                      + f"   load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
