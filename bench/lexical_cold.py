"""Cold start and memory per process of SQLite recall: the first recall after opening, and
what each of several processes open on one database holds privately.

Each process opens the outside check's database (``bench/recall_lexical.py --build DIR``
makes it; one copy per checkout, recalls write read-audit events), times its first
recall (unscoped, query embedding given, so no embedder runs), waits until a recall is
ranked by the in-process full-text index (above its sync threshold the index is built in
the background while FTS5 answers), then makes ``--recalls``
more (unscoped and scoped to one of 20 namespaces, taking turns) and waits. While all of
them are open, the parent reads each one's memory from ``/proc``: ``RssAnon`` (private,
anonymous pages: what the process holds alone), ``RssFile`` (mapped file pages, shared
with the page cache and the other processes), and ``Pss`` (each shared page divided
among the processes mapping it). The processes start one after another (``--together``:
at once), so from the second on the first recall is what opening costs when another
process has already been there::

    PYTHONPATH=src python bench/lexical_cold.py DIR [--procs 2] [--recalls 60] [--together]

``--build-text N`` makes a text-only database of the check's first N sentences instead
(no embedder, no vectors: recall ranks full text alone), quicker to build at 1M::

    PYTHONPATH=src nice -n 19 python bench/lexical_cold.py DIR1M --n 1000000 --build-text
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

CHECKS = Path(os.environ.get("ENGRAM_CHECKS",
                            Path(__file__).resolve().parents[2] / "shared" / "checks"))


def build_text(path: Path, n: int) -> None:
    sys.path.insert(0, str(CHECKS))
    from common import actor  # type: ignore[import-not-found]
    from corpus import corpus  # type: ignore[import-not-found]

    import engramdb

    texts = corpus(n + 300)
    (path / "corpus.txt").write_text("\n".join(texts), encoding="utf-8")
    db = engramdb.open(path / "speed.db", synchronous="NORMAL", embedder=None)
    me = actor(db, "loader")
    for i in range(0, n, 5000):
        me.remember_many([{"text": texts[j], "namespace": f"corp/ns{j % 20}",
                           "layer": "episodic"} for j in range(i, min(n, i + 5000))])
    db.close()


def child(path: Path, n: int, recalls: int, wait: float) -> None:
    sys.path.insert(0, str(CHECKS))
    from common import actor  # type: ignore[import-not-found]

    import engramdb

    texts = (path / "corpus.txt").read_text(encoding="utf-8").split("\n")
    queries = [" ".join(t.split()[:6]) for t in texts[n:n + 300]]
    del texts
    text_only = not (path / "qv.npy").exists()
    qv = None if text_only else np.load(path / "qv.npy")

    def given(i: int) -> dict[str, Any]:
        return {} if qv is None else {"query_embedding": qv[i].tolist()}

    t0 = time.perf_counter()
    db = (engramdb.open(path / "speed.db", synchronous="NORMAL", embedder=None) if text_only
          else engramdb.open(path / "speed.db", synchronous="NORMAL"))
    me = actor(db, "loader")
    opened = time.perf_counter() - t0
    t1 = time.perf_counter()
    me.recall(queries[0], namespace="corp/**", k=10, **given(0))
    first = time.perf_counter() - t1
    lexical = db.storage._lexical
    vindex = db.storage._vindex
    # What the first recall searched its vectors with: the shared snapshot (its rows)
    # and the rows this process read into memory (the delta: all of them if no snapshot).
    first_vec = None if vindex is None else {
        "snapshot_rows": None if vindex._snap is None else vindex._snap.n,
        "delta_rows": len(vindex._delta)}

    def vectors_ready() -> bool:
        return vindex is None or vindex._snap is not None

    # Above its sync threshold the index is built in the background (FTS5 answers
    # meanwhile): wait until a recall is ranked by it (and, with vectors, until the
    # vector snapshot is published and used).
    while ((getattr(lexical, "_index", None) is None or not vectors_ready())
           and time.perf_counter() - t1 < wait):
        time.sleep(0.2)
        me.recall(queries[0], namespace="corp/**", k=10, **given(0))
    ready = time.perf_counter() - t1
    walls = []
    for i in range(1, recalls + 1):
        w = time.perf_counter()
        me.recall(queries[i], namespace="corp/**" if i % 2 else f"corp/ns{i % 20}", k=10,
                  **given(i))
        walls.append((time.perf_counter() - w) * 1000)
    index = getattr(lexical, "_index", None)
    print(json.dumps({"open_s": opened, "first_recall_s": first, "index_ready_s": ready,
                      "later_p50_ms": float(np.percentile(walls, 50)) if walls else None,
                      "builds": lexical.builds,
                      "first_vectors": first_vec,
                      "vector_builds": None if vindex is None else vindex.builds,
                      "delta_rows": None if vindex is None else len(vindex._delta),
                      "index_rows": None if index is None else len(index)}), flush=True)
    sys.stdin.readline()
    db.close()


def evict(path: Path) -> float:
    """Drop the database's and its snapshots' pages from the page cache (only these
    files: ``posix_fadvise(DONTNEED)``, so other processes' cached files stay); returns
    the MB of them that were cached before (``fincore``)."""
    files = [str(f) for f in [*path.glob("speed.db*"), *path.glob("speed.db-vindex/**/*")]
             if f.is_file()]
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", *files],
                         capture_output=True, text=True, check=False).stdout
    cached = sum(int(x) for x in out.split()) / 2**20
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return cached


def memory(pid: int) -> dict[str, float]:
    out: dict[str, float] = {}
    with Path(f"/proc/{pid}/status").open(encoding="ascii") as fh:
        for line in fh:
            key = line.split(":")[0]
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = int(line.split()[1]) / 1024
    with Path(f"/proc/{pid}/smaps_rollup").open(encoding="ascii") as fh:
        for line in fh:
            key = line.split(":")[0]
            if key in ("Pss", "Private_Clean", "Private_Dirty", "Shared_Clean"):
                out[key] = int(line.split()[1]) / 1024
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("db", type=Path)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--recalls", type=int, default=60)
    ap.add_argument("--together", action="store_true")
    ap.add_argument("--wait", type=float, default=600,
                    help="seconds a process waits for the in-process indexes")
    ap.add_argument("--cold", action="store_true",
                    help="evict the database's and snapshots' pages from the page cache "
                         "before each process starts")
    ap.add_argument("--build-text", action="store_true")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.build_text:
        args.db.mkdir(parents=True, exist_ok=True)
        build_text(args.db, args.n)
        return
    if args.child:
        child(args.db, args.n, args.recalls, args.wait)
        return
    procs: list[subprocess.Popen[str]] = []
    results: list[dict[str, Any]] = []

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, __file__, str(args.db), "--n", str(args.n), "--recalls",
             str(args.recalls), "--wait", str(args.wait), "--child"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    try:
        for _ in range(args.procs):
            if args.cold:
                print(f"evicted {evict(args.db):.0f} MB of cached pages", flush=True)
            procs.append(start())
            if not args.together:
                assert procs[-1].stdout is not None
                results.append(json.loads(procs[-1].stdout.readline()))
        if args.together:
            for p in procs:
                assert p.stdout is not None
                results.append(json.loads(p.stdout.readline()))
        mems = [memory(p.pid) for p in procs]
    finally:
        for p in procs:
            if p.stdin is not None:
                p.stdin.write("\n")
                p.stdin.flush()
        for p in procs:
            p.wait(timeout=120)
    for i, (r, m) in enumerate(zip(results, mems, strict=True)):
        print(f"process {i}: open {r['open_s'] * 1000:.0f} ms, first recall "
              f"{r['first_recall_s'] * 1000:.0f} ms, index ranking after "
              f"{r['index_ready_s'] * 1000:.0f} ms, later p50 {r['later_p50_ms']:.1f} ms, "
              f"index builds {r['builds']}, index rows {r['index_rows']}, vectors in the first "
              f"recall {r['first_vectors']}, vector builds {r['vector_builds']}, delta rows "
              f"{r['delta_rows']} | " + ", ".join(
                  f"{k} {v:.0f} MB" for k, v in m.items()))
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
