"""PostgreSQL recall through the projection's HNSW graph of degree 8.

The background indexer builds the projection's graph with ``m = 8`` (half the
server CPU per indexed vector of 16) and searches read twice the candidates
(``ann.search_ef``). What a user notices, checked here against brute force over
the vectors this test wrote (clustered, as text embeddings are): the searches
take the graph, rank what exact ranking ranks, apply every filter inside the
search (namespace, metadata, ``as_of``), never return a replaced or retracted
version, and find a vector written a moment ago (the unindexed backlog is
searched exactly).
"""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

import engramdb
from engramdb.model import RecallFilter
from engramdb.storage.postgres import ann, knn

DIM = 384
pytestmark = pytest.mark.postgres


def _clustered(rng: np.random.Generator, centers: np.ndarray, n: int) -> np.ndarray:
    v = centers[rng.integers(0, len(centers), n)] + 0.6 * rng.standard_normal(
        (n, DIM)).astype(np.float32)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def _best(current: dict[str, np.ndarray], q: np.ndarray, k: int) -> list[str]:
    return sorted(current, key=lambda mid: (-float(current[mid] @ q), mid))[:k]


def test_recall_takes_the_graph_and_ranks_as_exact_search_does(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from engramdb.retrieval.embed import LocalEmbedder

    # Scoped searches take the graph too (not the exact scope path), filters inside it.
    monkeypatch.setattr(knn, "SMALL_SCOPE_ROWS", 0)
    rng = np.random.default_rng(41)
    centers = rng.standard_normal((300, DIM)).astype(np.float32)
    n = 4000
    vecs = _clustered(rng, centers, n)
    with engramdb.open(pg_url, embedder=LocalEmbedder()) as db:
        mems = db.remember_many([
            {"text": f"note {i}", "namespace": f"ann/ns{i % 4}", "layer": "episodic",
             "embedding": vecs[i], "metadata": {"tag": "odd"} if i % 7 == 3 else {}}
            for i in range(n)])
        assert db.storage.wait_for_vector_index(timeout=300)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("ANALYZE")
            graph = conn.execute("SELECT c.reloptions FROM pg_class c WHERE c.oid = "
                                 "to_regclass(%s)", [ann.INDEX_NAME]).fetchone()
        assert graph is not None and f"m={ann.GRAPH_M}" in graph[0] and ann.GRAPH_M == 8
        db.storage._search_stats.loaded_at = float("-inf")  # see the graph now
        before = db.storage.head().tx
        current = {m.id: vecs[i] for i, m in enumerate(mems)}
        original = dict(current)
        ns_of = {m.id: m.namespace for m in mems}
        odd = {m.id for i, m in enumerate(mems) if i % 7 == 3}

        # The plan: the recall search walks the graph.
        with db.storage._read_conn() as conn:
            search = knn.VectorSearch(db.storage, conn, vecs[0], RecallFilter(as_of=before),
                                      10)
            with conn.transaction():
                knn._hnsw_settings(conn, 10)
                plan = "\n".join(r[0] for r in conn.execute(
                    "EXPLAIN " + search.sql, search.args))
        assert f"Index Scan using {ann.INDEX_NAME}" in plan, plan

        # Replaced and retracted after the index caught up: the new versions sit in the
        # backlog, the old ones in the projection.
        fresh = _clustered(rng, centers, 40)
        for j, mem in enumerate(mems[:40]):
            db.update(mem.id, text=f"changed {j}", embedding=fresh[j])
            current[mem.id] = fresh[j]
        for mem in mems[40:60]:
            db.retract(mem.id, reason="test")
            del current[mem.id]
        late_vec = _clustered(rng, centers, 1)[0]
        late = db.remember("late note", namespace="ann/ns1", layer="episodic",
                           embedding=late_vec)
        current[late.id], ns_of[late.id] = late_vec, "ann/ns1"
        head = db.storage.head().tx

        queries = [*_clustered(rng, centers, 20), fresh[5], late_vec]
        overlaps = []
        for q in queries:
            cases = (
                (RecallFilter(as_of=head), current, lambda m: True),
                (RecallFilter(namespaces=("ann/ns2",), as_of=head), current,
                 lambda m: ns_of.get(m) == "ann/ns2"),
                (RecallFilter(as_of=head, metadata=(("tag", "odd"),)), current,
                 lambda m: m in odd),
                (RecallFilter(as_of=before), original, lambda m: True),
            )
            for flt, pool, keep in cases:
                wanted = {m: v for m, v in pool.items() if keep(m)}
                got = db.storage.search_vector(q, flt, 10)
                assert len(got) == 10
                sims = [s for _, s in got]
                assert sims == sorted(sims, reverse=True)
                for row, sim in got:
                    assert row["id"] in wanted  # inside the filter, current as of flt
                    assert flt.as_of != head or row["tx_to"] is None
                    assert sim == pytest.approx(float(wanted[row["id"]] @ q), abs=2e-3)
                overlaps.append(len({r["id"] for r, _ in got} & set(_best(wanted, q, 10))))
        assert np.mean(overlaps) >= 9.5, overlaps
        assert min(overlaps) >= 7, overlaps
        # A replaced vector's best match is its new version, unindexed as it is.
        hit = db.storage.search_vector(fresh[5], RecallFilter(as_of=head), 1)[0]
        assert hit[0]["id"] == mems[5].id and hit[0]["version"] == 2
        assert hit[1] == pytest.approx(1.0, abs=1e-5)


def test_a_write_is_found_before_the_indexer_takes_it(pg_url: str) -> None:
    from engramdb.retrieval.embed import LocalEmbedder

    rng = np.random.default_rng(5)
    centers = rng.standard_normal((50, DIM)).astype(np.float32)
    vecs = _clustered(rng, centers, 1201)
    with engramdb.open(pg_url, embedder=LocalEmbedder()) as db:
        db.remember_many([{"text": f"n {i}", "namespace": "ann/a", "layer": "episodic",
                           "embedding": vecs[i]} for i in range(1200)])
        assert db.storage.wait_for_vector_index(timeout=300)
        db.storage._indexer.close()  # nothing indexes the next write
        late = db.remember("late", namespace="ann/a", layer="episodic", embedding=vecs[1200])
        assert db.storage.vector_backlog() == 1
        hits = db.recall("late", namespace="ann/**", k=1, query_embedding=vecs[1200]).hits
        assert hits and hits[0].memory.id == late.id
        got = db.storage.search_vector(vecs[1200], RecallFilter(as_of=db.storage.head().tx), 3)
        assert got[0][0]["id"] == late.id and got[0][1] == pytest.approx(1.0, abs=1e-5)

