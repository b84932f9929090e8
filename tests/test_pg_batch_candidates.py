"""A PostgreSQL namespace's batch candidates, proposed in process (issue 13).

A semantic ``remember_many`` takes its free-text candidates from the
namespace's vectors held in this process as int8 codes (every row scanned up
to the exact size, past it in inverted lists: :mod:`engramdb.storage.postgres.
candidates`), each proposal read back from the server through the search's
filter. What a user can notice must not change: the contradictions flagged are
those flagged in a namespace holding only the statements, and the candidates
are the committed state at the search, whoever committed it: a retracted or
replaced version is never one, another handle's write is seen at once, and an
erased memory's vector is dropped from the process.
"""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

import numpy as np
import pytest

import engramdb
from engramdb.model import RecallFilter
from engramdb.storage.postgres import candidates, knn

from .test_candidate_scale import (
    assert_flags_like_a_small_namespace,
    fill_large_namespaces,
    remember_committed,
    write_batch_and_singles,
)
from .test_write_batching import BATCH, _pairs

DIM = 384


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Past 100 rows a namespace's batch is proposed from the lists (below, from every
    row held); count the queries answered in process (spied on, not replaced)."""
    monkeypatch.setattr(knn, "_IN_PROCESS_MAX_ROWS", 100)
    monkeypatch.setattr(candidates, "EXACT_ROWS", 100)
    asked: list[int] = []
    real = candidates.Candidates.search

    def search(self: Any, conn: Any, vecs: Any, *args: Any) -> Any:
        found = real(self, conn, vecs, *args)
        if found is not None:
            asked.append(len(vecs) - len(found[1]))
        return found

    monkeypatch.setattr(candidates.Candidates, "search", search)
    return asked


def _open(url: str, embedder: Any) -> Any:
    return engramdb.open(url, embedder=embedder)


def test_a_large_namespace_flags_what_a_small_one_flags(pg_url: str, embedder: Any,
                                                        held: list[int]) -> None:
    db = _open(pg_url, embedder)
    try:
        fill_large_namespaces(db, 400, seed=11)
        remember_committed(db)
        write_batch_and_singles(db)
        assert sum(held) >= len(BATCH)  # the large namespace's batch was proposed here
        assert db.storage._candidates.held() > 400
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


def _held_ids(db: Any) -> set[str]:
    return {k[0] for space in db.storage._candidates._spaces.values()
            for k, p in space.pos.items() if space.alive[p]}


def test_candidates_are_the_committed_state_whoever_wrote_it(
        pg_url: str, embedder: Any, held: list[int]) -> None:
    rng = np.random.default_rng(5)
    mine, other = _open(pg_url, embedder), _open(pg_url, embedder)  # two processes' views
    try:
        mine.remember_many([{"text": f"filler {i}", "namespace": "kb/facts",
                             "layer": "semantic", "embedding": v}
                            for i, v in enumerate(_unit(rng, 300))])
        assert held == [300]  # the fillers' own candidates, from the (empty) namespace
        held.clear()
        target, moved, later = _unit(rng, 3)
        t = mine.remember("the vault code is 1234", namespace="kb/facts", embedding=target)
        m = mine.remember("the meeting is in room 4", namespace="kb/facts", embedding=moved)
        for _ in range(2):  # the first search fills the process's codes, the next reads them
            assert [f >= {t.id} for f in _found(mine, [_near(target, rng)
                                                        for _ in range(16)])] == [True] * 16
        assert mine.storage._candidates.held() > 300
        assert held == [16, 16]

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
        assert len(held) == 6 and all(h == 16 for h in held)  # all answered in process

        other.forget(id=u.id, reason="leaked")  # erased by the other handle
        assert all(u.id not in f for f in _found(mine, [_near(later, rng)
                                                         for _ in range(16)]))
        assert u.id not in _held_ids(mine)  # its vector is gone from this process
        mine.storage.purge()
        assert mine.storage._candidates.held() == 0
    finally:
        mine.close()
        other.close()


def test_a_query_whose_proposals_were_cut_short_is_asked_of_the_server(
        pg_url: str, embedder: Any, held: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    """Many near rows, most of them superseded: the pool of proposals (here 10 a query)
    holds mostly dead versions, so the server ranks that query, and the answer is the
    current rows all the same."""
    monkeypatch.setattr(candidates, "_POOL", 4)
    rng = np.random.default_rng(8)
    db = _open(pg_url, embedder)
    try:
        base = _unit(rng, 1)[0]
        db.remember_many([{"text": f"filler {i}", "namespace": "kb/facts",
                           "layer": "semantic", "embedding": v}
                          for i, v in enumerate(_unit(rng, 300))])
        close = [db.remember(f"the value is {i}", namespace="kb/facts",
                             embedding=_near(base, rng, 0.05)) for i in range(12)]
        _found(db, [base] * 16)  # held now, every version current
        for c in close[:11]:
            db.update(c.id, text=f"{c.text}, moved away", embedding=_unit(rng, 1)[0])
        fresh = [db.remember(f"the value is now {i}", namespace="kb/facts",
                             embedding=_near(base, rng, 0.2)) for i in range(3)]
        found = _found(db, [base] * 16)
        assert held[-1] == 0  # every query was cut short: the server answered
        assert all(f == {close[11].id, *(x.id for x in fresh)} for f in found)
        assert _found(db, [base] * 16) == found  # the dead versions dropped: held again
        assert held[-1] == 16
    finally:
        db.close()


def test_other_filters_are_answered_by_the_server(pg_url: str, embedder: Any,
                                                  held: list[int]) -> None:
    db = _open(pg_url, embedder)
    try:
        rng = np.random.default_rng(9)
        v = _unit(rng, 1)[0]
        first = db.remember("the sky is green", namespace="kb/facts", embedding=v)
        db.update(first.id, text="the sky is blue", embedding=v)
        flt = RecallFilter(namespaces=("kb/facts",), layers=("semantic",), as_of=first.tx_from)
        hits = db.storage.search_vectors([v] * 16, flt, 5, 0.5)
        assert all([(r["id"], r["version"]) for r, _ in h] == [(first.id, 1)] for h in hits)
        assert db.storage._candidates.held() == 0  # an as_of read never fills the codes
    finally:
        db.close()


def _child_batch(db: Any, embeddings: list[np.ndarray], held: list[int], queue: Any) -> None:
    """In a forked child: what it holds at first, then the batch into ``big/batch``."""
    try:
        before = db.storage._candidates.held()
        db.remember_many([{"text": t, "namespace": "big/batch", "embedding": e}
                          for t, e in zip(BATCH, embeddings, strict=True)])
        queue.put((before, sum(held), db.storage._candidates.held()))
    except BaseException as exc:  # report, never hang the parent
        queue.put(repr(exc))
    finally:
        db.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_holds_nothing_at_first_and_still_flags_contradictions(
        pg_url: str, embedder: Any, held: list[int]) -> None:
    """A child forked while the parent holds a large namespace's codes (and could be
    holding their locks in another thread) starts empty, reads the namespace itself
    and flags the contradictions a small namespace's batch flags."""
    db = _open(pg_url, embedder)
    try:
        fill_large_namespaces(db, 400, seed=11)
        remember_committed(db)
        rng = np.random.default_rng(12)
        _found(db, list(_unit(rng, 16)), "big/batch")  # the parent holds the namespace
        assert db.storage._candidates.held() > 400
        embeddings = list(db.embedder.embed(BATCH))  # the child embeds nothing itself
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_child_batch, args=(db, embeddings, held, queue))
        child.start()
        got = queue.get(timeout=300)
        child.join(timeout=60)
        assert child.exitcode == 0 and isinstance(got, tuple), got
        before, answered, after = got
        assert before == 0  # nothing of the parent's held in the child
        assert answered - sum(held) >= len(BATCH)  # its batch was proposed in process
        assert after > 400  # which the child read for itself
        db.remember_many([{"text": t, "namespace": "small/batch", "embedding": e}
                          for t, e in zip(BATCH, embeddings, strict=True)])
        expected = _pairs(db, "small/batch")
        assert frozenset({"The deployment window is Monday",
                          "The deployment window is Friday"}) in expected
        assert _pairs(db, "big/batch") == expected
        assert db.storage._candidates.held() > 400  # the parent's own codes still serve
        assert db.verify().ok
    finally:
        db.close()


