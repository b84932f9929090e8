"""PostgreSQL recall runs its vector search beside its full-text search, same answers.

A recall on PostgreSQL starts its vector search on a second pooled connection
that imports the recall's snapshot, while the full-text search runs on the
first (``storage/postgres/overlap.py``). A handle whose pool holds a single
connection cannot do that and searches one after the other, as before. These
tests check what a user would notice: the two give the same hits, in the same
order, with the same scores and receipts, on data with updated, retracted and
erased memories; many threads sharing a small pool all get their answers
(no recall waits on a connection another holds); and a recall never returns a
memory another process erased before it.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import engramdb
from tests.test_pg_vector_scope import _embedder, _unit

pytestmark = pytest.mark.postgres

WORDS = ("deploy", "key", "rotation", "cache", "invoice", "river", "garden", "ticket",
         "build", "release", "budget", "meeting", "server", "login", "backup", "report")


def _text(rng: np.random.Generator) -> str:
    return " ".join(rng.choice(WORDS, size=int(rng.integers(4, 9))))


@pytest.fixture
def loaded(pg_url: str) -> Iterator[tuple[str, np.ndarray, set[str]]]:
    """400 memories in 4 namespaces; 40 updated, 20 retracted, 20 erased."""
    rng = np.random.default_rng(11)
    vecs = _unit(rng, 480)
    with engramdb.open(pg_url, embedder=_embedder()) as db:
        made = db.remember_many([
            {"text": _text(rng), "namespace": f"team/ns{i % 4}", "embedding": vecs[i]}
            for i in range(400)])
        ids = [m.id for m in made]
        for j, memory_id in enumerate(ids[:40]):
            db.update(memory_id, text=_text(rng), embedding=vecs[400 + j])
        for memory_id in ids[40:60]:
            db.retract(memory_id, reason="wrong")
        for memory_id in ids[60:80]:
            db.forget(id=memory_id, reason="asked to")
        db.storage.wait_for_vector_index(timeout=60)
    yield pg_url, vecs[440:], set(ids[60:80])


def _answers(db: Any, queries: np.ndarray) -> list[Any]:
    out = []
    for i, q in enumerate(queries):
        for namespace in ("**", f"team/ns{i % 4}"):
            result = db.recall(" ".join(WORDS[i % 16: i % 16 + 3]), namespace=namespace,
                               k=10, query_embedding=q.tolist())
            out.append(([(h.memory.id, h.memory.version) for h in result.hits],
                        result.receipt.items, [h.score for h in result.hits]))
    return out


def _same(got: list[Any], expected: list[Any]) -> bool:
    """The same hits in the same order and receipts; scores equal but for recency
    decay (the head's time moves with every write, the read audit's too)."""
    return len(got) == len(expected) and all(
        g[:2] == e[:2] and np.allclose(g[2], e[2], rtol=0, atol=1e-5)
        for g, e in zip(got, expected, strict=True))


def test_overlapped_recall_gives_the_hits_of_one_search_after_the_other(
        loaded: tuple[str, np.ndarray, set[str]]) -> None:
    url, queries, erased = loaded
    with engramdb.open(url, embedder=_embedder()) as two, \
            engramdb.open(url, embedder=_embedder(), pool_max_size=1) as one:
        overlapped = _answers(two, queries)
        assert two.storage._pool.get_stats()["pool_size"] >= 2  # it had a second connection
        sequential = _answers(one, queries)
    assert _same(overlapped, sequential)
    for hits, _, _ in overlapped:
        assert len(hits) == 10  # a scoped query still fills k
        assert not {memory_id for memory_id, _ in hits} & erased


def test_many_threads_on_a_small_pool_all_get_their_answers(
        loaded: tuple[str, np.ndarray, set[str]]) -> None:
    url, queries, _ = loaded
    with engramdb.open(url, embedder=_embedder(), pool_max_size=3) as db:
        expected = _answers(db, queries[:8])
        got: dict[int, Any] = {}

        def worker(t: int) -> None:
            got[t] = [_answers(db, queries[:8]) for _ in range(2)]

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
        start = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in threads)
        assert time.monotonic() - start < 120
    assert len(got) == 8
    assert all(_same(answer, expected) for answers in got.values() for answer in answers)


def _erase_all(url: str, ids: list[str], ready: Any, done: Any) -> None:
    with engramdb.open(url, embedder=_embedder()) as db:
        ready.wait(30)
        for memory_id in ids:
            done.put((memory_id, db.forget(id=memory_id, reason="asked to").tx))


def test_a_memory_another_process_erased_is_never_recalled(pg_url: str) -> None:
    rng = np.random.default_rng(3)
    vecs = _unit(rng, 61)
    q = vecs[60]
    with engramdb.open(pg_url, embedder=_embedder()) as db:
        # Every memory is near the query and shares its words: each is a candidate.
        made = db.remember_many([
            {"text": f"the backup server report {i}", "namespace": "team/ops",
             "embedding": (q + 0.3 * vecs[i]) / np.linalg.norm(q + 0.3 * vecs[i])}
            for i in range(60)])
        ids = [m.id for m in made]
        db.storage.wait_for_vector_index(timeout=60)
        ctx = multiprocessing.get_context("spawn")
        ready, done = ctx.Event(), ctx.Queue()
        eraser = ctx.Process(target=_erase_all, args=(pg_url, ids[:15], ready, done))
        eraser.start()
        seen: list[tuple[int, set[str]]] = []
        try:
            ready.set()
            while eraser.is_alive():
                result = db.recall("backup server report", k=20, query_embedding=q.tolist())
                seen.append((result.receipt.as_of, {h.memory.id for h in result.hits}))
        finally:
            eraser.join(timeout=120)
        assert eraser.exitcode == 0
        assert len(seen) > 15
        erased_at = dict(done.get(timeout=10) for _ in range(15))  # id -> its erasure's tx
        for as_of, hit_ids in seen:
            assert len(hit_ids) == 20
            assert not {m for m in hit_ids if erased_at.get(m, as_of + 1) <= as_of}
