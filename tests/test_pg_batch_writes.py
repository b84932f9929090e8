"""PostgreSQL batches: multi-row inserts and the batch candidate search (issue 13).

A batch's rows go to the server as multi-row statements (:mod:`.bulk`), and
the free-text candidates of a large namespace come from the HNSW graph plus
the not-yet-indexed tail ranked in process (:mod:`.knn`). What a user can
notice must not change: the log and state a batch leaves, the vectors it
stores, and the contradictions it flags, which are those flagged in a
namespace holding only the statements themselves.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

import engramdb
from engramdb.model import RecallFilter
from engramdb.storage.postgres import ann, candidates, knn

from .test_candidate_scale import (
    assert_flags_like_a_small_namespace,
    fill_large_namespaces,
    remember_committed,
    write_batch_and_singles,
)
from .test_write_batching import BATCH
from .test_write_batching import _pairs as _flag_pairs

FILLER = 400  # unrelated memories in the large namespaces (random unit embeddings)


def _on_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """No namespace held in process (candidates.py): the server's statements answer
    a large namespace's batch search, as they do for one too large to hold."""
    monkeypatch.setattr(candidates, "MAX_VECTORS", 0)


@pytest.fixture
def pgdb(pg_url: str, embedder: Any) -> Any:
    db = engramdb.open(pg_url, embedder=embedder)
    try:
        yield db
    finally:
        db.close()


