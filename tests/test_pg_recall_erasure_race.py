"""A PostgreSQL recall never returns a memory another process erased before it.

Another process erases memories one by one (each erasure also runs ``VACUUM
FULL`` on the tables that held them, which waits for open snapshots) while this
one recalls in a loop. Every recall's hits are checked against the transaction
each memory was erased in: none may have been erased at or before the recall's
snapshot (``receipt.as_of``), and a recall still returns k hits when k exist.
"""

from __future__ import annotations

import multiprocessing
from typing import Any

import numpy as np
import pytest

import engramdb
from tests.test_pg_vector_scope import _embedder, _unit

pytestmark = pytest.mark.postgres


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
