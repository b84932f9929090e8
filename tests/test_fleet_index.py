"""PostgreSQL: the HNSW projection waits while a burst of writes is arriving.

An HNSW insert costs the server about as much CPU as the rest of a write, so the
background indexer (storage/postgres/ann.py) lets a backlog below ``DEFER_MAX``
wait until writers pause, then catches up. These tests watch what a user would:
the backlog during a burst, that the index catches up once writes stop, and that
every memory written is found by recall meanwhile (the backlog is searched exactly).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

import engramdb
from engramdb.storage.postgres import ann

DIM = 384


def _unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def _backlog(db: Any) -> int:
    with db.storage._read_conn() as conn:
        return ann.backlog(conn)


@pytest.mark.postgres
def test_a_burst_is_indexed_after_it_not_during_it(pg_url: str, monkeypatch) -> None:
    from engramdb.retrieval.embed import LocalEmbedder

    # A pause is one second without a new vector: far longer than the gap between
    # two writes of this loop, even on a busy machine.
    monkeypatch.setattr(ann, "QUIET", 1.0)
    with engramdb.open(pg_url, embedder=LocalEmbedder()) as db:
        db.remember("first", namespace="fleet/a", layer="episodic", embedding=_unit(0))
        assert db.storage.wait_for_vector_index(timeout=30)  # the graph exists
        burst = 40
        start = time.monotonic()
        for i in range(1, burst + 1):
            db.remember(f"observation {i}", namespace="fleet/a", layer="episodic",
                        embedding=_unit(i))
            time.sleep(max(0.0, start + i * 0.06 - time.monotonic()))
        during = _backlog(db)
        # Every vector is searchable at once, indexed or not.
        for i in (1, burst // 2, burst):
            hits = db.recall(f"observation {i}", namespace="fleet/a", k=1,
                             query_embedding=_unit(i)).hits
            assert hits and hits[0].memory.text == f"observation {i}"
        # Without the wait the indexer keeps up within the burst (a backlog of 0 or 1).
        assert during >= burst // 2
        assert db.storage.wait_for_vector_index(timeout=30)
        assert _backlog(db) == 0
