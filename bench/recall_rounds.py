"""The outside recall check's loop, round by round, in CPU and wall time; and its answers.

``../shared/checks/recall_speed.py`` times the first 100 held-out queries three times
over, unscoped then scoped to one of 20 namespaces. Its first unscoped round meets
every query for the first time (words to stem, rows and graph nodes not yet in the
CPU's caches), the later rounds and the scoped side
meet them again; so this reports per side the thread CPU and wall time of all 300
recalls (p50 / p95) and the mean CPU of round 0 and of rounds 1-2, for one process of
whichever code is first on ``PYTHONPATH``. Run it in turn with two checkouts.

(Before 37801f6 a recall given a query embedding still embedded a first-person form of
a query naming a candidate's speaker; now the given vector is searched as it is.)
``--dump FILE`` writes the 600 recalls (each query unscoped and scoped, ``as_of`` the
database's head when opened) to compare two checkouts with ``--compare A B``.

Database: the check's, as ``bench/recall_lexical.py --build DIR`` makes it (one copy
per checkout: recalls write read-audit events)::

    PYTHONPATH=src python bench/recall_rounds.py DIR
    PYTHONPATH=src python bench/recall_rounds.py DIR --dump /tmp/a.pkl
    PYTHONPATH=src python bench/recall_rounds.py DIR1M --n 1000000 --sync-index
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

CHECKS = Path(os.environ.get("ENGRAM_CHECKS",
                            Path(__file__).resolve().parents[2] / "shared" / "checks"))


def _open(path: Path, n: int) -> tuple[Any, Any, list[str], np.ndarray, int]:
    sys.path.insert(0, str(CHECKS))
    from common import actor  # type: ignore[import-not-found]

    import engramdb

    texts = (path / "corpus.txt").read_text(encoding="utf-8").split("\n")
    queries = [" ".join(t.split()[:6]) for t in texts[n:n + 300]]
    db = engramdb.open(path / "speed.db", synchronous="NORMAL")
    head = db.storage.head().tx
    return db, actor(db, "loader"), queries, np.load(path / "qv.npy"), head


def rounds(path: Path, n: int) -> str:
    db, me, queries, qv, _ = _open(path, n)
    me.recall(queries[0], namespace="corp/**", k=10, query_embedding=qv[0].tolist())
    got: dict[tuple[str, int], list[tuple[float, float]]] = {}
    scopes = {"unscoped": lambda i: "corp/**", "scoped": lambda i: f"corp/ns{i % 20}"}
    for r in range(3):
        for side, ns in scopes.items():
            for i in range(100):
                w, c = time.perf_counter(), time.thread_time()
                me.recall(queries[i], namespace=ns(i), k=10, query_embedding=qv[i].tolist())
                got.setdefault((side, r), []).append(
                    ((time.thread_time() - c) * 1000, (time.perf_counter() - w) * 1000))
    db.close()
    out = []
    for side in scopes:
        cpu = [c for r in range(3) for c, _ in got[(side, r)]]
        wall = [w for r in range(3) for _, w in got[(side, r)]]
        first = np.mean([c for c, _ in got[(side, 0)]])
        later = np.mean([c for r in (1, 2) for c, _ in got[(side, r)]])
        out.append(f"{side}: cpu p50/p95 {np.percentile(cpu, 50):.2f}/"
                   f"{np.percentile(cpu, 95):.2f} (round 0 mean {first:.2f}, rounds 1-2 "
                   f"{later:.2f}) wall p50/p95 {np.percentile(wall, 50):.2f}/"
                   f"{np.percentile(wall, 95):.2f} ms")
    return " | ".join(out) + f" | load {os.getloadavg()[0]:.2f}"


def dump(path: Path, n: int, out: Path) -> None:
    db, me, queries, qv, head = _open(path, n)
    found = []
    for i, q in enumerate(queries):
        for ns in ("corp/**", f"corp/ns{i % 20}"):
            r = me.recall(q, namespace=ns, k=10, as_of=head, query_embedding=qv[i].tolist())
            found.append([(h.memory, h.score, h.why, h.contested) for h in r.hits])
    db.close()
    out.write_bytes(pickle.dumps((head, found)))


def compare(a: Path, b: Path) -> str:
    head_a, found_a = pickle.loads(a.read_bytes())  # files this script wrote
    head_b, found_b = pickle.loads(b.read_bytes())
    if head_a != head_b:
        return f"not comparable: read as of {head_a} and {head_b}"
    same = sum(x == y for x, y in zip(found_a, found_b, strict=True))
    return f"identical recalls (memories, scores, why, contested): {same} of {len(found_a)}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("db", type=Path, nargs="?", help="folder of the check's database")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--sync-index", action="store_true",
                    help="build the full-text index in the first (untimed) recall at any size")
    ap.add_argument("--dump", type=Path)
    ap.add_argument("--compare", type=Path, nargs=2)
    args = ap.parse_args()
    if args.compare:
        print(compare(*args.compare))
        return
    if args.sync_index:
        from engramdb.storage.sqlite.lexical import LexicalSearch

        LexicalSearch.sync_build_max = 10**12
    if args.dump:
        dump(args.db, args.n, args.dump)
    else:
        print(rounds(args.db, args.n))


if __name__ == "__main__":
    main()
