"""The memory layers' speed: context assembly at 100k memories, tool outcome writes.

Issue 11's figures, each with a baseline measured in the same run on the same
database (the machine is shared; ratios travel better than absolute numbers):

* ``context``: ``context(task, 4000, session=...)`` over 100,000 memories
  (80k semantic in 20 namespaces, 15k episodes in 100 sessions, 5k
  procedures; 5 pinned blocks; tool outcomes for the tools the task names),
  p50/p95 with the query embedding precomputed (excluded, as the issue asks).
  Baselines: ``recall(task, k=200)`` (the one search ``context`` used to run
  for a 4,000-token budget), ``recall(task, k=66)`` (the one it runs now) and
  ``recall(task, k=10)``, same embedding.
* ``tool_outcome``: one outcome per call (its own transaction, deferred
  durability: the default), and with ``durable=True`` (SQLite
  ``synchronous=FULL``), p50/p95 latency; baselines: ``remember`` of one
  memory with a precomputed embedding, and bare ``sqlite3`` one-row commits at
  ``FULL`` and at ``NORMAL`` (the floors of the durable and deferred calls),
  and a loop burning the deferred call's median CPU time without I/O (on a
  shared machine, the scheduler's share of a p95). Both again with ``synchronous=NORMAL``
  (no fsync per commit): the engine's own cost, apart from the disk's.
  Baseline for both: a bare ``sqlite3`` single-row commit (WAL, same
  ``synchronous``) on the same disk, taking turns with them: the fsync floor.
  Batched: outcomes per second written
  1,000 per transaction (``tx.tool_outcome``); baseline: ``remember_many`` of
  episodic memories, memories per second.

* ``tool_stats("fetch")`` over every outcome of the run (p50, p95), all time
  and ``since=``: a whole hour before them all, and a moment half-way through
  the batched writes (the edge of an hour).

Embeddings are random unit vectors under the default embedder's identity, so
the model never runs. Usage::

    python bench/bench_layers.py [--n 100000] [--runs 60] [--out bench/results/layers.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_postgres import Corpus  # noqa: E402


def _pct(xs: list[float], p: float) -> float:
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def _timed(fn: Any, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def _alternating(fns: list[Any], runs: int) -> list[list[float]]:
    """Each of ``fns`` timed ``runs`` times, taking turns (same machine state for all)."""
    out: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for fn, xs in zip(fns, out, strict=True):
            t = time.perf_counter()
            fn()
            xs.append((time.perf_counter() - t) * 1000)
    return out


class _Bare:
    """A bare ``sqlite3`` single-row commit on the same disk: the floor a durable
    single write pays (WAL, ``BEGIN IMMEDIATE``, one insert, ``COMMIT``)."""

    def __init__(self, path: Path, synchronous: str) -> None:
        import sqlite3

        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(f"PRAGMA synchronous={synchronous}")
        self.conn.execute("CREATE TABLE IF NOT EXISTS t (id TEXT PRIMARY KEY, tool TEXT, "
                          "ok INTEGER, latency_ms REAL, recorded_at INTEGER)")
        self.n = 0

    def __call__(self) -> None:
        self.n += 1
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute("INSERT INTO t VALUES (?, ?, ?, ?, ?)",
                          (f"{time.time_ns()}-{self.n}", "fetch", 1, 12.0, time.time_ns()))
        self.conn.execute("COMMIT")


def _p(xs: list[float]) -> dict[str, float]:
    return {"p50_ms": round(statistics.median(xs), 3), "p95_ms": round(_pct(xs, 95), 3)}


def _build(db: Any, corpus: Corpus, n: int) -> dict[str, Any]:
    semantic, episodic = int(n * 0.80), int(n * 0.15)
    procedural = n - semantic - episodic
    started = time.perf_counter()
    for layer, count in (("semantic", semantic), ("episodic", episodic),
                         ("procedural", procedural)):
        done = 0
        while done < count:
            size = min(2_000, count - done)
            drafts = corpus.drafts(size, layer=layer)
            for i, d in enumerate(drafts):
                if layer == "episodic":
                    d["session"] = f"s{(done + i) % 100}"
                    d["metadata"] = {"role": "user" if i % 2 else "assistant"}
                if layer == "procedural":
                    d["metadata"] = {"procedure": f"proc-{done + i}"}
            db.remember_many(drafts)
            done += size
    return {"memories": n, "semantic": semantic, "episodic": episodic,
            "procedural": procedural, "build_s": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--single", type=int, default=300)
    parser.add_argument("--batched", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--keep", type=Path, default=None,
                        help="folder keeping the built corpus (base.db) between runs; each run "
                             "works on a copy of it")
    args = parser.parse_args()

    import engramdb
    from engramdb.retrieval.embed import LocalEmbedder

    corpus = Corpus(seed=11)
    report: dict[str, Any] = {"load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="engram-layers-") as tmp:
        path = Path(tmp) / "layers.db"
        base = args.keep / f"base-{args.n}.db" if args.keep else None
        if base is not None and base.exists():
            for f in base.parent.glob(base.name + "*"):
                (shutil.copytree if f.is_dir() else shutil.copy)(
                    f, path.parent / f.name.replace(base.name, path.name))
            db = engramdb.open(path, embedder=LocalEmbedder())
            report["corpus"] = json.loads(base.with_suffix(".json").read_text())
        else:
            db = engramdb.open(path, embedder=LocalEmbedder())
            report["corpus"] = _build(db, corpus, args.n)
            # The snapshot a running database folds its recent writes into (in the
            # background) before the measured reads, as it would have by then.
            db.storage.rebuild_vector_index()
            if base is not None:
                base.parent.mkdir(parents=True, exist_ok=True)
                db.close()
                for f in path.parent.glob(path.name + "*"):
                    (shutil.copytree if f.is_dir() else shutil.copy)(
                        f, base.parent / f.name.replace(path.name, base.name))
                base.with_suffix(".json").write_text(json.dumps(report["corpus"]))
                db = engramdb.open(path, embedder=LocalEmbedder())
        db.admin.create_agent("planner")
        db.admin.grant("planner", "bench/**", ["read", "write"])
        me = db.as_agent("planner")
        probe = Corpus(seed=12)  # the same probes whether the corpus was built or kept
        for i in range(5):
            me.pin(f"block{i}", probe.text(40))
        for start in (0, 1_000):  # a transaction holds at most 1,000 writes
            with me.transaction() as tx:
                for i in range(start, start + 1_000):
                    tx.tool_outcome(("web_search", "calculator")[i % 2], i % 7 != 0,
                                    latency_ms=float(i % 300), error=None if i % 7 else "429")
        qv = probe.vectors(1)[0]
        task = probe.text(12) + " with web_search"
        for _ in range(5):  # warm caches, as a running agent's would be
            me.context(task, 4000, session="s7", query_embedding=qv)
            me.recall(task, k=200, query_embedding=qv)
        ctx_ms = _timed(lambda: me.context(task, 4000, session="s7", query_embedding=qv),
                        args.runs)
        rec_ms = _timed(lambda: me.recall(task, k=200, query_embedding=qv), args.runs)
        rec10_ms = _timed(lambda: me.recall(task, k=10, query_embedding=qv), args.runs)
        rec66_ms = _timed(lambda: me.recall(task, k=66, query_embedding=qv), args.runs)
        ctx = me.context(task, 4000, session="s7", query_embedding=qv)
        report["context"] = {
            "budget": 4000, "tokens": ctx.tokens, "parts": len(ctx.parts),
            "layers": sorted({p.layer for p in ctx.parts}),
            "p50_ms": round(statistics.median(ctx_ms), 1), "p95_ms": round(_pct(ctx_ms, 95), 1),
            "recall_p50_ms": round(statistics.median(rec_ms), 1),
            "recall_p95_ms": round(_pct(rec_ms, 95), 1),
            "ratio_p95": round(_pct(ctx_ms, 95) / _pct(rec_ms, 95), 2),
            "recall10_p50_ms": round(statistics.median(rec10_ms), 1),
            "recall10_p95_ms": round(_pct(rec10_ms, 95), 1),
            "ratio10_p95": round(_pct(ctx_ms, 95) / _pct(rec10_ms, 95), 2),
            "recall66_p50_ms": round(statistics.median(rec66_ms), 1),
            "recall66_p95_ms": round(_pct(rec66_ms, 95), 1),
            "ratio66_p95": round(_pct(ctx_ms, 95) / _pct(rec66_ms, 95), 2),
        }
        print("context:", report["context"], flush=True)

        now = datetime.now(UTC)
        hour0 = now.replace(minute=0, second=0, microsecond=0)  # before every "fetch" outcome
        vec = probe.vectors(1)[0]
        bare = _Bare(Path(tmp) / "bare.db", "FULL")
        bare_normal = _Bare(Path(tmp) / "bare-deferred.db", "NORMAL")
        # Deferred outcomes beside their floor, then the durable writes beside theirs
        # (apart: a durable write's fsync in the same loop stalls the next write).
        # Third baseline: a loop burning the CPU time a deferred outcome takes (median,
        # thread CPU time), no I/O: on a busy machine its p95 is the scheduler's.
        cpu: list[float] = []
        for _ in range(200):
            c = time.thread_time()
            me.tool_outcome("fetch", True, latency_ms=12.0)
            cpu.append(time.thread_time() - c)
        cpu_s = statistics.median(cpu)

        def burn() -> None:
            c = time.thread_time()
            while time.thread_time() - c < cpu_s:
                pass
        one, raw_normal, burned = _alternating([
            lambda: me.tool_outcome("fetch", True, latency_ms=12.0), bare_normal, burn],
            args.single)
        durable, rem, raw = _alternating([
            lambda: me.tool_outcome("fetch", True, latency_ms=12.0, durable=True),
            lambda: me.remember("a single note", layer="episodic", embedding=vec),
            bare], args.single)
        t = time.perf_counter()
        left = args.batched
        mid = None
        while left:
            size = min(1_000, left)
            with me.transaction() as tx:
                for i in range(size):
                    tx.tool_outcome("fetch", i % 5 != 0, latency_ms=float(i % 100),
                                    error=None if i % 5 else "timeout")
            left -= size
            if mid is None and left <= args.batched // 2:
                mid = datetime.now(UTC)  # half the batched outcomes are after it
        batched = args.batched / (time.perf_counter() - t)
        drafts = corpus.drafts(args.batched, layer="episodic")
        t = time.perf_counter()
        for i in range(0, len(drafts), 2_000):
            me.remember_many([{**d, "namespace": "bench/w"} for d in drafts[i:i + 2_000]])
        many = args.batched / (time.perf_counter() - t)
        report["tool_outcome"] = {
            "single_p50_ms": round(statistics.median(one), 2),
            "single_p95_ms": round(_pct(one, 95), 2),
            "durable_p50_ms": round(statistics.median(durable), 2),
            "durable_p95_ms": round(_pct(durable, 95), 2),
            "cpu_ms_median": round(cpu_s * 1000, 3),
            "same_cpu_loop_p50_ms": _p(burned)["p50_ms"],
            "same_cpu_loop_p95_ms": _p(burned)["p95_ms"],
            "bare_sqlite_normal_commit_p50_ms": _p(raw_normal)["p50_ms"],
            "bare_sqlite_normal_commit_p95_ms": _p(raw_normal)["p95_ms"],
            "remember_p50_ms": round(statistics.median(rem), 2),
            "remember_p95_ms": round(_pct(rem, 95), 2),
            "batched_per_s": round(batched), "remember_many_per_s": round(many),
            "synchronous": "FULL",
            "bare_sqlite_commit_p50_ms": _p(raw)["p50_ms"],
            "bare_sqlite_commit_p95_ms": _p(raw)["p95_ms"],
        }
        print("tool_outcome:", report["tool_outcome"], flush=True)
        # tool_stats over every "fetch" outcome: all time, since a whole hour before
        # them all (whole hours only), and since a moment half-way through the batches
        # (the edge: the outcomes of that hour from then on).
        assert mid is not None
        stats_ms, hour_ms, edge_ms = _alternating([
            lambda: me.tool_stats("fetch"), lambda: me.tool_stats("fetch", since=hour0),
            lambda: me.tool_stats("fetch", since=mid)], max(5, args.runs // 4))
        report["tool_stats"] = {
            "calls": me.tool_stats("fetch")[0].calls,
            "since_hour_calls": me.tool_stats("fetch", since=hour0)[0].calls,
            "since_mid_calls": me.tool_stats("fetch", since=mid)[0].calls,
            "all_time": _p(stats_ms), "since_whole_hour": _p(hour_ms),
            "since_mid_hour": _p(edge_ms)}
        print("tool_stats:", report["tool_stats"], flush=True)
        db.close()
        # The same writes without an fsync per commit: what the engine itself costs.
        db = engramdb.open(path, embedder=LocalEmbedder(), synchronous="NORMAL")
        me = db.as_agent("planner")
        bare = _Bare(Path(tmp) / "bare-normal.db", "NORMAL")
        one, rem, raw = _alternating([
            lambda: me.tool_outcome("fetch", True, latency_ms=12.0),
            lambda: me.remember("a single note", layer="episodic", embedding=vec),
            bare], args.single)
        report["tool_outcome_normal"] = {
            "single_p50_ms": round(statistics.median(one), 2),
            "single_p95_ms": round(_pct(one, 95), 2),
            "remember_p50_ms": round(statistics.median(rem), 2),
            "remember_p95_ms": round(_pct(rem, 95), 2), "synchronous": "NORMAL",
            "bare_sqlite_commit_p50_ms": _p(raw)["p50_ms"],
            "bare_sqlite_commit_p95_ms": _p(raw)["p95_ms"]}
        print("tool_outcome (NORMAL):", report["tool_outcome_normal"], flush=True)
        db.close()
    report["load_after"] = os.getloadavg()
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
