"""Free-text rival candidates in a large namespace come from the vector index.

On SQLite the candidate search for semantic writes (one memory, or a whole
``remember_many`` batch) walks the snapshot's HNSW graph once a namespace holds
more current rows than an exact scan is worth, as recall does, so its cost
stops growing with the namespace (issue 13). What a user can notice must not
change: the contradictions flagged in a namespace of many unrelated memories
are the ones flagged in a namespace holding only the statements themselves.
The thresholds are lowered so that a namespace of a few hundred rows takes
the graph path; the real embedder and judge decide.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import engramdb
from engramdb.storage.sqlite.ann import VectorSearch

from .test_write_batching import BATCH, COMMITTED, _pairs

FILLER = 700  # unrelated memories in each large namespace (random unit embeddings)


@pytest.fixture
def graph_db(tmp_path: Path, embedder: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(VectorSearch, "exact_rows", 200)
    monkeypatch.setattr(VectorSearch, "snapshot_min", 300)
    db = engramdb.open(tmp_path / "engram.db", embedder=embedder)
    try:
        yield db
    finally:
        db.close()


def test_a_large_namespace_flags_what_a_small_one_flags(graph_db: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    db = graph_db
    fill_large_namespaces(db, FILLER, seed=13)
    remember_committed(db)
    # The committed statements are in the snapshot (and its graphs), not the delta.
    monkeypatch.setattr(VectorSearch, "rebuild_min", 1)  # rebuild even if recent
    db.storage.rebuild_vector_index()
    monkeypatch.setattr(VectorSearch, "rebuild_min", 20_000)

    walks: list[int] = []  # queries the graph answered (spied on, not replaced)
    one, many = VectorSearch._graph_search, VectorSearch._graph_many

    def graph_search(self: VectorSearch, *args: Any) -> Any:
        found = one(self, *args)
        walks.append(found is not None)
        return found

    def graph_many(self: VectorSearch, *args: Any) -> Any:
        found = many(self, *args)
        walks.extend(hits is not None for hits in found or ())
        return found

    monkeypatch.setattr(VectorSearch, "_graph_search", graph_search)
    monkeypatch.setattr(VectorSearch, "_graph_many", graph_many)
    write_batch_and_singles(db)
    assert sum(walks) >= 2 * len(BATCH)  # the large namespaces took the graph path
    assert_flags_like_a_small_namespace(db)


def fill_large_namespaces(db: Any, filler: int, *, seed: int) -> None:
    """``filler`` unrelated memories (random unit embeddings) in each large namespace."""
    dim = len(db.embedder.embed(["x"])[0])
    rng = np.random.default_rng(seed)
    for ns in ("big/batch", "big/single"):
        vecs = rng.standard_normal((filler, dim)).astype(np.float32)
        db.remember_many([{"text": f"note {i} of the archive, shelf {i % 37}", "namespace": ns,
                           "embedding": v} for i, v in enumerate(vecs)])


def remember_committed(db: Any) -> None:
    """The committed statements the batch will contradict, in every namespace."""
    for ns in ("big/batch", "big/single", "small/batch", "small/single"):
        for text in COMMITTED:
            db.remember(text, namespace=ns)


def write_batch_and_singles(db: Any) -> None:
    """BATCH into ``big/batch`` and ``small/batch`` at once, and one by one into
    ``big/single`` and ``small/single``."""
    for size in ("big", "small"):
        db.remember_many([{"text": t, "namespace": f"{size}/batch"} for t in BATCH])
        for text in BATCH:
            db.remember(text, namespace=f"{size}/single")


def assert_flags_like_a_small_namespace(db: Any) -> None:
    """Every namespace flagged what single writes flagged in the small one."""
    expected = _pairs(db, "small/single")
    assert frozenset({"The deployment window is Monday",
                      "The deployment window is Friday"}) in expected
    assert frozenset({"The office opens at 10am", "The office opens at 9am"}) in expected
    for ns in ("small/batch", "big/batch", "big/single"):
        assert _pairs(db, ns) == expected, ns
    assert db.verify().ok