def test_a_large_namespace_flags_what_a_small_one_flags(pgdb: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    db = pgdb
    # A namespace of more than this many rows takes the graph path (plus the tail).
    monkeypatch.setattr(knn, "_IN_PROCESS_MAX_ROWS", 100)
    _on_the_server(monkeypatch)
    fill_large_namespaces(db, FILLER, seed=7)
    assert db.storage.wait_for_vector_index(timeout=120)
    remember_committed(db)  # in the graph or in the tail: found either way

    tails: list[int] = []  # batch searches that ranked the tail in process (spied on)
    ranked = knn._tail_in_process

    def tail_in_process(*args: Any) -> Any:
        found = ranked(*args)
        tails.append(bool(found))
        return found

    monkeypatch.setattr(knn, "_tail_in_process", tail_in_process)
    write_batch_and_singles(db)
    assert any(tails)  # the large namespace's batch took the graph path
    assert_flags_like_a_small_namespace(db)


def test_the_inverted_file_index_flags_what_a_small_namespace_flags(
        pgdb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    db = pgdb
    monkeypatch.setattr(knn, "_IN_PROCESS_MAX_ROWS", 100)  # past it: the index path
    _on_the_server(monkeypatch)
    # The indexer rebuilds (and builds an inverted-file index) from 100 rows on.
    monkeypatch.setattr(ann, "REBUILD_MIN", 100)
    monkeypatch.setattr(ann, "IVF_MIN_ROWS", 100)
    fill_large_namespaces(db, FILLER, seed=11)
    assert db.storage.wait_for_vector_index(timeout=120)
    remember_committed(db)
    with db.storage._read_conn() as conn:
        assert ann.scalar(conn, "SELECT to_regclass(%s)", [ann.IVF_NAME]) is not None
    db.storage._search_stats.loaded_at = float("-inf")  # see the index now, not in a minute

    probed: list[bool] = []  # whether each batch search's statements probed the index
    chunks = knn._search_chunks

    def search_chunks(*args: Any) -> None:
        probed.append(args[-2])
        chunks(*args)

    monkeypatch.setattr(knn, "_search_chunks", search_chunks)
    write_batch_and_singles(db)
    assert probed and all(probed)
    assert_flags_like_a_small_namespace(db)


def _spy_on_chunk_connections(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Statements of one vector per chunk (so a batch's search has several chunks),
    and the connection each chunk ran on, recorded."""
    monkeypatch.setattr(knn, "_IN_PROCESS_MAX_ROWS", 100)  # past it: the server's index
    _on_the_server(monkeypatch)
    monkeypatch.setattr(knn, "_VECTORS_PER_STATEMENT", 1)
    used: list[Any] = []
    chunks = knn._search_chunks

    def search_chunks(conn: Any, starts: Any, *args: Any) -> None:
        used.extend(conn for _ in starts)
        chunks(conn, starts, *args)

    monkeypatch.setattr(knn, "_search_chunks", search_chunks)
    return used


def test_a_batch_search_split_over_two_connections_flags_what_one_flags(
        pgdb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    db = pgdb
    fill_large_namespaces(db, FILLER, seed=13)
    assert db.storage.wait_for_vector_index(timeout=120)
    remember_committed(db)
    used = _spy_on_chunk_connections(monkeypatch)
    write_batch_and_singles(db)
    assert len({id(conn) for conn in used}) == 2  # the batch's chunks ran on two connections
    assert_flags_like_a_small_namespace(db)


def test_a_batch_search_with_no_second_connection_free_runs_on_one(
        pg_url: str, embedder: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch's search holds one pooled connection and asks for a second: when none
    is free it must run on the one it holds, not wait for the pool's timeout (threads
    each holding one connection and waiting for another would drain the pool)."""
    with engramdb.open(pg_url, embedder=embedder, pool_max_size=2,
                       pool_timeout_s=3) as db:
        fill_large_namespaces(db, FILLER, seed=17)
        assert db.storage.wait_for_vector_index(timeout=120)
        remember_committed(db)
        used = _spy_on_chunk_connections(monkeypatch)
        pool = db.storage._get_pool()
        held = pool.getconn()  # another thread's work holds the pool's other connection
        try:
            db.remember_many([{"text": t, "namespace": "big/batch"} for t in BATCH])
        finally:
            pool.putconn(held)
        assert used and len({id(conn) for conn in used}) == 1
        for text in BATCH:
            db.remember(text, namespace="small/batch")
        flagged = _flag_pairs(db, "small/batch")
        assert flagged and _flag_pairs(db, "big/batch") == flagged


def test_a_batch_stores_each_row_and_vector_as_single_writes_do(pgdb: Any) -> None:
    db = pgdb
    rng = np.random.default_rng(3)
    vecs = rng.standard_normal((1_203, 384)).astype(np.float32)  # several statements' worth
    drafts = [{"text": f"episode {i}: the door {'opened' if i % 2 else 'closed'}",
               "namespace": "ops/log", "layer": "episodic", "metadata": {"i": i},
               "importance": (i % 10) / 10, "embedding": v} for i, v in enumerate(vecs)]
    made = db.remember_many(drafts)
    assert [m.text for m in made] == [d["text"] for d in drafts]
    for i in (0, 1, 600, 1_202):
        got = db.get(made[i].id)
        assert (got.text, got.metadata, got.importance) == (
            drafts[i]["text"], {"i": i}, (i % 10) / 10)
        unit = vecs[i] / np.linalg.norm(vecs[i])  # stored normalised, searched as such
        (row, sim), = db.storage.search_vector(unit, RecallFilter(namespaces=("ops/log",)), 1)
        assert (row["id"], row["version"]) == (made[i].id, made[i].version)  # its own vector
        assert sim == pytest.approx(1.0, abs=1e-5)
    events = db.storage.events(0, 5_000)
    assert [e.subject_ref for e in events if e.kind == "memory.remembered"] == [
        m.id for m in made]  # one event per memory, in the batch's order
    assert db.verify().ok


def test_a_vector_put_twice_in_one_write_keeps_the_last(pgdb: Any) -> None:
    db = pgdb
    m = db.remember("a note", namespace="ops/x", embedding=[1.0] + [0.0] * 383)
    first, last = np.eye(384, dtype=np.float32)[1], np.eye(384, dtype=np.float32)[2]
    with db.storage.write("test") as w:
        w.put_vectors([(m.id, m.version, first)] * 3 + [(m.id, m.version, last)] * 2)
        w.log("test.vectors", actor="test", namespace="ops/x", subject_ref=m.id,
              payload={"effects": []})
    with db.storage._read_conn() as conn:
        stored = conn.execute("SELECT vec::text FROM memory_vectors WHERE id = %s",
                              [m.id]).fetchall()
    assert len(stored) == 1
    np.testing.assert_allclose(np.asarray(json.loads(stored[0][0]), dtype=np.float32), last)
