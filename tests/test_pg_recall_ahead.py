"""PostgreSQL recall sends its searches with the snapshot's first round trip, exactly.

The searches' filter depends on what that round trip reads (the head pins the
read, the namespaces and grants resolve the reader's scope), so the engine's
filter is computed first on the values the last snapshot read, and the
searches it gives are sent ahead (``storage/postgres/ahead.py``). Their rows
answer the recall only when the recall's own searches, planned on what its
snapshot actually read, are the very same statements. These tests check that
a recall answered ahead is exactly the recall asked after the snapshot opened
(hits, versions, scores, receipts, contested marks) under several filters,
and that a write, an update, an erasure or a revoked grant committed by
another handle between the prediction and the snapshot is in the answer
(or kept out of it) exactly as without the prediction.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import engramdb
from engramdb.storage.postgres.fulltext import TermStats
from tests.test_pg_vector_scope import _embedder, _unit

pytestmark = pytest.mark.postgres

_WORDS = ["backup", "deploy", "rotation", "midnight", "cluster", "invoice", "ledger", "audit"]


@pytest.fixture
def handles(pg_url: str) -> Iterator[tuple[engramdb.Database, engramdb.Database, np.ndarray]]:
    vecs = _unit(np.random.default_rng(61), 140)
    with engramdb.open(pg_url, embedder=_embedder()) as a, \
            engramdb.open(pg_url, embedder=_embedder()) as b:
        a.remember_many([
            {"text": f"the {_WORDS[i % 8]} note {i} mentions {_WORDS[(i * 3) % 8]}",
             "namespace": f"team/ns{i % 4}",
             "layer": "semantic" if i % 5 == 0 else "episodic",
             "embedding": vecs[i].tolist()} for i in range(120)])
        a.storage.wait_for_vector_index(timeout=120)
        yield a, b, vecs


def _seen(result: Any) -> list[tuple[str, int, float, bool]]:
    return [(h.memory.id, h.memory.version, h.score, h.contested) for h in result.hits]


def _without_prediction(db: engramdb.Database, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``db``'s recall with nothing sent ahead (the searches asked in the snapshot)."""
    def recall(*args: Any, **kwargs: Any) -> Any:
        with monkeypatch.context() as m:
            m.setattr(db.storage.predictor, "guess", lambda: None)
            return db.recall(*args, **kwargs)
    return recall


@pytest.mark.parametrize("scope", [
    {}, {"namespace": "team/ns2"}, {"layers": ["semantic"]}, {"namespace": "team/*"},
    {"as_of": "given"}], ids=["unscoped", "one-namespace", "layer", "glob", "as-of"])
def test_a_recall_answered_ahead_is_the_recall_asked_in_the_snapshot(
        handles: Any, monkeypatch: pytest.MonkeyPatch, scope: dict[str, Any]) -> None:
    a, _, vecs = handles
    if scope.get("as_of") == "given":
        scope = {"as_of": a.storage.head().tx}
    plain = _without_prediction(a, monkeypatch)
    for i in (3, 17, 40):
        ask = {"query": f"{_WORDS[i % 8]} note", "k": 8, "query_embedding": vecs[i].tolist(),
               **scope}
        a.recall(**ask)  # the values to predict with: this snapshot's
        held = a.storage.predictor.held
        ahead = a.recall(**ask)
        assert a.storage.predictor.held == held + 1  # answered by the rows sent ahead
        after = plain(**ask)
        if ahead.receipt.as_of == after.receipt.as_of:  # no read-audit flush between
            assert _seen(ahead) == _seen(after) and ahead.receipt == after.receipt
        else:
            assert [s[:2] for s in _seen(ahead)] == [s[:2] for s in _seen(after)]
        assert len(ahead.hits) == 8


def test_a_write_between_the_prediction_and_the_snapshot_is_in_the_answer(
        handles: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b, vecs = handles
    q = vecs[7]
    first = a.recall("midnight note", k=5, query_embedding=q.tolist())
    top = first.hits[0].memory
    missed = a.storage.predictor.missed

    # Another handle (another process's caches) replaces the top hit and writes a
    # closer one: a's prediction still holds the head before them.
    b.update(top.id, text="the ledger note, rewritten", embedding=vecs[130].tolist())
    new = b.remember("the midnight note that replaced seven", namespace="team/ns3",
                     embedding=q.tolist())
    got = a.recall("midnight note", k=5, query_embedding=q.tolist())
    assert a.storage.predictor.missed == missed + 1  # sent ahead, then not used
    assert got.hits[0].memory.id == new.id
    assert (top.id, 1) not in {(h.memory.id, h.memory.version) for h in got.hits}
    assert got.receipt.as_of == a.storage.head().tx or got.receipt.as_of > first.receipt.as_of
    again = _without_prediction(a, monkeypatch)("midnight note", k=5,
                                                query_embedding=q.tolist())
    assert [s[:2] for s in _seen(got)] == [s[:2] for s in _seen(again)]


def test_an_erasure_or_a_revoked_grant_between_prediction_and_snapshot_keeps_rows_out(
        handles: Any) -> None:
    a, b, vecs = handles
    a.admin.create_agent("reader")
    grant = a.admin.grant("reader", "team/ns1", ["read"])
    a.admin.grant("reader", "team/ns2", ["read"])
    reader = a.as_agent("reader")
    q = vecs[5]  # "the invoice note 5 mentions audit", in team/ns1
    ask = {"query": "invoice audit note", "k": 10, "query_embedding": q.tolist()}
    namespaces = {h.memory.namespace for h in reader.recall(**ask).hits}
    assert "team/ns1" in namespaces and namespaces <= {"team/ns1", "team/ns2"}
    held = a.storage.predictor.held
    assert {h.memory.namespace for h in reader.recall(**ask).hits} == namespaces
    assert a.storage.predictor.held == held + 1  # a reader's scope is predicted too

    b.admin.revoke(grant.id)
    assert {h.memory.namespace for h in reader.recall(**ask).hits} == {"team/ns2"}

    best = a.recall(**ask).hits[0].memory
    b.forget(id=best.id, reason="test: erased between prediction and snapshot")
    assert best.id not in {h.memory.id for h in a.recall(**ask).hits}


def test_a_pool_of_one_connection_serves_recalls_planned_ahead(
        pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Searches planned ahead hold the snapshot's connection: whatever they read (term
    statistics a minute old) is read on it, so a pool of one never waits for a second,
    and no connection goes back to the pool mid-transaction (the pool would warn)."""
    vecs = _unit(np.random.default_rng(62), 30)
    with engramdb.open(pg_url, embedder=_embedder(), pool_max_size=1) as db, \
            engramdb.open(pg_url, embedder=_embedder()) as other:
        mems = db.remember_many([{"text": f"the {_WORDS[i % 8]} entry {i}",
                                  "embedding": vecs[i].tolist()} for i in range(30)])
        for i in range(20):
            if i == 10:  # term statistics a minute old: read again on the one connection
                db.storage._stats = TermStats()
            got = db.recall(f"{_WORDS[i % 8]} entry", k=3, query_embedding=vecs[i].tolist())
            assert got.hits[0].memory.id == mems[i].id
        # An erasure's VACUUM FULL waits for no reader's transaction: each ended.
        other.forget(id=mems[0].id, reason="test: an erasure rewrites the table")
        assert mems[0].id not in {h.memory.id for h in db.recall(
            "backup entry", k=5, query_embedding=vecs[0].tolist()).hits}
    assert "rolling back returned connection" not in caplog.text
