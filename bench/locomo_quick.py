"""LoCoMo recall in seconds, and how much of the evidence recall's candidate pool holds.

``engram bench locomo`` runs the baselines and every k; this reads only its goal rows:
conversation i is asked on a database holding conversations 1..i (as the bench does, so the
full-text statistics match), ``recall(k=25)`` per question as a user would call it, @10 the
first ten of that call (``--k10`` also calls ``recall(k=10)`` and counts the questions whose
first ten differ: 0 while both draw the same candidates). It prints, per half (tuning:
the first half of the conversations, where constants are chosen; held-out: the rest) and
category (1 multi-hop / 2 temporal / 3 open-domain / 4 single-hop), recall@10, recall@25
and the share of evidence turns among the final ranking's candidates ("pool"), then the
wall time and recall's own latency per question (not a timing benchmark: run it under the
bench lock and beside a baseline for that).

    PYTHONPATH=src python bench/locomo_quick.py [--data DIR] [--cache DIR] [--work DIR]
        [--cfg recall_candidates=100 ...] [--k10]

--cfg: EngineConfig fields for the asking handle. The databases are built once in --work.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import sys
import time
from collections import defaultdict
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import engramdb
from engramdb.engine import recall as recall_module
from engramdb.evaluation.locomo import _EmbeddingCache, load_locomo
from engramdb.retrieval.embed import default_embedder

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.locomo_cues import build_snapshots  # the same databases

K = 25


def _value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text == "True" if text in ("True", "False") else text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/locomo-dev")
    ap.add_argument("--cache", default=None, help="embedding cache folder (as the bench's)")
    ap.add_argument("--work", default="/tmp/locomo-quick", help="the databases")
    ap.add_argument("--cfg", nargs="*", default=[])
    ap.add_argument("--k10", action="store_true")
    a = ap.parse_args()
    convs = load_locomo(Path(a.data))
    vectors = _EmbeddingCache(default_embedder(), a.cache and Path(a.cache))
    work = Path(a.work)
    build_snapshots(work, convs, vectors)
    config = {k: _value(v) for k, v in (s.split("=", 1) for s in a.cfg)}
    tuning = {c.sample_id for c in convs[:(len(convs) + 1) // 2]}

    original = recall_module.rank_hybrid
    pool: dict[str, set[str]] = {}

    def ranked(query: str, text_hits: Any, vector_hits: Any, **kw: Any) -> Any:
        if kw.get("k") == K:  # the final ranking (the session seeds ask for fewer)
            pool["ids"] = {str(r["id"]) for r, _ in (*text_hits, *vector_hits)}
        return original(query, text_hits, vector_hits, **kw)

    found: dict[Any, dict[str, dict[int, int]]] = {
        k: defaultdict(lambda: defaultdict(int)) for k in (10, 25, "pool")}
    total: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    latency: list[float] = []
    differ = 0
    started = time.perf_counter()
    recall_module.rank_hybrid = ranked  # type: ignore[assignment]
    try:
        for i, conv in enumerate(convs):
            target = work / "asking.db"
            shutil.copy(work / f"{i}.db", target)  # recall writes its read audit
            ns = f"locomo/{conv.sample_id.lower()}"
            with closing(sqlite3.connect(target)) as conn:  # read-only look-up
                dia = {str(m): str(json.loads(meta)["dia_id"]) for m, meta in conn.execute(
                    "SELECT id, metadata FROM memories WHERE namespace = ?", (ns,))}
            db = engramdb.open(target, embedder=vectors, synchronous="NORMAL")
            if config:
                db._res.config = replace(db._res.config, **config)
            half = "tuning" if conv.sample_id in tuning else "held-out"
            for qa in conv.questions:
                t0 = time.perf_counter()
                hits = db.recall(qa["question"], namespace=ns, k=K, layers=["episodic"]).hits
                latency.append(time.perf_counter() - t0)
                ids = [dia[str(h.memory.id)] for h in hits]
                in_pool = {dia[m] for m in pool["ids"] if m in dia}
                if a.k10:
                    first = [dia[str(h.memory.id)] for h in db.recall(
                        qa["question"], namespace=ns, k=10, layers=["episodic"]).hits]
                    differ += first != ids[:10]
                for part in (half, "all"):
                    for cat in (qa["category"], 0):
                        total[part][cat] += len(qa["evidence"])
                        for e in qa["evidence"]:
                            for k, where in ((10, ids[:10]), (25, ids), ("pool", in_pool)):
                                found[k][part][cat] += e in where
            db.close()
            for p in work.glob("asking.db*"):
                p.unlink()
    finally:
        recall_module.rank_hybrid = original  # type: ignore[assignment]
        vectors.save()
    for part in ("tuning", "held-out", "all"):
        cells = []
        for k in (10, 25, "pool"):
            v = [found[k][part][c] / total[part][c] for c in (0, 1, 2, 3, 4)]
            cells.append(f"@{k} {v[0]:.3f} ({' / '.join(f'{x:.2f}' for x in v[1:])})")
        print(f"{part:8s} " + "  ".join(cells))
    latency.sort()
    print(f"{time.perf_counter() - started:.1f} s; recall(k={K}) p50 "
          f"{latency[len(latency) // 2] * 1e3:.1f} ms, mean {sum(latency) / len(latency) * 1e3:.1f}"
          f" ms" + (f"; first ten differ in {differ} questions" if a.k10 else ""))


if __name__ == "__main__":
    main()