def test_a_namespace_within_the_exact_size_is_held_whole_and_flags_what_a_small_one_flags(
        pg_url: str, embedder: Any) -> None:
    """At the default sizes a 400-row namespace is held whole and scanned against every
    query (no lists); the contradictions flagged are a small namespace's."""
    db = _open(pg_url, embedder)
    try:
        fill_large_namespaces(db, 400, seed=11)
        remember_committed(db)
        write_batch_and_singles(db)
        space = db.storage._candidates._spaces[("big/batch", ("semantic",))]
        assert space.n > 400 and space.centroids is None  # held, never split into lists
        assert_flags_like_a_small_namespace(db)
    finally:
        db.close()


def test_a_namespace_growing_past_the_exact_size_is_split_into_lists_and_flags_the_same(
        pg_url: str, embedder: Any, held: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    """Held whole while small (here up to 500 rows), the namespace is split into lists
    by the first batch past that size, from what it holds: the contradictions of the
    batch are still a small namespace's."""
    monkeypatch.setattr(candidates, "EXACT_ROWS", 500)
    db = _open(pg_url, embedder)
    try:
        fill_large_namespaces(db, 400, seed=11)
        rng = np.random.default_rng(13)
        _found(db, list(_unit(rng, 16)), "big/batch")
        space = db.storage._candidates._spaces[("big/batch", ("semantic",))]
        assert space.centroids is None
        fill_large_namespaces(db, 150, seed=14)  # 550 rows: past the exact size
        remember_committed(db)
        write_batch_and_singles(db)
        assert space.centroids is not None and space.trained > 500
        assert_flags_like_a_small_namespace(db)
    finally:
        db.close()


def test_a_server_without_half_precision_vectors_gives_the_same_candidates(
        pg_url: str, embedder: Any, held: list[int]) -> None:
    """The vectors are read as half-precision bytes where pgvector has ``halfvec``, as
    float32 vectors otherwise: the same rows and similarities come back either way."""
    rng = np.random.default_rng(15)
    db = _open(pg_url, embedder)
    try:
        base = _unit(rng, 40)
        rows = np.vstack([base, _unit(rng, 300)])
        db.remember_many([{"text": f"filler {i}", "namespace": "kb/facts", "layer": "semantic",
                           "embedding": v} for i, v in enumerate(rows)])
        queries = [_near(b, rng, 0.6) for b in base]
        flt = RecallFilter(namespaces=("kb/facts",), layers=("semantic",), statuses=("active",))
        found = []
        for half in (True, False):
            db.storage._candidates.clear()
            db.storage._candidates._half = half
            found.append([[(r["id"], round(s, 6)) for r, s in hits]
                          for hits in db.storage.search_vectors(queries, flt, 5, 0.5)])
        assert found[0] == found[1]
        assert sum(len(f) for f in found[0]) >= 40  # each query finds at least its base
        assert held[-2:] == [40, 40]  # both answered in process
    finally:
        db.close()


_SPAWN_SCRIPT = """
import json, sys
import numpy as np
import engramdb
from engramdb.retrieval.embed import LocalEmbedder
url, path = sys.argv[1], sys.argv[2]
with open(path) as f:
    given = json.load(f)
db = engramdb.open(url, embedder=LocalEmbedder())
before = db.storage._candidates.held()
db.remember_many([{"text": t, "namespace": "big/batch",
                   "embedding": np.asarray(e, dtype=np.float32)} for t, e in given])
print(json.dumps([before, db.storage._candidates.held()]))
db.close()
"""


def test_a_new_process_first_batch_flags_what_a_small_namespace_flags(
        pg_url: str, embedder: Any, held: list[int], tmp_path: Any) -> None:
    """A process started afresh (not forked) writes its first batch into a namespace it
    has never read: it reads the namespace's vectors, splits them into lists and flags
    the contradictions the same batch flags in a small namespace."""
    import json
    import subprocess
    import sys

    db = _open(pg_url, embedder)
    try:
        fill_large_namespaces(db, 400, seed=11)
        remember_committed(db)
        embeddings = [e.tolist() for e in db.embedder.embed(BATCH)]
        given = tmp_path / "batch.json"
        given.write_text(json.dumps(list(zip(BATCH, embeddings, strict=True))))
        script = tmp_path / "first_batch.py"
        # The child lowers the same sizes the fixture lowers here: a 400-row namespace
        # is then a large one, split into lists.
        preamble = ("from engramdb.storage.postgres import candidates, knn\n"
                    "candidates.EXACT_ROWS = 100\nknn._IN_PROCESS_MAX_ROWS = 100\n")
        script.write_text(preamble + _SPAWN_SCRIPT)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        out = subprocess.run([sys.executable, str(script), pg_url, str(given)], env=env,
                             capture_output=True, text=True, timeout=300, check=False)
        assert out.returncode == 0, out.stderr[-2000:]
        before, after = json.loads(out.stdout.strip().splitlines()[-1])
        assert before == 0 and after > 400  # it read the namespace for itself
        db.remember_many([{"text": t, "namespace": "small/batch", "embedding": np.asarray(e)}
                          for t, e in zip(BATCH, embeddings, strict=True)])
        expected = _pairs(db, "small/batch")
        assert frozenset({"The deployment window is Monday",
                          "The deployment window is Friday"}) in expected
        assert _pairs(db, "big/batch") == expected
        assert db.verify().ok
    finally:
        db.close()


def test_a_writer_batching_into_many_namespaces_holds_only_the_latest_ones(
        pg_url: str, embedder: Any, held: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    """Every namespace a batch searches is held, so a writer spread over many of them
    keeps only the most recently searched (here 3), and a dropped one is read again."""
    monkeypatch.setattr(candidates, "MAX_SPACES", 3)
    rng = np.random.default_rng(16)
    db = _open(pg_url, embedder)
    try:
        for i in range(5):
            db.remember_many([{"text": f"fact {j} of team {i}", "namespace": f"team/{i}",
                               "layer": "semantic", "embedding": v}
                              for j, v in enumerate(_unit(rng, 20))])
        spaces = db.storage._candidates._spaces
        assert sorted(k[0] for k in spaces) == ["team/2", "team/3", "team/4"]
        target = _unit(rng, 1)[0]
        t = db.remember("the vault code is 1234", namespace="team/0", embedding=target)
        assert all(t.id in f for f in _found(db, [_near(target, rng) for _ in range(16)],
                                               "team/0"))
        assert "team/0" in {k[0] for k in spaces} and len(spaces) == 3
    finally:
        db.close()
