"""Recall with the in-process full-text index (storage/sqlite/lexical.py) against FTS5's
own ranking, in one process, taking turns, on the outside check's database.

The index is switched off by raising ``LexicalSearch.min_rows`` (FTS5 then ranks as
on main), so both sides read the same file, the same vector snapshot and the same
page cache; only the full-text ranking differs. Reported per side and scope: wall
p50/p95 and CPU p50/p95 of whole recalls, the full-text stage's CPU, and whether
every query's top k (ids, versions, scores) is identical with and without the index.

Database: the one ``../shared/checks/recall_speed.py`` builds (docstring sentences,
seeded clustered vectors, 20 namespaces; ``--build`` makes it here with the check's
own corpus code). Queries: the first six words of the 300 held-out sentences.

    PYTHONPATH=src python bench/recall_lexical.py DIR [--build] [--n 100000] [--rounds 3]

``--build-only`` makes the database and then its shared vector snapshot (graphs built
with ``--threads``, default 2) and stops, e.g. the 1M one the cold-start bench opens
(``bench/lexical_cold.py DIR --n 1000000 --cold``); ~3 min to load and ~8 min to index
at 1M on this machine::

    PYTHONPATH=src nice -n 10 python bench/recall_lexical.py DIR --n 1000000 --build-only
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

# The outside checks' folder (its corpus code): ../shared/checks beside the checkout.
CHECKS = Path(os.environ.get("ENGRAM_CHECKS",
                            Path(__file__).resolve().parents[2] / "shared" / "checks"))
OFF = 10**12


def _build(path: Path, n: int) -> None:
    sys.path.insert(0, str(CHECKS))
    from common import actor  # type: ignore[import-not-found]
    from corpus import corpus, vectors  # type: ignore[import-not-found]

    import engramdb

    texts = corpus(n + 300)
    (path / "corpus.txt").write_text("\n".join(texts), encoding="utf-8")
    db = engramdb.open(path / "speed.db", synchronous="NORMAL")
    vec = vectors(n + 300, db.dimension or 384)
    np.save(path / "qv.npy", vec[n:])
    me = actor(db, "loader")
    for i in range(0, n, 2000):
        me.remember_many([{"text": texts[j], "namespace": f"corp/ns{j % 20}",
                           "layer": "episodic", "embedding": vec[j].tolist()}
                          for j in range(i, min(n, i + 2000))])
    db.close()


def measure(path: Path, n: int, rounds: int) -> dict[str, Any]:
    sys.path.insert(0, str(CHECKS))
    from common import actor  # type: ignore[import-not-found]

    import engramdb
    from engramdb.storage import sqlite

    texts = (path / "corpus.txt").read_text(encoding="utf-8").split("\n")
    queries = [" ".join(t.split()[:6]) for t in texts[n:n + 300]]
    del texts  # not counted in the memory figures
    qv = np.load(path / "qv.npy")
    db = engramdb.open(path / "speed.db", synchronous="NORMAL")
    me = actor(db, "loader")
    lexical = db.storage._lexical
    text_cpu = [0.0]
    search_text = sqlite.SQLiteStorage.search_text

    def timed_text(self: Any, *args: Any, **kwargs: Any) -> Any:
        t = time.thread_time()
        try:
            return search_text(self, *args, **kwargs)
        finally:
            text_cpu[0] += time.thread_time() - t

    sqlite.SQLiteStorage.search_text = timed_text  # type: ignore[method-assign]
    type(lexical).sync_build_max = 10**9  # build the index in the first recall (timed)
    t0 = time.perf_counter()
    me.recall(queries[0], namespace="corp/**", k=10, query_embedding=qv[0].tolist())
    first = time.perf_counter() - t0
    scopes = {"unscoped": lambda i: "corp/**", "one namespace": lambda i: f"corp/ns{i % 20}"}
    out: dict[str, Any] = {"first recall s": first, "load": os.getloadavg()}
    for r in range(rounds):
        for side in ("fts5", "index") if r % 2 == 0 else ("index", "fts5"):
            lexical.min_rows = OFF if side == "fts5" else type(lexical).min_rows
            for scope, ns in scopes.items():
                wall, cpu, text = [], [], []
                for i, q in enumerate(queries):
                    text_cpu[0] = 0.0
                    w, c = time.perf_counter(), time.thread_time()
                    me.recall(q, namespace=ns(i), k=10, query_embedding=qv[i].tolist())
                    cpu.append((time.thread_time() - c) * 1000)
                    wall.append((time.perf_counter() - w) * 1000)
                    text.append(text_cpu[0] * 1000)
                out.setdefault((side, scope), []).append(
                    {k: (float(np.percentile(v, 50)), float(np.percentile(v, 95)))
                     for k, v in (("wall", wall), ("cpu", cpu), ("text cpu", text))})
    # Identity: the same recall as of one transaction (no reinforcement, no clock in
    # the scores) with and without the index, query by query.
    head = db.storage.head().tx
    same = {}
    for scope, ns in scopes.items():
        same[scope] = 0
        for i, q in enumerate(queries):
            got = []
            for side in ("fts5", "index"):
                lexical.min_rows = OFF if side == "fts5" else type(lexical).min_rows
                got.append([(h.memory.id, h.memory.version, h.score) for h in me.recall(
                    q, namespace=ns(i), k=10, as_of=head, query_embedding=qv[i].tolist()).hits])
            same[scope] += got[0] == got[1]
    out["identical top 10 (of 300, as of one transaction)"] = same
    out["load after"] = os.getloadavg()
    out["memory MB"] = _memory()
    db.close()
    return out


def _memory() -> dict[str, float]:
    """This process's resident memory: all, peak, private (anonymous), file pages."""
    keys = {"VmRSS": "rss", "VmHWM": "peak", "RssAnon": "anonymous", "RssFile": "file"}
    out = {}
    with Path("/proc/self/status").open(encoding="ascii") as fh:
        for line in fh:
            name = line.split(":")[0]
            if name in keys:
                out[keys[name]] = int(line.split()[1]) / 1024
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("db", type=Path, help="folder of the database (built by --build)")
    ap.add_argument("--build", action="store_true")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--build-only", action="store_true",
                    help="build the database and its vector snapshot, measure nothing")
    ap.add_argument("--threads", type=int, default=2, help="threads building the graphs")
    args = ap.parse_args()
    args.db.mkdir(parents=True, exist_ok=True)
    if args.build or args.build_only:
        _build(args.db, args.n)
    if args.build_only:
        import sqlite3

        from engramdb.storage.sqlite.snapshot import build_lock, build_snapshot, index_dir

        path = str(args.db / "speed.db")
        conn = sqlite3.connect(path, isolation_level=None)
        t = time.perf_counter()
        with build_lock(index_dir(path), wait=True):
            build_snapshot(conn, index_dir(path), 384, threads=args.threads)
        conn.close()
        print(f"vector snapshot built in {time.perf_counter() - t:.0f} s")
        return
    result = measure(args.db, args.n, args.rounds)
    print(f"first recall {result.pop('first recall s'):.3f} s; load {result.pop('load')}")
    for key, runs in result.items():
        if isinstance(key, tuple):
            for i, run in enumerate(runs):
                print(f"{key[0]:6s} {key[1]:14s} round {i}: " + "  ".join(
                    f"{k} p50 {a:.2f} / p95 {b:.2f} ms" for k, (a, b) in run.items()))
        else:
            print(key, result[key])


if __name__ == "__main__":
    main()
