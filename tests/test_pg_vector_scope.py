"""PostgreSQL vector search scoped to a namespace: exact, never stale, filters inside.

A search scoped to a small namespace ranks that namespace's vectors exactly
from the ANN projection (its ``namespace`` column, filled by the indexer's
rebuild and by its incremental copies), and a search that the projection's
best candidates cannot fill falls back to the exact scan. Every answer here is
checked against brute force over the vectors this test wrote.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg
import pytest

import engramdb
from engramdb.model import RecallFilter

DIM = 384
pytestmark = pytest.mark.postgres


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _embedder() -> Any:
    from engramdb.retrieval.embed import LocalEmbedder

    return LocalEmbedder()  # its identity only: every memory here carries its vector


def _best(current: dict[str, np.ndarray], q: np.ndarray, k: int) -> list[str]:
    return sorted(current, key=lambda mid: (-float(current[mid] @ q), mid))[:k]


def test_scoped_search_is_exact_and_never_returns_a_replaced_version(pg_url: str) -> None:
    rng = np.random.default_rng(23)
    vecs = _unit(rng, 600)
    with engramdb.open(pg_url, embedder=_embedder()) as db:
        mems = db.remember_many([
            {"text": f"note {i}", "namespace": "scope/ns0" if i < 300 else f"scope/ns{1 + i % 2}",
             "layer": "episodic", "embedding": vecs[i],
             "metadata": {"tag": "rare"} if i in (77, 211) else {}}
            for i in range(600)])
        assert db.storage.wait_for_vector_index(timeout=300)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("ANALYZE memory_vectors_ann (namespace)")  # as the idle indexer soon does
        ns0 = {m.id: vecs[i] for i, m in enumerate(mems) if m.namespace == "scope/ns0"}
        assert len(ns0) == 300
        original = dict(ns0)
        before = db.storage.head().tx

        # Replaced vectors: some copied into the projection by the indexer, some not yet.
        fresh = _unit(rng, 60)
        ids = list(ns0)
        for j, mid in enumerate(ids[:20]):
            db.update(mid, text=f"changed {j}", embedding=fresh[j])
            ns0[mid] = fresh[j]
        assert db.storage.wait_for_vector_index(timeout=300)
        for j, mid in enumerate(ids[20:40], start=20):
            db.update(mid, text=f"changed {j}", embedding=fresh[j])
            ns0[mid] = fresh[j]
        for mid in ids[40:60]:
            db.retract(mid, reason="test")
            del ns0[mid]
        head = db.storage.head().tx

        queries = [*_unit(rng, 6), fresh[3], fresh[25]]
        for q in queries:
            flt = RecallFilter(namespaces=("scope/ns0",), as_of=head)
            got = db.storage.search_vector(q, flt, 10)
            assert [r["id"] for r, _ in got] == _best(ns0, q, 10)
            for row, sim in got:
                assert row["tx_to"] is None  # never a replaced or retracted version
                assert sim == pytest.approx(float(ns0[row["id"]] @ q), abs=1e-5)
            # As of before the changes: the original versions, exactly.
            old = db.storage.search_vector(
                q, RecallFilter(namespaces=("scope/ns0",), as_of=before), 10)
            assert [r["id"] for r, _ in old] == _best(original, q, 10)
            assert all(r["version"] == 1 for r, _ in old)
        # The searches above took the scoped path: the planner statistics of the
        # projection's namespace column are known, and the graph is half precision.
        assert db.storage._search_stats.known and db.storage._search_stats.half

        # Two matches in a namespace of 300, far down the ranking: the projection's best
        # candidates hold neither, so the exact scan answers, and finds both.
        flt = RecallFilter(namespaces=("scope/ns0",), as_of=head, metadata=(("tag", "rare"),))
        got = db.storage.search_vector(queries[0], flt, 3)
        assert sorted(r["text"] for r, _ in got) == ["note 211", "note 77"]

        # Unscoped (the graph): the best match of a replaced vector is its new version.
        hit = db.storage.search_vector(fresh[3], RecallFilter(as_of=head), 1)[0]
        assert hit[0]["id"] == ids[3] and hit[0]["version"] == 2
        assert hit[1] == pytest.approx(1.0, abs=1e-5)
