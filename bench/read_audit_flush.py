"""What the read audit's flush costs the recall that triggers it, on the check's database.

Runs recalls of the outside check's held-out queries (``k=10``, unscoped and
scoped in turn) with the audit's triggers off, so ``batch_size`` reads are
buffered, then times ``flush()`` (wall and thread CPU) and counts the garbage
collector's passes inside it (by generation). Repeated ``--flushes`` times;
each flush writes one batch of 256 reads into the database (use a copy).

Database: the check's, as ``bench/recall_lexical.py --build DIR`` makes it::

    PYTHONPATH=src python bench/read_audit_flush.py DIR [--flushes 8]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

CHECKS = Path(os.environ.get("ENGRAM_CHECKS",
                            Path(__file__).resolve().parents[2] / "shared" / "checks"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("db", type=Path, help="folder of the check's database (a copy)")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--flushes", type=int, default=8)
    args = ap.parse_args()
    sys.path.insert(0, str(CHECKS))
    from common import actor  # type: ignore[import-not-found]

    import engramdb

    texts = (args.db / "corpus.txt").read_text(encoding="utf-8").split("\n")
    queries = [" ".join(t.split()[:6]) for t in texts[args.n:args.n + 300]]
    qv = np.load(args.db / "qv.npy")
    db = engramdb.open(args.db / "speed.db", synchronous="NORMAL")
    me = actor(db, "loader")
    audit = db.read_audit
    size = audit.batch_size
    audit.batch_size, audit.interval_s = 10**9, 1e9  # this script flushes
    passes = [0, 0, 0]
    inside = [False]

    def count(phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and inside[0]:
            passes[info["generation"]] += 1

    gc.callbacks.append(count)
    print(f"load average {os.getloadavg()[0]:.2f}; {size} reads a flush")
    walls, cpus = [], []
    i = 0
    for _ in range(args.flushes):
        for _ in range(size):
            ns = "corp/**" if i % 2 else f"corp/ns{i % 20}"
            me.recall(queries[i % 300], namespace=ns, k=10, query_embedding=qv[i % 300].tolist())
            i += 1
        inside[0] = True
        wall, cpu = time.perf_counter(), time.thread_time()
        written = audit.flush()
        walls.append((time.perf_counter() - wall) * 1000)
        cpus.append((time.thread_time() - cpu) * 1000)
        inside[0] = False
        assert written == size
    print("flush wall ms: " + " ".join(f"{w:.1f}" for w in walls)
          + f"; median {np.median(walls):.2f}")
    print("flush CPU ms:  " + " ".join(f"{c:.1f}" for c in cpus)
          + f"; median {np.median(cpus):.2f}")
    print(f"collector passes inside the flushes (young / middle / full): {passes}")
    print(f"load average after {os.getloadavg()[0]:.2f}")
    db.close()


if __name__ == "__main__":
    main()
