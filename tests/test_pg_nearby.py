"""The in-process index of a batch's candidate namespaces on PostgreSQL (issue 13).

A semantic ``remember_many`` ranks its memories' free-text candidates in
process (:mod:`engramdb.storage.postgres.nearby`): an exact product over a
small namespace, a usearch graph re-scored exactly over a large one. What a
user can notice must not change: the contradictions flagged are those flagged
in a namespace holding only the statements, and the candidates are the
committed state at the search, whoever committed it: a retracted or replaced
version is never one, another handle's (another process's) write is seen at
once, and an erased memory's vector is dropped from the process.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import engramdb
from engramdb.model import RecallFilter
from engramdb.storage.postgres import nearby

from .test_candidate_scale import (
    assert_flags_like_a_small_namespace,
    fill_large_namespaces,
    remember_committed,
    write_batch_and_singles,
)
from .test_write_batching import BATCH

DIM = 384


@pytest.fixture
def graph(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Take the graph path from 100 vectors on; count the queries it answered."""
    monkeypatch.setattr(nearby, "GRAPH_MIN", 100)
    walked: list[int] = []
    real = nearby._graph

    def spy(space: Any, queries: np.ndarray, *args: Any) -> Any:
        found = real(space, queries, *args)
        if found is not None:  # None while the first graph is built: the server answers
            walked.append(len(queries))
        return found

    monkeypatch.setattr(nearby, "_graph", spy)
    return walked


def _open(url: str, embedder: Any) -> Any:
    return engramdb.open(url, embedder=embedder)


def test_a_large_namespace_flags_what_a_small_one_flags(pg_url: str, embedder: Any,
                                                        graph: list[int]) -> None:
    db = _open(pg_url, embedder)
    try:
        fill_large_namespaces(db, 400, seed=11)
        remember_committed(db)
        _found(db, [_unit(np.random.default_rng(1), 1)[0]] * 16, "big/batch")
        assert db.storage.wait_for_vector_index(timeout=60)  # its graph, built meanwhile
        write_batch_and_singles(db)
        assert sum(graph) >= len(BATCH)  # the large namespace's batch took the graph
        assert_flags_like_a_small_namespace(db)
    finally:
        db.close()


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _near(v: np.ndarray, rng: np.random.Generator, noise: float = 0.3) -> np.ndarray:
    w = v + noise * _unit(rng, 1)[0]
    return (w / np.linalg.norm(w)).astype(np.float32)


def _found(db: Any, queries: list[np.ndarray], ns: str = "kb/facts") -> list[set[str]]:
    flt = RecallFilter(namespaces=(ns,), layers=("semantic",), statuses=("active",))
    return [{r["id"] for r, _ in hits}
            for hits in db.storage.search_vectors(queries, flt, 5, 0.5)]


def _held(db: Any) -> set[str]:
    return {i for space in db.storage._nearby._spaces.values() for i in space.ids}


@pytest.mark.parametrize("filler", [20, 300])  # the exact product, then the graph
def test_candidates_are_the_committed_state_whoever_wrote_it(
        pg_url: str, embedder: Any, graph: list[int], filler: int) -> None:
    rng = np.random.default_rng(5)
    mine, other = _open(pg_url, embedder), _open(pg_url, embedder)  # two processes' views
    try:
        mine.remember_many([{"text": f"filler {i}", "namespace": "kb/facts",
                             "layer": "semantic", "embedding": v}
                            for i, v in enumerate(_unit(rng, filler))])
        target, moved, later = _unit(rng, 3)
        t = mine.remember("the vault code is 1234", namespace="kb/facts", embedding=target)
        m = mine.remember("the meeting is in room 4", namespace="kb/facts", embedding=moved)
        for _ in range(2):  # while a large namespace's graph is built, then with it
            assert [f >= {t.id} for f in _found(mine, [_near(target, rng)
                                                        for _ in range(16)])] == [True] * 16
            assert mine.storage.wait_for_vector_index(timeout=60)
        assert mine.storage._nearby.held() > 0  # answered from the process's arrays
        assert len(graph) == (1 if filler >= 100 else 0)
        taken = len(graph)

        other.retract(t.id, reason="changed")  # written by the other handle
        elsewhere = _unit(rng, 1)[0]
        other.update(m.id, text="the meeting moved", embedding=elsewhere)
        u = other.remember("the vault code is 9999", namespace="kb/facts", embedding=later)
        near_t = _found(mine, [_near(target, rng) for _ in range(16)])
        assert all(t.id not in f for f in near_t)  # retracted: never a candidate
        near_m = _found(mine, [_near(moved, rng) for _ in range(16)])
        assert all(m.id not in f for f in near_m)  # its current version is elsewhere
        assert all(m.id in f for f in _found(mine, [_near(elsewhere, rng)
                                                     for _ in range(16)]))
        assert all(u.id in f for f in _found(mine, [_near(later, rng) for _ in range(16)]))
        assert (len(graph) > taken) == (filler >= 100)

        other.forget(id=u.id, reason="leaked")  # erased by the other handle
        assert all(u.id not in f for f in _found(mine, [_near(later, rng)
                                                         for _ in range(16)]))
        assert u.id not in _held(mine)  # its vector is gone from this process
        mine.storage.purge()
        assert mine.storage._nearby.held() == 0
    finally:
        mine.close()
        other.close()


def test_other_filters_are_answered_by_the_server(pg_url: str, embedder: Any) -> None:
    db = _open(pg_url, embedder)
    try:
        rng = np.random.default_rng(9)
        v = _unit(rng, 1)[0]
        first = db.remember("the sky is green", namespace="kb/facts", embedding=v)
        db.update(first.id, text="the sky is blue", embedding=v)
        flt = RecallFilter(namespaces=("kb/facts",), layers=("semantic",), as_of=first.tx_from)
        hits = db.storage.search_vectors([v] * 16, flt, 5, 0.5)
        assert all([(r["id"], r["version"]) for r, _ in h] == [(first.id, 1)] for h in hits)
        assert db.storage._nearby.held() == 0  # an as_of read never fills the arrays
    finally:
        db.close()
