"""Recall at a size built beforehand (1M): open, first recall, p50/p95 unscoped and scoped, RSS.

The database is built the outside check's way (100k-1M docstring sentences, seeded clustered
vectors, 20 namespaces, an agent ``loader``) by ``--build``, which takes long at 1M (run it
niced, outside the bench lock); the measuring run is short (run it under the lock). The query
vectors are saved beside the database at build time, so a measuring process holds only what
recall needs. NumPy exact top-10 over the snapshot's mapped vectors is the baseline; RSS is
printed before it, split into private (anonymous) and file-backed pages::

    PYTHONPATH=src nice -n 10 python bench/recall_at_size.py /tmp/db1m --n 1000000 --build
    PYTHONPATH=src python bench/recall_at_size.py /tmp/db1m --n 1000000
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scale import NAMESPACES, corpus, vectors


def _status() -> dict[str, float]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) / 1024
    return out


def build(path: Path, n: int) -> None:
    import engramdb

    path.mkdir(parents=True, exist_ok=True)
    texts = corpus(n + 300)
    (path / "queries.txt").write_text("\n".join(texts[n:]), encoding="utf-8")
    db = engramdb.open(path / "speed.db", synchronous="NORMAL")
    vec = vectors(n + 300, db.dimension or 384)
    np.save(path / "qv.npy", vec[n:])
    db.admin.create_agent("loader")
    db.admin.grant("loader", "**", ["read", "write"])
    me = db.as_agent("loader")
    for i in range(0, n, 2000):
        me.remember_many([{"text": texts[j], "namespace": f"corp/ns{j % NAMESPACES}",
                           "layer": "episodic", "embedding": vec[j].tolist()}
                          for j in range(i, min(n, i + 2000))])
    del vec
    db.storage.rebuild_vector_index()
    db.close()


def measure(path: Path, rounds: int) -> None:
    import engramdb

    asked = [" ".join(t.split()[:6])
             for t in (path / "queries.txt").read_text(encoding="utf-8").split("\n")]
    qv = np.load(path / "qv.npy")
    before = _status()["VmRSS"]
    t0 = time.perf_counter()
    db = engramdb.open(path / "speed.db", synchronous="NORMAL")
    me = db.as_agent("loader")
    t1 = time.perf_counter()
    me.recall(asked[0], namespace="corp/**", k=10, query_embedding=qv[0].tolist())
    t2 = time.perf_counter()
    print(f"open {t1 - t0:.3f} s, first recall {t2 - t1:.3f} s")
    for name, scope in (("unscoped", lambda i: "corp/**"),
                        ("scoped", lambda i: f"corp/ns{i % NAMESPACES}")):
        ms = []
        for _ in range(rounds):
            for i in range(len(asked)):
                t = time.perf_counter()
                me.recall(asked[i], namespace=scope(i), k=10, query_embedding=qv[i].tolist())
                ms.append((time.perf_counter() - t) * 1000)
        print(f"{name:9s} p50 {np.percentile(ms, 50):7.2f} ms  p95 {np.percentile(ms, 95):7.2f} ms")
    s = _status()
    print(f"RSS {s['VmRSS']:.0f} MB (peak {s['VmHWM']:.0f}; {before:.0f} before opening): "
          f"anonymous {s['RssAnon']:.0f} MB, file-backed {s['RssFile']:.0f} MB")
    vecs = db.storage._vindex._snap.vecs  # the snapshot's mapped vectors: the same ones
    ms = []
    for i in range(30):
        t = time.perf_counter()
        np.argpartition(-(vecs @ qv[i]), 10)[:10]
        ms.append((time.perf_counter() - t) * 1000)
    print(f"NumPy     p50 {np.percentile(ms, 50):7.2f} ms  p95 {np.percentile(ms, 95):7.2f} ms")
    print("load average " + " / ".join(f"{x:.1f}" for x in os.getloadavg()))
    db.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("db", type=Path)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--build", action="store_true", help="load and index first (long)")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    if args.build:
        build(args.db, args.n)
    else:
        measure(args.db, args.rounds)


if __name__ == "__main__":
    main()
