"""Recall latency at 10k memories: the hybrid ranking against the former RRF ranking.

Same process, same database, same queries, each query asked of every ranking in
turn so that load on a shared machine hits them alike. "before" is recall() with
the former ranking (reciprocal-rank fusion); "after" is recall() as shipped (the
hybrid ranking); both over the engine's default candidate pool at k=10
(``EngineConfig.recall_candidates`` per retriever).
Query embeddings are precomputed (not measured). The corpus is LoCoMo turns
when the data is found (recycled to 10k memories across 20 namespaces), else
the synthetic notes of ``engram bench``.

With BASELINE_HYBRID (the ``hybrid.py`` of another checkout, e.g. main's, extracted
with ``git archive``) a third ranking, "baseline", runs that file's ``rank_hybrid``
over BASELINE_CANDIDATES candidates per retriever (default 50), in the same rounds.

    PYTHONPATH=src python bench/ranking_latency.py [N] [QUERIES] [EMBEDDING_CACHE_DIR]
        [BASELINE_HYBRID] [BASELINE_CANDIDATES] [CANDIDATES]

CANDIDATES: the candidates per retriever of "before" and "after" (default: the engine's).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

import engramdb
import engramdb.engine.recall as recall_service
from engramdb.cli.bench import find_locomo
from engramdb.engine.rows import EngineConfig
from engramdb.evaluation.locomo import _EmbeddingCache, load_locomo
from engramdb.retrieval.embed import default_embedder
from engramdb.retrieval.hybrid import rank_hybrid
from engramdb.retrieval.rank import fuse


def _fused(query, text_hits, vector_hits, **kw):  # the former ranking, same signature
    return fuse(text_hits, vector_hits, now_micros=kw["now_micros"], k=kw["k"],
                weights=kw.get("weights"))


def _load_ranking(path: str):
    spec = importlib.util.spec_from_file_location("baseline_hybrid", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.rank_hybrid


def run(n: int = 10_000, queries: int = 200, cache: str | None = None,
        baseline: str | None = None, baseline_candidates: int = 50,
        candidates: int | None = None) -> dict[str, str]:
    emb = default_embedder()
    folder = find_locomo(None)
    assert folder is not None, "needs the LoCoMo dev folder for natural text"
    convs = load_locomo(folder)
    turns = [t["text"] for c in convs for t in c.turns]
    qs = [q["question"] for c in convs for q in c.questions][:queries]
    texts = [turns[i % len(turns)] for i in range(n)]
    uniq = sorted(set(texts) | set(qs))
    vec = dict(zip(uniq, _EmbeddingCache(emb, Path(cache) if cache else None).embed(uniq),
                   strict=True))
    out: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as d:
        db = engramdb.open(Path(d) / "lat.db", embedder=emb, synchronous="NORMAL")
        for i in range(0, n, 2000):
            db.remember_many([{"text": t, "namespace": f"lat/ns{(i + j) % 20}",
                               "layer": "episodic", "session": f"s{(i + j) // 20}",
                               "embedding": vec[t]} for j, t in enumerate(texts[i:i + 2000])])
        shipped = EngineConfig() if candidates is None else EngineConfig(
            recall_candidates=candidates)
        configs = {"before": (shipped, _fused), "after": (shipped, rank_hybrid)}
        if baseline:
            configs["baseline"] = (EngineConfig(recall_candidates=baseline_candidates),
                                   _load_ranking(baseline))
        times: dict[str, list[float]] = {name: [] for name in configs}
        for q in qs[:5]:
            db.recall(q, k=10, query_embedding=vec[q])
        # Every query asked of each ranking in turn: load on a shared machine
        # comes and goes within seconds, so it hits them alike.
        for _round in range(2):
            for q in qs:
                for name, (config, ranking) in configs.items():
                    db._res.config = config
                    recall_service.rank_hybrid = ranking  # type: ignore[assignment]
                    t0 = time.perf_counter()
                    db.recall(q, k=10, query_embedding=vec[q])
                    times[name].append(time.perf_counter() - t0)
        recall_service.rank_hybrid = rank_hybrid
        db.close()
    for name, ts in times.items():
        ts.sort()
        out[name] = (f"p50 {ts[len(ts) // 2] * 1000:.1f} ms, "
                     f"p95 {ts[int(len(ts) * 0.95)] * 1000:.1f} ms")
    out["load"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return out


if __name__ == "__main__":
    a = sys.argv[1:]
    print(run(int(a[0]) if a else 10_000, int(a[1]) if len(a) > 1 else 200,
              a[2] if len(a) > 2 else None, a[3] if len(a) > 3 else None,
              int(a[4]) if len(a) > 4 else 50, int(a[5]) if len(a) > 5 else None))
